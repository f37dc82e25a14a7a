package webui_test

import (
	"bytes"
	"html"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/psigate/psigate/appliance/config"
	"github.com/psigate/psigate/appliance/store"
	"github.com/psigate/psigate/webui"
)

var (
	csrfInput    = regexp.MustCompile(`<input type="hidden" name="csrf" value="([^"]*)">`)
	postForm     = regexp.MustCompile(`<form method="post"`)
	candidateBox = regexp.MustCompile(`(?s)<textarea name="config" id="candidate"[^>]*>(.*?)</textarea>`)
)

// wantHTML fails unless r is a 200 HTML page containing every marker.
func wantHTML(t *testing.T, r resp, status int, what string, markers ...string) string {
	t.Helper()
	wantStatus(t, r, status, what)
	if ct := r.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("%s: Content-Type %q", what, ct)
	}
	page := r.String()
	var missing []string
	for _, m := range markers {
		if !strings.Contains(page, m) {
			missing = append(missing, m)
		}
	}
	if missing != nil {
		t.Fatalf("%s: page lacks %q; page:\n%s", what, missing, page)
	}
	return page
}

// wantCSRFInputs fails unless every POST form of the page carries the
// session's CSRF token.
func wantCSRFInputs(t *testing.T, page, csrf, what string) {
	t.Helper()
	forms := len(postForm.FindAllString(page, -1))
	inputs := csrfInput.FindAllStringSubmatch(page, -1)
	if forms == 0 || len(inputs) != forms {
		t.Fatalf("%s: %d POST forms, %d csrf inputs", what, forms, len(inputs))
	}
	for _, m := range inputs {
		if m[1] != csrf {
			t.Fatalf("%s: csrf input %q, want the session's token", what, m[1])
		}
	}
}

// wantRedirect fails unless r is a 303 to a location starting with prefix.
func wantRedirect(t *testing.T, r resp, prefix, what string) string {
	t.Helper()
	wantStatus(t, r, http.StatusSeeOther, what)
	loc := r.Header.Get("Location")
	if !strings.HasPrefix(loc, prefix) {
		t.Fatalf("%s: Location %q, want %s…", what, loc, prefix)
	}
	return loc
}

// form posts a form with the session's CSRF token.
func (k *kit) form(path string, v url.Values) resp {
	k.t.Helper()
	if v == nil {
		v = url.Values{}
	}
	if _, ok := v["csrf"]; !ok {
		v.Set("csrf", k.csrf)
	}
	return k.do(req{Method: http.MethodPost, Path: path, Body: v})
}

// multipartFile is a multipart form with the CSRF token, fields and an
// optional file.
func multipartFile(t *testing.T, fields map[string]string, file []byte) rawBody {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for k, v := range fields {
		if err := w.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if file != nil {
		fw, err := w.CreateFormFile("file", "psigate-config.json")
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(file)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return rawBody{ContentType: w.FormDataContentType(), Data: buf.Bytes()}
}

func TestPagesAfterLogin(t *testing.T) {
	k := ready(t)
	c := withProxy(k.candidate())
	c.SBC.RemoteSubscribers.MinIntervalSeconds = 600
	k.putCandidate(c)
	k.apply("second", 0)

	cases := []struct {
		path    string
		nav     string
		markers []string
	}{
		{"/", "/", []string{`id="system"`, `id="alarms"`, `id="services"`, `<td id="version">` + testVersion + `</td>`,
			"psigate-test", k.id.MachineID, "a test alarm", `class="sev-major"`, `class="state-running"`, "revision 2 (apply"}},
		{"/config", "/config", []string{`id="candidate"`, `action="/config/apply"`, `action="/config/candidate"`, `id="confirm-minutes"`,
			`<p id="candidate-diff">No differences.</p>`, "Running: revision 2", "&#34;minIntervalSeconds&#34;: 600"}},
		{"/history", "/history", []string{`id="revisions"`, "2 (running)", `data-revision="1"`, `href="/history/diff?from=1&to=2"`, "second", "factory defaults"}},
		{"/history/diff?from=1&to=running", "/history", []string{`id="diff"`, "<strong>1</strong>", "<strong>running</strong>",
			"sbc.remoteSubscribers.minIntervalSeconds: 300 -&gt; 600", "cloudLink.proxy.password: &#34;&#34; -&gt; &#34;(secret)&#34;"}},
		{"/backup", "/backup", []string{`action="/backup/import"`, `enctype="multipart/form-data"`, `id="export"`, `id="export-secrets"`}},
		{"/audit", "/audit", []string{`id="audit"`, "<td>login</td>", "<td>apply</td>", "<td>setup</td>", "<td>127.0.0.1</td>"}},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			page := wantHTML(t, k.get(c.path), http.StatusOK, "GET "+c.path, c.markers...)
			wantCSRFInputs(t, page, k.csrf, c.path)
			if !strings.Contains(page, `<a href="`+c.nav+`" class="active">`) {
				t.Errorf("navigation entry %s is not active", c.nav)
			}
			if !strings.Contains(page, `action="/logout"`) || !strings.Contains(page, "<span>admin</span>") {
				t.Errorf("no logout form for admin")
			}
			if strings.Contains(page, proxySecret) {
				t.Fatal("the page shows the proxy password")
			}
		})
	}
	// A pending apply puts a banner with a confirm form on every page.
	k.apply("pending", 5)
	for _, c := range cases {
		page := wantHTML(t, k.get(c.path), http.StatusOK, "GET "+c.path+" while pending", `id="pending"`, "Confirm revision 3", "rolls back to revision 2")
		wantCSRFInputs(t, page, k.csrf, c.path+" while pending")
	}
}

