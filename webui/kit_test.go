package webui_test

// The test kit: a real store in a temporary directory, the first-boot
// identity and admin account, the portal on an HTTPS httptest server that
// uses the appliance's own self-signed certificate, and clients that trust
// it. Nothing of the store is mocked.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/psigate/psigate/appliance/alarm"
	"github.com/psigate/psigate/appliance/config"
	"github.com/psigate/psigate/appliance/firstboot"
	"github.com/psigate/psigate/appliance/store"
	"github.com/psigate/psigate/webui"
)

// goodPassword is accepted by the password policy.
const goodPassword = "correct-horse-battery-staple-7"

// proxySecret is a cloudLink proxy password; it must never leave the
// appliance except in an export with secrets.
const proxySecret = "Pr0xy-S3cret-never-shown-4711"

// testVersion is what the kit's status source reports as the version.
const testVersion = "9.8.7-test"

// fakeClock is the portal's (and the store's) injectable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// lockedBuffer collects log output from the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// kit is one portal with its own store, clock and server.
type kit struct {
	t      *testing.T
	st     *store.Store
	srv    *webui.Server
	ts     *httptest.Server
	clock  *fakeClock
	id     store.Identity
	pool   *x509.CertPool
	client *http.Client // cookie jar, does not follow redirects

	// after login
	token string
	csrf  string
}

type kitOption func(*webui.Options)

func withSessionTTL(d time.Duration) kitOption {
	return func(o *webui.Options) { o.SessionTTL = d }
}

// newKit starts a portal before setup: the admin account exists without
// a password.
func newKit(t *testing.T, opts ...kitOption) *kit {
	t.Helper()
	// The clock starts at the real time, so that cookie expiries derived
	// from it are valid for the client's cookie jar.
	clock := &fakeClock{now: time.Now().Truncate(time.Second)}
	st, err := store.Open(t.TempDir(), store.Options{NoSync: true, Now: clock.Now})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("store.Close: %v", err)
		}
	})
	id, cert, err := firstboot.Ensure(st, time.Now())
	if err != nil {
		t.Fatalf("firstboot.Ensure: %v", err)
	}
	// The portal logs errors only for what should not happen (a 500, a
	// lost audit event); every test fails on one.
	errLog := &lockedBuffer{}
	t.Cleanup(func() {
		if s := errLog.String(); s != "" {
			t.Errorf("the portal logged errors:\n%s", s)
		}
	})
	o := webui.Options{
		Config:    st,
		Auth:      st,
		Status:    testStatus(clock, id.MachineID),
		AdminUser: firstboot.AdminUser,
		MachineID: id.MachineID,
		Logger:    slog.New(slog.NewTextHandler(errLog, &slog.HandlerOptions{Level: slog.LevelError})),
		Now:       clock.Now,
		Hash:      webui.HashParams{MemoryKiB: 64, Time: 1, Threads: 1},
	}
	for _, f := range opts {
		f(&o)
	}
	srv, err := webui.New(o)
	if err != nil {
		t.Fatalf("webui.New: %v", err)
	}
	ts := httptest.NewUnstartedServer(srv)
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	ts.StartTLS()
	t.Cleanup(ts.Close) // runs before the store closes
	if !strings.HasPrefix(ts.URL, "https://127.0.0.1:") {
		t.Fatalf("test server at %s, want https on loopback", ts.URL)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(id.CertPEM)) {
		t.Fatal("the first-boot certificate does not parse")
	}
	k := &kit{t: t, st: st, srv: srv, ts: ts, clock: clock, id: id, pool: pool}
	k.client = k.newClient(true)
	return k
}

// testStatus is the dashboard's status source.
func testStatus(clock *fakeClock, machineID string) func(context.Context) webui.Status {
	started := clock.Now()
	return func(context.Context) webui.Status {
		return webui.Status{
			Version:   testVersion,
			MachineID: machineID,
			Hostname:  "psigate-test",
			Started:   started,
			UptimeS:   clock.Now().Sub(started).Seconds(),
			Alarms: []alarm.Alarm{{
				Code: "test-alarm", Severity: alarm.Major, Text: "a test alarm", Since: started,
			}},
			Components: []webui.Component{
				{Name: "sbc", State: "running", Detail: "test component"},
				{Name: "cloudlinkd", State: "not built yet"},
			},
		}
	}
}

