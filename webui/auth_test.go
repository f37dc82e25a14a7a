package webui_test

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/psigate/psigate/appliance/store"
	"github.com/psigate/psigate/webui"
)

func TestHealthzWithoutLogin(t *testing.T) {
	k := newKit(t)
	check := func(when string) {
		r := k.do(req{Path: "/healthz", Client: k.newClient(false)})
		wantStatus(t, r, http.StatusOK, "GET /healthz "+when)
		var body map[string]string
		r.JSON(t, &body)
		if body["status"] != "ok" {
			t.Fatalf("GET /healthz %s: body %s", when, r.Body)
		}
	}
	check("before setup")
	k.setup(goodPassword)
	check("after setup")
}

func TestSecurityHeaders(t *testing.T) {
	k := newKit(t)
	for _, path := range []string{"/setup", "/healthz", "/api/v1/status"} {
		r := k.get(path)
		for h, want := range map[string]string{
			"Strict-Transport-Security": "max-age=31536000",
			"X-Frame-Options":           "DENY",
			"X-Content-Type-Options":    "nosniff",
			"Cache-Control":             "no-store",
		} {
			if got := r.Header.Get(h); got != want {
				t.Errorf("%s: %s = %q, want %q", path, h, got, want)
			}
		}
		if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: Content-Security-Policy = %q", path, csp)
		}
	}
}

func TestBeforeSetupPagesRedirectToSetup(t *testing.T) {
	k := newKit(t)
	cases := []struct{ method, path string }{
		{"GET", "/"},
		{"GET", "/config"},
		{"GET", "/history"},
		{"GET", "/history/diff?from=1&to=running"},
		{"GET", "/backup"},
		{"GET", "/backup/export"},
		{"GET", "/backup/export?secrets=1"},
		{"GET", "/audit"},
		{"GET", "/login"},
		{"POST", "/login"},
		{"POST", "/logout"},
		{"POST", "/config/candidate"},
		{"POST", "/config/apply"},
		{"POST", "/config/confirm"},
		{"POST", "/history/rollback"},
		{"POST", "/backup/import"},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			var body any
			if c.method == "POST" {
				body = url.Values{"csrf": {"x"}, "revision": {"1"}, "username": {"admin"}, "password": {goodPassword}}
			}
			r := k.do(req{Method: c.method, Path: c.path, Body: body})
			wantStatus(t, r, http.StatusSeeOther, c.method+" "+c.path)
			if loc := r.Header.Get("Location"); loc != "/setup" {
				t.Fatalf("Location %q, want /setup", loc)
			}
		})
	}
	r := k.get("/setup")
	wantStatus(t, r, http.StatusOK, "GET /setup")
	if !strings.Contains(r.String(), `id="set-password"`) {
		t.Fatalf("the setup page has no set-password button:\n%s", r.Body)
	}
	if n := len(k.revisions()); n != 1 {
		t.Fatalf("%d revisions after refused requests, want 1", n)
	}
	if u, _ := k.st.User("admin"); u.PasswordHash != "" {
		t.Fatal("the admin password got set by a refused request")
	}
}

func TestBeforeSetupAPIForbidden(t *testing.T) {
	k := newKit(t)
	before := k.candidate()
	cases := []struct {
		method, path string
		body         any
	}{
		{"POST", "/api/v1/session", map[string]string{"username": "admin", "password": goodPassword}},
		{"DELETE", "/api/v1/session", nil},
		{"GET", "/api/v1/status", nil},
		{"GET", "/api/v1/config/running", nil},
		{"GET", "/api/v1/config/candidate", nil},
		{"PUT", "/api/v1/config/candidate", withProxy(before)},
		{"POST", "/api/v1/config/apply", map[string]any{"comment": "x"}},
		{"POST", "/api/v1/config/confirm", nil},
		{"GET", "/api/v1/config/revisions", nil},
		{"GET", "/api/v1/config/diff?from=1&to=1", nil},
		{"POST", "/api/v1/config/rollback", map[string]any{"revision": 1}},
		{"GET", "/api/v1/config/export", nil},
		{"GET", "/api/v1/config/export?secrets=true", nil},
		{"POST", "/api/v1/config/import?apply=true", withProxy(before)},
		{"GET", "/api/v1/audit", nil},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			r := k.do(req{Method: c.method, Path: c.path, Body: c.body})
			wantStatus(t, r, http.StatusForbidden, c.method+" "+c.path)
			var e apiFieldError
			r.JSON(t, &e)
			if !strings.Contains(e.Error, "/api/v1/setup") {
				t.Fatalf("error %q does not point to /api/v1/setup", e.Error)
			}
		})
	}
	sameConfig(t, "candidate after refused requests", k.candidate(), before)
	if n := len(k.revisions()); n != 1 {
		t.Fatalf("%d revisions, want 1", n)
	}
}