func TestPagesRedirectToLoginWithoutSession(t *testing.T) {
	k := newKit(t)
	k.setup(goodPassword)
	for _, p := range []string{"/", "/config", "/history", "/history/diff?from=1&to=1", "/backup", "/backup/export", "/audit"} {
		wantRedirect(t, k.get(p), "/login", "GET "+p)
	}
	for _, p := range []string{"/logout", "/config/candidate", "/config/apply", "/config/confirm", "/history/rollback", "/backup/import"} {
		wantRedirect(t, k.do(req{Method: http.MethodPost, Path: p, Body: url.Values{"csrf": {"x"}}}), "/login", "POST "+p)
	}
	wantHTML(t, k.get("/login"), http.StatusOK, "GET /login", `id="username"`, `value="admin"`, `id="password"`, `id="login"`)
	if n := len(k.revisions()); n != 1 {
		t.Fatalf("%d revisions, want 1", n)
	}
}

func TestSetupForm(t *testing.T) {
	k := newKit(t)
	page := wantHTML(t, k.get("/setup"), http.StatusOK, "GET /setup", `id="password"`, `id="confirm-password"`, "at least 10 characters", "well-known default")
	if strings.Contains(page, `action="/logout"`) {
		t.Fatal("the setup page has a logout form")
	}
	post := func(pw, again string) resp {
		t.Helper()
		return k.do(req{Method: http.MethodPost, Path: "/setup", Body: url.Values{"password": {pw}, "confirm": {again}}})
	}
	wantHTML(t, post(goodPassword, goodPassword+"x"), http.StatusUnprocessableEntity, "different passwords", `id="error"`, "the two passwords differ")
	wantHTML(t, post("Asd123!.", "Asd123!."), http.StatusUnprocessableEntity, "the well-known default", `id="error"`, "well-known default")
	wantHTML(t, post("ASD123!.", "ASD123!."), http.StatusUnprocessableEntity, "the default in capitals", `id="error"`, "well-known default")
	wantHTML(t, post("short", "short"), http.StatusUnprocessableEntity, "a short password", `id="error"`, "at least 10 characters")
	if u, _ := k.st.User("admin"); u.PasswordHash != "" {
		t.Fatal("a refused setup form set the password")
	}

	r := post(goodPassword, goodPassword)
	wantRedirect(t, r, "/", "setup form")
	if r.Header.Get("Location") != "/" {
		t.Fatalf("setup form: Location %q, want /", r.Header.Get("Location"))
	}
	var cookie *http.Cookie
	for _, c := range r.Cookie {
		if c.Name == webui.CookieName {
			cookie = c
		}
	}
	if cookie == nil || !cookie.Secure || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("setup form cookie %v", r.Header.Values("Set-Cookie"))
	}
	wantHTML(t, k.get("/"), http.StatusOK, "dashboard after setup", `id="system"`, "<span>admin</span>")
}

