package webui

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/psigate/psigate/appliance/store"
)

// CookieName is the session cookie.
const CookieName = "psigate_session"

// CSRFHeader carries the CSRF token on cookie-authenticated API calls.
const CSRFHeader = "X-CSRF-Token"

// session is the caller's login.
type session struct {
	store.Session
	key    []byte // hash of the token, the store's key
	bearer bool   // authenticated by Authorization: Bearer, not the cookie
	// csrfInBody: the CSRF token is still to be checked, by a handler
	// that streams its multipart body (see upload).
	csrfInBody bool
}

type ctxKey struct{}

func sessionFrom(ctx context.Context) *session {
	s, _ := ctx.Value(ctxKey{}).(*session)
	return s
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("webui: crypto/rand: %v", err)) // the system is unusable
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func tokenKey(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// clientIP is the peer's address without port; the portal is reached
// directly, so forwarding headers are not trusted.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// authenticate finds the caller's session from the Bearer header or the
// cookie.
func (s *Server) authenticate(r *http.Request) (*session, error) {
	var token string
	bearer := false
	if h := r.Header.Get("Authorization"); h != "" {
		t, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return nil, errors.New("unsupported Authorization scheme")
		}
		token, bearer = strings.TrimSpace(t), true
	} else if c, err := r.Cookie(CookieName); err == nil {
		token = c.Value
	}
	if token == "" {
		return nil, errors.New("not logged in")
	}
	key := tokenKey(token)
	st, err := s.opts.Auth.Session(key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errors.New("session unknown or ended")
	}
	if err != nil {
		return nil, err
	}
	if s.opts.Now().After(st.Expires) {
		_ = s.opts.Auth.DeleteSession(key)
		return nil, errors.New("session expired")
	}
	return &session{Session: st, key: key, bearer: bearer}, nil
}

// checkCSRF accepts a state-changing request that carries the session's
// token in the form field "csrf" or the X-CSRF-Token header. Bearer
// requests need none: a browser never adds that header by itself.
func checkCSRF(r *http.Request, sess *session) error {
	if sess.bearer || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return nil
	}
	got := r.Header.Get(CSRFHeader)
	if got == "" {
		got = r.PostFormValue("csrf")
	}
	return sess.checkCSRFToken(got)
}

// errCSRF refuses a state-changing request without the right CSRF token.
var errCSRF = errors.New("missing or wrong CSRF token")

// checkCSRFToken compares a request's CSRF token with the session's.
func (sess *session) checkCSRFToken(got string) error {
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(sess.CSRF)) != 1 {
		return errCSRF
	}
	return nil
}

// page wraps an HTML handler: setup first, then login, then CSRF;
// refusals redirect or answer in plain text.
func (s *Server) page(h http.HandlerFunc) http.HandlerFunc { return s.guard(h, false, false) }

// api wraps a JSON handler the same way, answering with JSON errors.
func (s *Server) api(h http.HandlerFunc) http.HandlerFunc { return s.guard(h, true, false) }

// upload wraps a handler whose body is too large to parse up front (a
// firmware bundle): like page or api, but when neither the header nor a
// Bearer token settles CSRF, the form's token is left for the handler to
// read from the stream (checkCSRF would parse, and so buffer, the whole
// multipart body first).
func (s *Server) upload(h http.HandlerFunc, asJSON bool) http.HandlerFunc {
	return s.guard(h, asJSON, true)
}

func (s *Server) guard(h http.HandlerFunc, asJSON, csrfInBody bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		done, err := s.setupDone()
		switch {
		case err != nil:
			s.fail(w, r, err)
			return
		case !done && asJSON:
			writeError(w, http.StatusForbidden, errors.New("set the admin password first (POST /api/v1/setup)"))
			return
		case !done:
			http.Redirect(w, r, "/setup", http.StatusSeeOther)
			return
		}
		sess, err := s.authenticate(r)
		switch {
		case err != nil && asJSON:
			w.Header().Set("WWW-Authenticate", `Bearer realm="psigate"`)
			writeError(w, http.StatusUnauthorized, err)
			return
		case err != nil:
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		if csrfInBody && !sess.bearer && r.Header.Get(CSRFHeader) == "" {
			sess.csrfInBody = true
		} else if err := checkCSRF(r, sess); err != nil {
			s.csrfRefused(w, r, sess, asJSON, err)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, sess)))
	}
}

// csrfRefused audits and answers a request without the right CSRF token.
func (s *Server) csrfRefused(w http.ResponseWriter, r *http.Request, sess *session, asJSON bool, err error) {
	s.audit(r, sess.User, "csrf-refused", r.Method+" "+r.URL.Path, false)
	if asJSON {
		writeError(w, http.StatusForbidden, err)
	} else {
		http.Error(w, "Forbidden: "+err.Error(), http.StatusForbidden)
	}
}

// logout ends the caller's session; false when the answer is already
// written (an error).
func (s *Server) logout(w http.ResponseWriter, r *http.Request) bool {
	sess := sessionFrom(r.Context())
	if err := s.opts.Auth.DeleteSession(sess.key); err != nil {
		s.fail(w, r, err)
		return false
	}
	s.audit(r, sess.User, "logout", "", true)
	clearSessionCookie(w)
	return true
}