func TestSetupRefusesWeakPasswords(t *testing.T) {
	k := newKit(t)
	cases := []struct{ pw, reason string }{
		{"Asd123!.", "well-known default"},
		{"asd123!.", "well-known default"},
		{"ASD123!.", "well-known default"},
		{"aSD123!.", "well-known default"},
		{"Password1", "well-known default"},
		{"admin", "well-known default"},
		{"", "at least 10 characters"},
		{"short", "at least 10 characters"},
		{"Xk4#pQ9!z", "at least 10 characters"}, // 9
		{"aaaaaaaaaaaa", "repeats one character"},
		{"############", "repeats one character"},
		{"ääääääääääää", "repeats one character"},
		{strings.Repeat("ab", 129), "at most 256 bytes"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%q", c.pw), func(t *testing.T) {
			r := k.do(req{Method: http.MethodPost, Path: "/api/v1/setup", Body: map[string]string{"password": c.pw}})
			wantStatus(t, r, http.StatusUnprocessableEntity, "setup")
			var e apiFieldError
			r.JSON(t, &e)
			if !strings.Contains(e.Error, c.reason) {
				t.Fatalf("error %q, want it to mention %q", e.Error, c.reason)
			}
		})
	}
	if u, err := k.st.User("admin"); err != nil || u.PasswordHash != "" {
		t.Fatalf("admin after refused setups: %+v, %v; want no password", u, err)
	}
	if n := k.auditCount("setup", false); n != len(cases) {
		t.Errorf("%d refused setup audit events, want %d", n, len(cases))
	}
	// The API still refuses everything but setup.
	wantStatus(t, k.get("/api/v1/status"), http.StatusForbidden, "status after refused setups")

	r := k.do(req{Method: http.MethodPost, Path: "/api/v1/setup", Body: `{"password": "x", "extra": 1}`})
	wantStatus(t, r, http.StatusBadRequest, "setup with an unknown field")
	r = k.do(req{Method: http.MethodPost, Path: "/api/v1/setup", Body: `{"password":`})
	wantStatus(t, r, http.StatusBadRequest, "setup with broken JSON")
}

func TestCheckPolicy(t *testing.T) {
	cases := []struct {
		pw string
		ok bool
	}{
		{"Asd123!.", false},
		{"ASD123!.", false},
		{"Xk4#pQ9!z", false}, // 9 characters
		{"Xk4#pQ9!zT", true}, // 10
		{"äöüäöüäöüä", true}, // 10 runes, 20 bytes
		{"äöüäöüäöü", false}, // 9 runes, 18 bytes
		{"aaaaaaaaaa", false},
		{"aaaaaaaaab", true},
		{strings.Repeat("ab", 128), true},        // 256 bytes
		{strings.Repeat("ab", 128) + "c", false}, // 257
		{goodPassword, true},
	}
	for _, c := range cases {
		err := webui.CheckPolicy(c.pw)
		if (err == nil) != c.ok {
			t.Errorf("CheckPolicy(%q) = %v, want ok=%v", c.pw, err, c.ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), webui.ErrWeakPassword.Error()) {
			t.Errorf("CheckPolicy(%q) = %v, want it to wrap ErrWeakPassword", c.pw, err)
		}
	}
}