func TestLoginLogoutForms(t *testing.T) {
	k := newKit(t)
	k.setup(goodPassword)
	r := k.do(req{Method: http.MethodPost, Path: "/login", Body: url.Values{"username": {"admin"}, "password": {"wrong-password"}}})
	wantHTML(t, r, http.StatusUnauthorized, "wrong login form", `id="error"`, "wrong user name or password", `value="admin"`)
	if len(r.Cookie) != 0 {
		t.Fatal("a failed form login set a cookie")
	}
	r = k.do(req{Method: http.MethodPost, Path: "/login", Body: url.Values{"username": {"admin"}, "password": {goodPassword}}})
	wantRedirect(t, r, "/", "login form")
	var token string
	for _, c := range r.Cookie {
		if c.Name == webui.CookieName {
			token = c.Value
		}
	}
	if token == "" || !k.sessionExists(token) {
		t.Fatal("the login form made no session")
	}
	page := wantHTML(t, k.get("/"), http.StatusOK, "dashboard", `id="system"`)
	m := csrfInput.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no csrf input on the dashboard")
	}
	k.csrf = m[1]

	wantStatus(t, k.form("/logout", url.Values{"csrf": {"wrong"}}), http.StatusForbidden, "logout with a wrong token")
	if !k.sessionExists(token) {
		t.Fatal("a logout with a wrong CSRF token ended the session")
	}
	r = k.form("/logout", nil)
	wantRedirect(t, r, "/login", "logout form")
	if k.sessionExists(token) {
		t.Fatal("the session survived the logout form")
	}
	wantRedirect(t, k.get("/"), "/login", "dashboard after logout")
}

func TestConfigFormInvalidValue(t *testing.T) {
	k := ready(t)
	before := k.candidate()
	text := string(setJSON(t, config.Marshal(before), minIntervalPath, 0))
	r := k.form("/config/candidate", url.Values{"config": {text}})
	page := wantHTML(t, r, http.StatusUnprocessableEntity, "invalid config form", `id="error"`,
		"<li><code>"+minIntervalPath+"</code>:")
	wantCSRFInputs(t, page, k.csrf, "invalid config form")
	m := candidateBox.FindStringSubmatch(page)
	if m == nil || html.UnescapeString(m[1]) != text {
		t.Fatal("the form does not keep the submitted text")
	}
	sameConfig(t, "candidate after an invalid form", k.candidate(), before)

	for name, body := range map[string]string{
		"broken JSON":   `{"schemaVersion": 1,`,
		"unknown field": string(setJSON(t, config.Marshal(before), "sbc.bogus", 1)),
		"empty":         "",
	} {
		page := wantHTML(t, k.form("/config/candidate", url.Values{"config": {body}}), http.StatusUnprocessableEntity, name, `id="error"`)
		if !strings.Contains(page, "JSON") && !strings.Contains(page, "json") {
			t.Errorf("%s: the error does not mention JSON", name)
		}
		sameConfig(t, "candidate after "+name, k.candidate(), before)
	}
}

func TestConfigFormSaveKeepsSecrets(t *testing.T) {
	k := ready(t)
	k.putCandidate(withProxy(k.candidate()))
	page := wantHTML(t, k.get("/config"), http.StatusOK, "GET /config")
	m := candidateBox.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no candidate textarea")
	}
	text := html.UnescapeString(m[1])
	if strings.Contains(text, proxySecret) {
		t.Fatal("the textarea shows the proxy password")
	}
	text = string(setJSON(t, []byte(text), minIntervalPath, 900))
	loc := wantRedirect(t, k.form("/config/candidate", url.Values{"config": {text}}), "/config?ok=", "save candidate form")
	got := k.candidate()
	if got.SBC.RemoteSubscribers.MinIntervalSeconds != 900 || got.CloudLink.Proxy.Password != proxySecret {
		t.Fatalf("candidate after the form: minIntervalSeconds %d, password kept %v", got.SBC.RemoteSubscribers.MinIntervalSeconds, got.CloudLink.Proxy.Password == proxySecret)
	}
	if k.running().Number != 1 {
		t.Fatal("saving the candidate applied it")
	}
	wantHTML(t, k.get(loc), http.StatusOK, "after saving", `id="flash"`, "Candidate saved.", "sbc.remoteSubscribers.minIntervalSeconds: 300 -&gt; 900")
}