// newClient returns a client that trusts only the portal's certificate and
// never follows redirects; with jar it keeps cookies.
func (k *kit) newClient(jar bool) *http.Client {
	c := &http.Client{
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: k.pool, MinVersion: tls.VersionTLS12},
			Proxy:           nil, // never leave loopback
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}
	if jar {
		j, err := cookiejar.New(nil)
		if err != nil {
			k.t.Fatal(err)
		}
		c.Jar = j
	}
	k.t.Cleanup(c.CloseIdleConnections)
	return c
}

// resp is a fully read response.
type resp struct {
	Status int
	Header http.Header
	Body   []byte
	Cookie []*http.Cookie
}

func (r resp) String() string { return string(r.Body) }

// JSON decodes the body into v, failing the test when it is not JSON.
func (r resp) JSON(t *testing.T, v any) {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q, want application/json; body:\n%s", ct, r.Body)
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %T: %v; body:\n%s", v, err, r.Body)
	}
}

// rawBody is a request body with its own content type.
type rawBody struct {
	ContentType string
	Data        []byte
}

// req describes one request.
type req struct {
	Method string
	Path   string
	Body   any // []byte, string, url.Values (a form), rawBody or a value sent as JSON
	Header map[string]string
	Client *http.Client // default k.client
}

func (k *kit) do(r req) resp {
	k.t.Helper()
	var body io.Reader
	ctype := ""
	switch b := r.Body.(type) {
	case nil:
	case []byte:
		body, ctype = bytes.NewReader(b), "application/json"
	case string:
		body, ctype = strings.NewReader(b), "application/json"
	case url.Values:
		body, ctype = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	case rawBody:
		body, ctype = bytes.NewReader(b.Data), b.ContentType
	default:
		data, err := json.Marshal(b)
		if err != nil {
			k.t.Fatalf("encode request body: %v", err)
		}
		body, ctype = bytes.NewReader(data), "application/json"
	}
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	hr, err := http.NewRequest(method, k.ts.URL+r.Path, body)
	if err != nil {
		k.t.Fatal(err)
	}
	if ctype != "" {
		hr.Header.Set("Content-Type", ctype)
	}
	for h, v := range r.Header {
		hr.Header.Set(h, v)
	}
	c := r.Client
	if c == nil {
		c = k.client
	}
	res, err := c.Do(hr)
	if err != nil {
		k.t.Fatalf("%s %s: %v", method, r.Path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		k.t.Fatalf("%s %s: read body: %v", method, r.Path, err)
	}
	return resp{Status: res.StatusCode, Header: res.Header, Body: data, Cookie: res.Cookies()}
}

// get is a GET with the kit's client.
func (k *kit) get(path string) resp {
	k.t.Helper()
	return k.do(req{Path: path})
}

// send is a state-changing request with the kit's cookie and CSRF token.
func (k *kit) send(method, path string, body any) resp {
	k.t.Helper()
	return k.do(req{Method: method, Path: path, Body: body, Header: map[string]string{webui.CSRFHeader: k.csrf}})
}

// wantStatus fails the test unless r has the status.
func wantStatus(t *testing.T, r resp, status int, what string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("%s: status %d, want %d; body:\n%s", what, r.Status, status, r.Body)
	}
}

// setup sets the admin password through the API.
func (k *kit) setup(pw string) {
	k.t.Helper()
	r := k.do(req{Method: http.MethodPost, Path: "/api/v1/setup", Body: map[string]string{"password": pw}})
	wantStatus(k.t, r, http.StatusCreated, "setup")
}

type loginAnswer struct {
	Token   string    `json:"token"`
	CSRF    string    `json:"csrfToken"`
	Expires time.Time `json:"expires"`
	User    string    `json:"user"`
}

// login logs in through the API with the kit's client (which keeps the
// cookie) and remembers the token and CSRF token.
func (k *kit) login(pw string) loginAnswer {
	k.t.Helper()
	r := k.do(req{Method: http.MethodPost, Path: "/api/v1/session", Body: map[string]string{"username": "admin", "password": pw}})
	wantStatus(k.t, r, http.StatusOK, "login")
	var a loginAnswer
	r.JSON(k.t, &a)
	if a.Token == "" || a.CSRF == "" {
		k.t.Fatalf("login answer without token or csrfToken: %s", r.Body)
	}
	k.token, k.csrf = a.Token, a.CSRF
	return a
}