// audit records an event; a failure to record is logged, not fatal.
func (s *Server) audit(r *http.Request, actor, action, detail string, ok bool) {
	e := store.Event{Actor: actor, Source: clientIP(r), Action: action, Detail: detail, OK: ok}
	if err := s.opts.Auth.Audit(e); err != nil {
		s.log.Error("audit event lost", "action", action, "err", err)
	}
	s.log.Info("audit", "actor", actor, "source", e.Source, "action", action, "detail", detail, "ok", ok)
}

// errSetupDone refuses a second first-boot setup.
var errSetupDone = errors.New("the admin password is already set; log in to change it")

// doSetup sets the first admin password.
func (s *Server) doSetup(r *http.Request, password string) error {
	if done, err := s.setupDone(); err != nil {
		return err
	} else if done {
		return errSetupDone
	}
	if err := CheckPolicy(password); err != nil {
		s.audit(r, s.opts.AdminUser, "setup", err.Error(), false)
		return err
	}
	hash, err := HashPassword(password, s.opts.Hash)
	if err != nil {
		return err
	}
	err = s.opts.Auth.SetPassword(s.opts.AdminUser, hash, true)
	if errors.Is(err, store.ErrPasswordSet) {
		return errSetupDone
	}
	if err != nil {
		return err
	}
	s.setup.Store(true)
	s.audit(r, s.opts.AdminUser, "setup", "admin password set", true)
	return nil
}

// errBadLogin is all a failed login learns.
var errBadLogin = errors.New("wrong user name or password")

// throttledError says when to try again.
type throttledError struct{ wait time.Duration }

func (e throttledError) Error() string {
	return fmt.Sprintf("too many failed logins; try again in %s", e.wait.Round(time.Second))
}

// doLogin checks credentials and creates a session; it returns the
// session token.
func (s *Server) doLogin(r *http.Request, user, password string) (string, store.Session, error) {
	ip, name := sourceKey(clientIP(r)), userKey(user)
	if wait := s.throttle.wait(ip, name); wait > 0 {
		s.audit(r, user, "login", "throttled", false)
		return "", store.Session{}, throttledError{wait}
	}
	ok := false
	u, err := s.opts.Auth.User(user)
	switch {
	case err == nil && u.PasswordHash != "":
		if ok, err = CheckPassword(u.PasswordHash, password); err != nil {
			return "", store.Session{}, err
		}
	case err == nil, errors.Is(err, store.ErrNotFound):
		// Spend the same time as for a real account.
		_, _ = CheckPassword(s.dummyHash(), password)
	default:
		return "", store.Session{}, err
	}
	if !ok {
		s.throttle.fail(ip, name)
		s.audit(r, user, "login", "wrong user name or password", false)
		return "", store.Session{}, errBadLogin
	}
	s.throttle.succeed(ip, name)
	token := randomToken()
	now := s.opts.Now()
	sess := store.Session{User: user, Created: now.UTC(), Expires: now.Add(s.opts.SessionTTL).UTC(), CSRF: randomToken(), Source: clientIP(r)}
	if err := s.opts.Auth.PutSession(tokenKey(token), sess); err != nil {
		return "", store.Session{}, err
	}
	s.audit(r, user, "login", "", true)
	return token, sess, nil
}

// dummyHash is a hash of a random password with the server's costs,
// made once.
func (s *Server) dummyHash() string {
	s.dummyOnce.Do(func() { s.dummy, _ = HashPassword(randomToken(), s.opts.Hash) })
	return s.dummy
}

func setSessionCookie(w http.ResponseWriter, token string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: token, Path: "/", Expires: expires,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
}

func clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: "", Path: "/", MaxAge: -1,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
}

// apiSetup is POST /api/v1/setup {password}.
func (s *Server) apiSetup(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Password string `json:"password"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	switch err := s.doSetup(r, req.Password); {
	case errors.Is(err, errSetupDone):
		writeError(w, http.StatusConflict, err)
	case errors.Is(err, ErrWeakPassword):
		writeError(w, http.StatusUnprocessableEntity, err)
	case err != nil:
		s.fail(w, r, err)
	default:
		writeJSON(w, http.StatusCreated, map[string]string{"status": "admin password set"})
	}
}

// apiLogin is POST /api/v1/session {username, password}.
func (s *Server) apiLogin(w http.ResponseWriter, r *http.Request) {
	if done, err := s.setupDone(); err != nil || !done {
		writeError(w, http.StatusForbidden, errors.New("set the admin password first (POST /api/v1/setup)"))
		return
	}
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	token, sess, err := s.doLogin(r, req.Username, req.Password)
	var te throttledError
	switch {
	case errors.As(err, &te):
		w.Header().Set("Retry-After", strconv.Itoa(int(te.wait.Seconds()+1)))
		writeError(w, http.StatusTooManyRequests, err)
		return
	case errors.Is(err, errBadLogin):
		writeError(w, http.StatusUnauthorized, err)
		return
	case err != nil:
		s.fail(w, r, err)
		return
	}
	setSessionCookie(w, token, sess.Expires)
	writeJSON(w, http.StatusOK, map[string]any{"token": token, "csrfToken": sess.CSRF, "expires": sess.Expires, "user": sess.User})
}

// apiLogout is DELETE /api/v1/session.
func (s *Server) apiLogout(w http.ResponseWriter, r *http.Request) {
	if s.logout(w, r) {
		w.WriteHeader(http.StatusNoContent)
	}
}

// decodeJSON reads a JSON request body of at most 4 MiB strictly.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid request body: %w", err)
	}
	return nil
}