func TestApplyForm(t *testing.T) {
	k := ready(t)
	c := k.candidate()
	c.SBC.RemoteSubscribers.MinIntervalSeconds = 600
	k.putCandidate(c)

	wantStatus(t, k.form("/config/apply", url.Values{"csrf": {""}, "comment": {"x"}}), http.StatusForbidden, "apply form without token")
	wantStatus(t, k.form("/config/apply", url.Values{"csrf": {"nope"}, "comment": {"x"}}), http.StatusForbidden, "apply form with a wrong token")
	if n := len(k.revisions()); n != 1 {
		t.Fatalf("%d revisions after refused forms", n)
	}
	if n := k.auditCount("csrf-refused", false); n != 2 {
		t.Fatalf("%d csrf-refused audit events, want 2", n)
	}
	page := wantHTML(t, k.form("/config/apply", url.Values{"comment": {"x"}, "confirmMinutes": {"99"}}), http.StatusUnprocessableEntity,
		"apply form with 99 minutes", `id="error"`, "<code>confirmMinutes</code>")
	wantCSRFInputs(t, page, k.csrf, "apply form error")

	loc := wantRedirect(t, k.form("/config/apply", url.Values{"comment": {"by form"}, "confirmMinutes": {"0"}}), "/config?ok=", "apply form")
	run := k.running()
	if run.Number != 2 || run.Author != "admin" || run.Comment != "by form" || run.Kind != store.KindApply || run.Config.SBC.RemoteSubscribers.MinIntervalSeconds != 600 {
		t.Fatalf("running after the apply form: %+v", run.RevisionInfo)
	}
	wantHTML(t, k.get(loc), http.StatusOK, "after apply", `id="flash"`, "Revision 2 is running.", "Running: revision 2")

	loc = wantRedirect(t, k.form("/config/apply", url.Values{"comment": {"careful"}, "confirmMinutes": {"5"}}), "/config?ok=", "apply form with confirmation")
	wantHTML(t, k.get(loc), http.StatusOK, "after apply with confirmation", "Confirm it within 5 minutes", `id="pending"`, "Confirm revision 3")
	if p, err := k.st.Pending(); err != nil || p.Revision != 3 || p.Previous != 2 {
		t.Fatalf("pending %+v, %v", p, err)
	}
	loc = wantRedirect(t, k.form("/config/confirm", nil), "/config?ok=", "confirm form")
	if _, err := k.st.Pending(); err != store.ErrNoPending {
		t.Fatalf("pending after the confirm form: %v", err)
	}
	page = wantHTML(t, k.get(loc), http.StatusOK, "after confirm", "Revision 3 confirmed.")
	if strings.Contains(page, `id="pending"`) {
		t.Fatal("the pending banner stays after confirm")
	}
	loc = wantRedirect(t, k.form("/config/confirm", nil), "/config?ok=", "confirm form with nothing pending")
	wantHTML(t, k.get(loc), http.StatusOK, "after a needless confirm", "Nothing was waiting for confirmation.")
}

func TestRollbackForm(t *testing.T) {
	k := ready(t)
	rev1 := k.running()
	c := k.candidate()
	c.System.Hostname = "changed"
	k.putCandidate(c)
	k.apply("change", 0)

	wantStatus(t, k.form("/history/rollback", url.Values{"revision": {"abc"}}), http.StatusBadRequest, "rollback form with a bad number")
	wantHTML(t, k.form("/history/rollback", url.Values{"revision": {"99"}}), http.StatusNotFound, "rollback form to a missing revision", `id="error"`)
	if k.running().Number != 2 {
		t.Fatal("a refused rollback form changed the running revision")
	}
	loc := wantRedirect(t, k.form("/history/rollback", url.Values{"revision": {"1"}}), "/history?ok=", "rollback form")
	run := k.running()
	if run.Number != 3 || run.From != 1 || run.Kind != store.KindRollback {
		t.Fatalf("running after the rollback form: %+v", run.RevisionInfo)
	}
	sameConfig(t, "running after the rollback form", run.Config, rev1.Config)
	wantHTML(t, k.get(loc), http.StatusOK, "history after rollback", "Rolled back to revision 1; it runs as revision 3.", "3 (running)", "rollback of 1")
}