var phcArgon2id = regexp.MustCompile(`^\$argon2id\$v=19\$m=64,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)

func TestSetupOnlyOnce(t *testing.T) {
	k := newKit(t)
	k.setup(goodPassword)
	u, err := k.st.User("admin")
	if err != nil {
		t.Fatal(err)
	}
	if !phcArgon2id.MatchString(u.PasswordHash) {
		t.Fatalf("stored hash %q is not argon2id with the kit's parameters", u.PasswordHash)
	}
	if ok, err := webui.CheckPassword(u.PasswordHash, goodPassword); !ok || err != nil {
		t.Fatalf("the stored hash does not match the password: %v, %v", ok, err)
	}

	other := "another-good-password-99"
	r := k.do(req{Method: http.MethodPost, Path: "/api/v1/setup", Body: map[string]string{"password": other}})
	wantStatus(t, r, http.StatusConflict, "second setup")
	r = k.do(req{Method: http.MethodPost, Path: "/setup", Body: url.Values{"password": {other}, "confirm": {other}}})
	wantStatus(t, r, http.StatusSeeOther, "second setup by form")
	if loc := r.Header.Get("Location"); loc != "/login" {
		t.Fatalf("second setup by form: Location %q, want /login", loc)
	}
	if len(r.Cookie) != 0 {
		t.Fatalf("second setup by form set cookies %v", r.Cookie)
	}
	if u2, _ := k.st.User("admin"); u2.PasswordHash != u.PasswordHash {
		t.Fatal("a second setup changed the password hash")
	}
	r = k.do(req{Method: http.MethodPost, Path: "/api/v1/session", Body: map[string]string{"username": "admin", "password": other}})
	wantStatus(t, r, http.StatusUnauthorized, "login with the second setup's password")
	k.login(goodPassword)
	if n := k.auditCount("setup", true); n != 1 {
		t.Fatalf("%d successful setup audit events, want 1", n)
	}
	// GET /setup now sends to the login page.
	r = k.get("/setup")
	wantStatus(t, r, http.StatusSeeOther, "GET /setup after setup")
	if loc := r.Header.Get("Location"); loc != "/login" {
		t.Fatalf("GET /setup after setup: Location %q", loc)
	}
}

func TestSetupRace(t *testing.T) {
	k := newKit(t)
	const n = 8
	statuses := make([]int, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := strings.NewReader(fmt.Sprintf(`{"password": "racing-password-%d"}`, i))
			hr, err := http.NewRequest(http.MethodPost, k.ts.URL+"/api/v1/setup", body)
			if err != nil {
				t.Error(err)
				return
			}
			<-start
			res, err := k.newClient(false).Do(hr)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			statuses[i] = res.StatusCode
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, s := range statuses {
		switch s {
		case http.StatusCreated:
			if winner >= 0 {
				t.Fatalf("setups %d and %d both answered 201: %v", winner, i, statuses)
			}
			winner = i
		case http.StatusConflict:
		default:
			t.Fatalf("setup %d answered %d: %v", i, s, statuses)
		}
	}
	if winner < 0 {
		t.Fatalf("no setup answered 201: %v", statuses)
	}
	u, _ := k.st.User("admin")
	for i := range n {
		ok, err := webui.CheckPassword(u.PasswordHash, fmt.Sprintf("racing-password-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if ok != (i == winner) {
			t.Fatalf("password %d matches the stored hash: %v; the winner was %d", i, ok, winner)
		}
	}
	if c := k.auditCount("setup", true); c != 1 {
		t.Fatalf("%d successful setup audit events, want 1", c)
	}
}

func TestLogin(t *testing.T) {
	k := newKit(t)
	k.setup(goodPassword)

	for _, c := range []struct{ user, pw string }{
		{"admin", "wrong-password-123"},
		{"admin", ""},
		{"root", goodPassword},
	} {
		r := k.do(req{Method: http.MethodPost, Path: "/api/v1/session", Body: map[string]string{"username": c.user, "password": c.pw}})
		wantStatus(t, r, http.StatusUnauthorized, "login as "+c.user+" with "+c.pw)
		if len(r.Cookie) != 0 {
			t.Fatalf("a failed login set cookies: %v", r.Cookie)
		}
		if strings.Contains(r.String(), "token") {
			t.Fatalf("a failed login answered a token: %s", r.Body)
		}
	}
	r := k.do(req{Method: http.MethodPost, Path: "/api/v1/session", Body: `{"username":"admin","password":"x","otp":1}`})
	wantStatus(t, r, http.StatusBadRequest, "login with an unknown field")

	r = k.do(req{Method: http.MethodPost, Path: "/api/v1/session", Body: map[string]string{"username": "admin", "password": goodPassword}})
	wantStatus(t, r, http.StatusOK, "login")
	var a loginAnswer
	r.JSON(t, &a)
	if a.Token == "" || a.CSRF == "" || a.Token == a.CSRF || a.User != "admin" {
		t.Fatalf("login answer %s", r.Body)
	}
	if want := k.clock.Now().Add(8 * time.Hour); !a.Expires.Equal(want) {
		t.Errorf("expires %v, want %v (default TTL 8h)", a.Expires, want)
	}
	var cookie *http.Cookie
	for _, c := range r.Cookie {
		if c.Name == webui.CookieName {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatalf("no %s cookie in %v", webui.CookieName, r.Header.Values("Set-Cookie"))
	}
	if !cookie.Secure || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/" {
		t.Fatalf("cookie %q: want Secure, HttpOnly, SameSite=Strict, Path=/", r.Header.Get("Set-Cookie"))
	}
	if cookie.Value != a.Token {
		t.Fatalf("cookie value differs from the answered token")
	}
	if !k.sessionExists(a.Token) {
		t.Fatal("no session in the store for the token")
	}
	// The cookie alone authenticates a GET.
	wantStatus(t, k.get("/api/v1/status"), http.StatusOK, "status with the cookie")
	if n := k.auditCount("login", false); n != 3 {
		t.Errorf("%d failed login audit events, want 3", n)
	}
	if n := k.auditCount("login", true); n != 1 {
		t.Errorf("%d successful login audit events, want 1", n)
	}
}

func TestBearerTokenNeedsNoCSRF(t *testing.T) {
	k := ready(t)
	noJar := k.newClient(false)

	wantStatus(t, k.do(req{Path: "/api/v1/status", Client: noJar}), http.StatusUnauthorized, "status without credentials")
	for _, h := range []string{"Bearer not-a-token", "Basic " + k.token, "bearer " + k.token} {
		r := k.do(req{Path: "/api/v1/status", Client: noJar, Header: map[string]string{"Authorization": h}})
		wantStatus(t, r, http.StatusUnauthorized, "status with Authorization: "+h)
		if got := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
			t.Errorf("WWW-Authenticate %q", got)
		}
	}

	c := k.candidate()
	c.System.Hostname = "bearer-host"
	r := k.do(req{Method: http.MethodPut, Path: "/api/v1/config/candidate", Body: c, Client: noJar, Header: k.bearer()})
	wantStatus(t, r, http.StatusOK, "PUT candidate with Bearer and no CSRF token")
	if got := k.candidate().System.Hostname; got != "bearer-host" {
		t.Fatalf("candidate hostname %q after the Bearer PUT", got)
	}
	r = k.do(req{Method: http.MethodPost, Path: "/api/v1/config/apply", Body: map[string]any{"comment": "by bearer"}, Client: noJar, Header: k.bearer()})
	wantStatus(t, r, http.StatusOK, "apply with Bearer and no CSRF token")
	if run := k.running(); run.Number != 2 || run.Config.System.Hostname != "bearer-host" {
		t.Fatalf("running revision %d hostname %q", run.Number, run.Config.System.Hostname)
	}
}

func TestCookieRequestsNeedCSRF(t *testing.T) {
	k := ready(t)
	changed := k.candidate()
	changed.SBC.RemoteSubscribers.MinIntervalSeconds = 600

	cases := []struct {
		name   string
		header map[string]string
		status int
	}{
		{"no token", nil, http.StatusForbidden},
		{"empty token", map[string]string{webui.CSRFHeader: ""}, http.StatusForbidden},
		{"wrong token", map[string]string{webui.CSRFHeader: "wrong-" + k.csrf}, http.StatusForbidden},
		{"the session token as CSRF token", map[string]string{webui.CSRFHeader: k.token}, http.StatusForbidden},
		{"right token", map[string]string{webui.CSRFHeader: k.csrf}, http.StatusOK},
	}
	for _, method := range []string{http.MethodPut, http.MethodPost} {
		for _, c := range cases {
			t.Run(method+" "+c.name, func(t *testing.T) {
				before := k.candidate()
				revsBefore := len(k.revisions())
				refusedBefore := k.auditCount("csrf-refused", false)
				var r resp
				if method == http.MethodPut {
					r = k.do(req{Method: method, Path: "/api/v1/config/candidate", Body: changed, Header: c.header})
				} else {
					r = k.do(req{Method: method, Path: "/api/v1/config/apply", Body: map[string]any{"comment": "csrf test"}, Header: c.header})
				}
				wantStatus(t, r, c.status, c.name)
				if c.status == http.StatusForbidden {
					sameConfig(t, "candidate after a refused request", k.candidate(), before)
					if n := len(k.revisions()); n != revsBefore {
						t.Fatalf("%d revisions after a refused request, want %d", n, revsBefore)
					}
					if n := k.auditCount("csrf-refused", false); n != refusedBefore+1 {
						t.Fatalf("%d csrf-refused audit events, want %d", n, refusedBefore+1)
					}
					last := k.audit()[len(k.audit())-1]
					if last.Action != "csrf-refused" || last.Actor != "admin" || !strings.Contains(last.Detail, method+" /api/v1/config/") || last.Source != "127.0.0.1" {
						t.Fatalf("last audit event %+v", last)
					}
					return
				}
				if method == http.MethodPut {
					if got := k.candidate().SBC.RemoteSubscribers.MinIntervalSeconds; got != 600 {
						t.Fatalf("candidate minIntervalSeconds %d after the PUT", got)
					}
				} else if n := len(k.revisions()); n != revsBefore+1 {
					t.Fatalf("%d revisions after apply, want %d", n, revsBefore+1)
				}
			})
		}
	}
	// DELETE (logout) needs it too.
	r := k.do(req{Method: http.MethodDelete, Path: "/api/v1/session"})
	wantStatus(t, r, http.StatusForbidden, "logout without the CSRF token")
	if !k.sessionExists(k.token) {
		t.Fatal("a logout without the CSRF token ended the session")
	}
}

func TestCrossOriginRefused(t *testing.T) {
	k := ready(t)
	before := k.candidate()
	cases := []struct {
		name   string
		method string
		path   string
		body   any
		header map[string]string
	}{
		{"cross-site apply with cookie and CSRF token", "POST", "/api/v1/config/apply", map[string]any{"comment": "evil"},
			map[string]string{"Sec-Fetch-Site": "cross-site", webui.CSRFHeader: k.csrf}},
		{"same-site apply", "POST", "/api/v1/config/apply", map[string]any{"comment": "evil"},
			map[string]string{"Sec-Fetch-Site": "same-site", webui.CSRFHeader: k.csrf}},
		{"cross-site PUT with Bearer", "PUT", "/api/v1/config/candidate", withProxy(before),
			map[string]string{"Sec-Fetch-Site": "cross-site", "Authorization": "Bearer " + k.token}},
		{"foreign Origin", "POST", "/api/v1/config/rollback", map[string]any{"revision": 1},
			map[string]string{"Origin": "https://evil.example", webui.CSRFHeader: k.csrf}},
		{"cross-site login", "POST", "/api/v1/session", map[string]string{"username": "admin", "password": goodPassword},
			map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"cross-site form apply", "POST", "/config/apply", url.Values{"csrf": {k.csrf}, "comment": {"evil"}},
			map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"cross-site logout", "POST", "/logout", url.Values{"csrf": {k.csrf}},
			map[string]string{"Sec-Fetch-Site": "cross-site"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := k.do(req{Method: c.method, Path: c.path, Body: c.body, Header: c.header})
			wantStatus(t, r, http.StatusForbidden, c.name)
		})
	}
	sameConfig(t, "candidate after cross-origin requests", k.candidate(), before)
	if n := len(k.revisions()); n != 1 {
		t.Fatalf("%d revisions after cross-origin requests, want 1", n)
	}
	if !k.sessionExists(k.token) {
		t.Fatal("a cross-origin logout ended the session")
	}
	if n := k.auditCount("login", true); n != 1 {
		t.Fatalf("%d successful logins, want 1 (the cross-site login must not log in)", n)
	}
	// Same-origin requests and cross-site GETs pass.
	r := k.do(req{Method: "POST", Path: "/api/v1/config/apply", Body: map[string]any{"comment": "ok"},
		Header: map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": k.ts.URL, webui.CSRFHeader: k.csrf}})
	wantStatus(t, r, http.StatusOK, "same-origin apply")
	r = k.do(req{Path: "/api/v1/status", Header: map[string]string{"Sec-Fetch-Site": "cross-site"}})
	wantStatus(t, r, http.StatusOK, "cross-site GET")
}

func TestLoginThrottle(t *testing.T) {
	k := newKit(t)
	k.setup(goodPassword)
	login := func(pw string) resp {
		t.Helper()
		return k.do(req{Method: http.MethodPost, Path: "/api/v1/session", Body: map[string]string{"username": "admin", "password": pw}})
	}
	for i := range 5 {
		wantStatus(t, login(fmt.Sprintf("wrong-password-%d", i)), http.StatusUnauthorized, fmt.Sprintf("failure %d", i+1))
	}
	for _, pw := range []string{"wrong-password-x", goodPassword} {
		r := login(pw)
		wantStatus(t, r, http.StatusTooManyRequests, "attempt after 5 failures with "+pw)
		ra, err := strconv.Atoi(r.Header.Get("Retry-After"))
		if err != nil || ra < 1 || ra > 2 {
			t.Fatalf("Retry-After %q, want 1-2 seconds", r.Header.Get("Retry-After"))
		}
		if len(r.Cookie) != 0 {
			t.Fatal("a throttled login set a cookie")
		}
	}
	// The login form is throttled the same way.
	r := k.do(req{Method: http.MethodPost, Path: "/login", Body: url.Values{"username": {"admin"}, "password": {goodPassword}}})
	wantStatus(t, r, http.StatusTooManyRequests, "form login while throttled")
	if r.Header.Get("Retry-After") == "" || !strings.Contains(r.String(), "too many failed logins") {
		t.Fatalf("throttled login page: Retry-After %q, body:\n%s", r.Header.Get("Retry-After"), r.Body)
	}
	if n := k.auditCount("login", true); n != 0 {
		t.Fatalf("%d successful logins while throttled", n)
	}

	k.clock.Advance(900 * time.Millisecond)
	wantStatus(t, login(goodPassword), http.StatusTooManyRequests, "right password before the delay passed")
	k.clock.Advance(200 * time.Millisecond)
	k.login(goodPassword)
	// A success clears the count: the next failure is free again.
	wantStatus(t, login("wrong-again-123"), http.StatusUnauthorized, "failure after a success")
	k.login(goodPassword)
}

func TestLoginThrottleDoublesDelay(t *testing.T) {
	k := newKit(t)
	k.setup(goodPassword)
	fail := func(what string, status int) resp {
		t.Helper()
		r := k.do(req{Method: http.MethodPost, Path: "/api/v1/session", Body: map[string]string{"username": "admin", "password": "wrong-password"}})
		wantStatus(t, r, status, what)
		return r
	}
	for i := range 5 {
		fail(fmt.Sprint("free failure ", i+1), http.StatusUnauthorized)
	}
	k.clock.Advance(time.Second + time.Millisecond)
	fail("6th failure after 1s", http.StatusUnauthorized)
	r := fail("right after the 6th failure", http.StatusTooManyRequests)
	if ra := r.Header.Get("Retry-After"); ra != "3" { // 2s wait, rounded up
		t.Fatalf("Retry-After %q after 6 failures, want 3", ra)
	}
	k.clock.Advance(time.Second)
	fail("1s into a 2s delay", http.StatusTooManyRequests)
	k.clock.Advance(time.Second + time.Millisecond)
	k.login(goodPassword)
}

func TestLogout(t *testing.T) {
	k := ready(t)
	token := k.token
	r := k.send(http.MethodDelete, "/api/v1/session", nil)
	wantStatus(t, r, http.StatusNoContent, "logout")
	var cleared bool
	for _, c := range r.Cookie {
		cleared = cleared || (c.Name == webui.CookieName && c.Value == "" && c.MaxAge < 0)
	}
	if !cleared {
		t.Errorf("logout did not clear the cookie: %v", r.Header.Values("Set-Cookie"))
	}
	if k.sessionExists(token) {
		t.Fatal("the session is still in the store after logout")
	}
	wantStatus(t, k.get("/api/v1/status"), http.StatusUnauthorized, "status after logout")
	r = k.do(req{Path: "/api/v1/status", Client: k.newClient(false), Header: map[string]string{"Authorization": "Bearer " + token}})
	wantStatus(t, r, http.StatusUnauthorized, "the old token as Bearer after logout")
	if n := k.auditCount("logout", true); n != 1 {
		t.Fatalf("%d logout audit events, want 1", n)
	}
}

func TestSessionExpiry(t *testing.T) {
	for _, c := range []struct {
		name string
		ttl  time.Duration
		opts []kitOption
	}{
		{"default 8h", 8 * time.Hour, nil},
		{"30m", 30 * time.Minute, []kitOption{withSessionTTL(30 * time.Minute)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := ready(t, c.opts...)
			k.clock.Advance(c.ttl - time.Second)
			wantStatus(t, k.get("/api/v1/status"), http.StatusOK, "status just before expiry")
			k.clock.Advance(2 * time.Second)
			r := k.get("/api/v1/status")
			wantStatus(t, r, http.StatusUnauthorized, "status after expiry")
			if !strings.Contains(r.String(), "expired") {
				t.Errorf("body %s does not say the session expired", r.Body)
			}
			if k.sessionExists(k.token) {
				t.Fatal("the expired session is still in the store")
			}
			r = k.do(req{Path: "/api/v1/status", Client: k.newClient(false), Header: k.bearer()})
			wantStatus(t, r, http.StatusUnauthorized, "Bearer after expiry")
			r = k.get("/config")
			wantStatus(t, r, http.StatusSeeOther, "page after expiry")
			if loc := r.Header.Get("Location"); loc != "/login" {
				t.Fatalf("page after expiry: Location %q, want /login", loc)
			}
		})
	}
}

func TestAuditEvents(t *testing.T) {
	k := newKit(t)
	k.setup(goodPassword)
	r := k.do(req{Method: http.MethodPost, Path: "/api/v1/session", Body: map[string]string{"username": "admin", "password": "not-the-password"}})
	wantStatus(t, r, http.StatusUnauthorized, "wrong login")
	k.login(goodPassword)
	c := k.candidate()
	c.System.Hostname = "audited"
	k.putCandidate(c)
	rev := k.apply("audit me", 0)
	r = k.send(http.MethodPost, "/api/v1/config/rollback", map[string]any{"revision": 1})
	wantStatus(t, r, http.StatusOK, "rollback")

	want := []struct {
		action string
		ok     bool
		detail string
	}{
		{"setup", true, "admin password set"},
		{"login", false, "wrong user name or password"},
		{"login", true, ""},
		{"apply", true, fmt.Sprintf("revision %d: audit me", rev)},
		{"rollback", true, "to revision 1"},
	}
	var events []store.Event
	for _, e := range k.audit() {
		switch e.Action {
		case "setup", "login", "apply", "rollback":
			events = append(events, e)
		}
	}
	if len(events) != len(want) {
		t.Fatalf("%d audit events, want %d: %+v", len(events), len(want), events)
	}
	for i, w := range want {
		e := events[i]
		if e.Action != w.action || e.OK != w.ok || e.Detail != w.detail || e.Actor != "admin" || e.Source != "127.0.0.1" || e.Time.IsZero() {
			t.Errorf("event %d = %+v, want action %q ok %v detail %q by admin from 127.0.0.1", i, e, w.action, w.ok, w.detail)
		}
	}

	// The API shows them newest first, and respects limit.
	r = k.get("/api/v1/audit?limit=2")
	wantStatus(t, r, http.StatusOK, "GET audit")
	var got []struct {
		Action string `json:"action"`
		OK     bool   `json:"ok"`
	}
	r.JSON(t, &got)
	if len(got) != 2 || got[0].Action != "rollback" || got[1].Action != "apply" {
		t.Fatalf("GET /api/v1/audit?limit=2 = %+v", got)
	}
}

func TestHashPassword(t *testing.T) {
	p := webui.HashParams{MemoryKiB: 64, Time: 1, Threads: 1}
	h1, err := webui.HashPassword(goodPassword, p)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := webui.HashPassword(goodPassword, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{h1, h2} {
		if !phcArgon2id.MatchString(h) {
			t.Fatalf("hash %q is not a PHC argon2id string with m=64,t=1,p=1", h)
		}
	}
	if h1 == h2 {
		t.Fatal("two hashes of one password are equal: no random salt")
	}
	if ok, err := webui.CheckPassword(h1, goodPassword); !ok || err != nil {
		t.Fatalf("CheckPassword(right) = %v, %v", ok, err)
	}
	for _, wrong := range []string{"", goodPassword + " ", strings.ToUpper(goodPassword), goodPassword[:len(goodPassword)-1], strings.Repeat("x", 300)} {
		if ok, err := webui.CheckPassword(h1, wrong); ok || err != nil {
			t.Fatalf("CheckPassword(%q) = %v, %v; want false, nil", wrong, ok, err)
		}
	}
	d := webui.DefaultHashParams()
	if d.MemoryKiB != 19*1024 || d.Time != 2 || d.Threads != 1 {
		t.Fatalf("DefaultHashParams() = %+v", d)
	}
	hd, err := webui.HashPassword("x", webui.HashParams{MemoryKiB: 128, Time: 2, Threads: 2})
	if err != nil || !strings.HasPrefix(hd, "$argon2id$v=19$m=128,t=2,p=2$") {
		t.Fatalf("hash with other parameters: %q, %v", hd, err)
	}
	if ok, err := webui.CheckPassword(hd, "x"); !ok || err != nil {
		t.Fatalf("CheckPassword with other parameters = %v, %v", ok, err)
	}
}

func TestCheckPasswordMalformed(t *testing.T) {
	good, err := webui.HashPassword(goodPassword, webui.HashParams{MemoryKiB: 64, Time: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, "$") // "", argon2id, v=19, m=..., salt, key
	salt, key := parts[4], parts[5]
	cases := map[string]string{
		"empty":              "",
		"plain text":         goodPassword,
		"bcrypt":             "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
		"argon2i":            "$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key,
		"argon2d":            "$argon2d$v=19$m=64,t=1,p=1$" + salt + "$" + key,
		"missing version":    "$argon2id$m=64,t=1,p=1$" + salt + "$" + key,
		"old version":        "$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + key,
		"garbage version":    "$argon2id$v=x$m=64,t=1,p=1$" + salt + "$" + key,
		"garbage parameters": "$argon2id$v=19$m=x,t=1,p=1$" + salt + "$" + key,
		"missing parameter":  "$argon2id$v=19$m=64,t=1$" + salt + "$" + key,
		"zero threads":       "$argon2id$v=19$m=64,t=1,p=0$" + salt + "$" + key,
		"threads overflow":   "$argon2id$v=19$m=64,t=1,p=256$" + salt + "$" + key,
		"zero time":          "$argon2id$v=19$m=64,t=0,p=1$" + salt + "$" + key,
		"huge time":          "$argon2id$v=19$m=64,t=1000,p=1$" + salt + "$" + key,
		"huge memory":        "$argon2id$v=19$m=4194304,t=1,p=1$" + salt + "$" + key,
		"bad salt":           "$argon2id$v=19$m=64,t=1,p=1$!!!$" + key,
		"bad key":            "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$!!!",
		"empty key":          "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$",
		"too many fields":    good + "$extra",
		"too few fields":     "$argon2id$v=19$m=64,t=1,p=1$" + salt,
		"no leading dollar":  strings.TrimPrefix(good, "$"),
		"padded base64 salt": "$argon2id$v=19$m=64,t=1,p=1$" + salt + "==$" + key,
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			var ok bool
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						err = nil
						t.Fatalf("CheckPassword(%q) panicked: %v", h, p)
					}
				}()
				ok, err = webui.CheckPassword(h, goodPassword)
			}()
			if ok || err == nil {
				t.Fatalf("CheckPassword(%q) = %v, %v; want false and an error", h, ok, err)
			}
		})
	}
}