// ready is a kit after setup and login.
func ready(t *testing.T, opts ...kitOption) *kit {
	t.Helper()
	k := newKit(t, opts...)
	k.setup(goodPassword)
	k.login(goodPassword)
	return k
}

// bearer is a request header map for the kit's token.
func (k *kit) bearer() map[string]string {
	return map[string]string{"Authorization": "Bearer " + k.token}
}

// candidate is the store's candidate.
func (k *kit) candidate() config.Config {
	k.t.Helper()
	c, err := k.st.Candidate()
	if err != nil {
		k.t.Fatalf("store candidate: %v", err)
	}
	return c
}

// running is the store's running revision.
func (k *kit) running() store.Revision {
	k.t.Helper()
	r, err := k.st.Running()
	if err != nil {
		k.t.Fatalf("store running: %v", err)
	}
	return r
}

// revisions lists the store's revisions, newest first.
func (k *kit) revisions() []store.RevisionInfo {
	k.t.Helper()
	l, err := k.st.Revisions()
	if err != nil {
		k.t.Fatalf("store revisions: %v", err)
	}
	return l
}

// putCandidate stores c through the API and expects 200.
func (k *kit) putCandidate(c config.Config) {
	k.t.Helper()
	r := k.send(http.MethodPut, "/api/v1/config/candidate", config.Marshal(c))
	wantStatus(k.t, r, http.StatusOK, "PUT candidate")
}

// apply applies the candidate through the API and returns the new
// revision number.
func (k *kit) apply(comment string, confirmMinutes int) uint64 {
	k.t.Helper()
	r := k.send(http.MethodPost, "/api/v1/config/apply", map[string]any{"comment": comment, "confirmMinutes": confirmMinutes})
	wantStatus(k.t, r, http.StatusOK, "apply")
	var out struct {
		Revision store.RevisionInfo `json:"revision"`
	}
	r.JSON(k.t, &out)
	if out.Revision.Number == 0 {
		k.t.Fatalf("apply answered no revision: %s", r.Body)
	}
	return out.Revision.Number
}

// withProxy is c with a cloudLink proxy that has a password.
func withProxy(c config.Config) config.Config {
	c.CloudLink.Proxy.URL = "http://proxy.example.com:3128"
	c.CloudLink.Proxy.Username = "psigate"
	c.CloudLink.Proxy.Password = proxySecret
	return c
}

// audit is the store's audit log, oldest first.
func (k *kit) audit() []store.Event {
	k.t.Helper()
	l, err := k.st.AuditLog(10000)
	if err != nil {
		k.t.Fatalf("store audit log: %v", err)
	}
	out := make([]store.Event, len(l))
	for i, e := range l {
		out[len(l)-1-i] = e
	}
	return out
}

// auditCount counts the events with the action and result.
func (k *kit) auditCount(action string, ok bool) int {
	k.t.Helper()
	n := 0
	for _, e := range k.audit() {
		if e.Action == action && e.OK == ok {
			n++
		}
	}
	return n
}

// sessionKey is the store key of a session token: the store keeps
// sessions under a SHA-256 of the token (see store.Session).
func sessionKey(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// sessionExists reports whether the store still has the token's session.
func (k *kit) sessionExists(token string) bool {
	k.t.Helper()
	_, err := k.st.Session(sessionKey(token))
	switch {
	case err == nil:
		return true
	case errors.Is(err, store.ErrNotFound):
		return false
	}
	k.t.Fatalf("store session: %v", err)
	return false
}

// sameConfig fails the test unless a and b are equal.
func sameConfig(t *testing.T, what string, got, want config.Config) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s differs:\n%v", what, config.Diff(want, got))
	}
}

// apiFieldError is the JSON error body.
type apiFieldError struct {
	Error  string `json:"error"`
	Fields []struct {
		Path    string `json:"path"`
		Message string `json:"message"`
	} `json:"fields"`
}

func (e apiFieldError) paths() []string {
	out := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		out[i] = f.Path
	}
	return out
}