func TestDiffPageErrors(t *testing.T) {
	k := ready(t)
	wantHTML(t, k.get("/history/diff?from=1&to=99"), http.StatusNotFound, "diff to a missing revision", `id="error"`)
	wantHTML(t, k.get("/history/diff?from=abc&to=1"), http.StatusBadRequest, "diff from garbage", `id="error"`, "<code>revision</code>")
	wantHTML(t, k.get("/history/diff?from=1&to=running"), http.StatusOK, "diff without changes", `<p id="diff">No differences.</p>`)
}

func TestExportDownloadAndImportForm(t *testing.T) {
	k := ready(t)
	k.putCandidate(withProxy(k.candidate()))
	k.apply("proxy", 0)
	saved := k.running().Config

	r := k.get("/backup/export")
	wantStatus(t, r, http.StatusOK, "export download")
	if !strings.HasPrefix(r.Header.Get("Content-Disposition"), `attachment; filename="psigate-config-r2-`) {
		t.Fatalf("Content-Disposition %q", r.Header.Get("Content-Disposition"))
	}
	if strings.Contains(r.String(), proxySecret) {
		t.Fatal("the export without secrets has the proxy password")
	}
	withSecrets := k.get("/backup/export?secrets=1")
	wantStatus(t, withSecrets, http.StatusOK, "export download with secrets")
	if !strings.Contains(withSecrets.String(), proxySecret) {
		t.Fatal("the export with secrets lacks the proxy password")
	}

	c := k.candidate()
	c.System.Hostname = "other"
	c.CloudLink.Proxy.Password = "changed-secret"
	k.putCandidate(c)
	k.apply("other", 0)
	candBefore := k.candidate()

	// Refusals change nothing.
	r = k.do(req{Method: http.MethodPost, Path: "/backup/import", Body: multipartFile(t, map[string]string{"csrf": k.csrf}, nil)})
	wantHTML(t, r, http.StatusBadRequest, "import form without a file", `id="error"`, "choose an exported JSON file")
	bad := setJSON(t, withSecrets.Body, "config."+minIntervalPath, 0)
	r = k.do(req{Method: http.MethodPost, Path: "/backup/import", Body: multipartFile(t, map[string]string{"csrf": k.csrf, "apply": "1"}, bad)})
	wantHTML(t, r, http.StatusUnprocessableEntity, "import form with an invalid file", `id="error"`, "<code>"+minIntervalPath+"</code>")
	r = k.do(req{Method: http.MethodPost, Path: "/backup/import", Body: multipartFile(t, map[string]string{"csrf": "wrong", "apply": "1"}, withSecrets.Body)})
	wantStatus(t, r, http.StatusForbidden, "import form with a wrong token")
	sameConfig(t, "candidate after refused imports", k.candidate(), candBefore)
	if k.running().Number != 3 {
		t.Fatal("a refused import changed the running revision")
	}

	r = k.do(req{Method: http.MethodPost, Path: "/backup/import", Body: multipartFile(t, map[string]string{"csrf": k.csrf, "apply": "1", "comment": "restored"}, withSecrets.Body)})
	loc := wantRedirect(t, r, "/history?ok=", "import form with apply")
	run := k.running()
	if run.Number != 4 || run.Comment != "restored" {
		t.Fatalf("running after the import form: %+v", run.RevisionInfo)
	}
	sameConfig(t, "running after the import form", run.Config, saved)
	wantHTML(t, k.get(loc), http.StatusOK, "history after import", "Imported and applied as revision 4.")

	r = k.do(req{Method: http.MethodPost, Path: "/backup/import", Body: multipartFile(t, map[string]string{"csrf": k.csrf}, withSecrets.Body)})
	wantRedirect(t, r, "/config?ok=", "import form without apply")
	if k.running().Number != 4 {
		t.Fatal("an import without apply applied")
	}
}

func TestStaticFiles(t *testing.T) {
	k := newKit(t)
	r := k.get("/static/style.css")
	wantStatus(t, r, http.StatusOK, "style.css")
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "text/css") || !strings.Contains(r.String(), "body") {
		t.Fatalf("style.css: %q\n%s", r.Header.Get("Content-Type"), r.Body)
	}
	wantStatus(t, k.get("/static/nope.css"), http.StatusNotFound, "missing static file")
}
