package webui_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/psigate/psigate/appliance/config"
	"github.com/psigate/psigate/appliance/store"
)

const minIntervalPath = "sbc.remoteSubscribers.minIntervalSeconds"

// wantFieldError fails unless r is a 422 whose fields name path.
func wantFieldError(t *testing.T, r resp, path, what string) apiFieldError {
	t.Helper()
	wantStatus(t, r, http.StatusUnprocessableEntity, what)
	var e apiFieldError
	r.JSON(t, &e)
	if !slices.Contains(e.paths(), path) {
		t.Fatalf("%s: field paths %q do not contain %q; body:\n%s", what, e.paths(), path, r.Body)
	}
	return e
}

// either400or422 stands for "400, or 422 naming the field" in the tables.
const either400or422 = -1

// wantRefusal checks a refusal: 400 with a message, 422 naming path, or
// (either400or422) one of them, with path naming the field when 422.
func wantRefusal(t *testing.T, r resp, status int, path, what string) {
	t.Helper()
	if status == either400or422 {
		if r.Status != http.StatusBadRequest && r.Status != http.StatusUnprocessableEntity {
			t.Fatalf("%s: status %d, want 400 or 422; body:\n%s", what, r.Status, r.Body)
		}
		status = r.Status
	}
	if status == http.StatusUnprocessableEntity {
		if e := wantFieldError(t, r, path, what); e.Error == "" || e.Fields[0].Message == "" {
			t.Fatalf("%s: error without a message: %s", what, r.Body)
		}
		return
	}
	wantStatus(t, r, status, what)
	var e apiFieldError
	r.JSON(t, &e)
	if e.Error == "" {
		t.Fatalf("%s: no error message: %s", what, r.Body)
	}
}

// setJSON replaces the value at a dotted path of a JSON document.
func setJSON(t *testing.T, doc []byte, path string, v any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	keys := strings.Split(path, ".")
	cur := m
	for _, k := range keys[:len(keys)-1] {
		next, ok := cur[k].(map[string]any)
		if !ok {
			t.Fatalf("no object at %q of %s", k, path)
		}
		cur = next
	}
	cur[keys[len(keys)-1]] = v
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCandidateGetPut(t *testing.T) {
	k := ready(t)
	r := k.get("/api/v1/config/candidate")
	wantStatus(t, r, http.StatusOK, "GET candidate")
	var got config.Config
	r.JSON(t, &got)
	sameConfig(t, "GET candidate", got, k.candidate())
	if got.SBC.RemoteSubscribers.MinIntervalSeconds != 300 {
		t.Fatalf("default minIntervalSeconds %d, want 300", got.SBC.RemoteSubscribers.MinIntervalSeconds)
	}

	got.SBC.RemoteSubscribers.MinIntervalSeconds = 600
	r = k.send(http.MethodPut, "/api/v1/config/candidate", got)
	wantStatus(t, r, http.StatusOK, "PUT candidate")
	var saved config.Config
	r.JSON(t, &saved)
	if saved.SBC.RemoteSubscribers.MinIntervalSeconds != 600 {
		t.Fatalf("PUT answered minIntervalSeconds %d", saved.SBC.RemoteSubscribers.MinIntervalSeconds)
	}
	if v := k.candidate().SBC.RemoteSubscribers.MinIntervalSeconds; v != 600 {
		t.Fatalf("store candidate minIntervalSeconds %d, want 600", v)
	}
	// Running is unchanged until apply.
	if run := k.running(); run.Number != 1 || run.Config.SBC.RemoteSubscribers.MinIntervalSeconds != 300 {
		t.Fatalf("running revision %d minIntervalSeconds %d after PUT", run.Number, run.Config.SBC.RemoteSubscribers.MinIntervalSeconds)
	}
	r = k.get("/api/v1/config/running")
	wantStatus(t, r, http.StatusOK, "GET running")
	var running struct {
		Revision store.RevisionInfo `json:"revision"`
		Config   config.Config      `json:"config"`
	}
	r.JSON(t, &running)
	if running.Revision.Number != 1 || running.Revision.Kind != store.KindInitial || running.Config.SBC.RemoteSubscribers.MinIntervalSeconds != 300 {
		t.Fatalf("GET running = revision %+v, minIntervalSeconds %d", running.Revision, running.Config.SBC.RemoteSubscribers.MinIntervalSeconds)
	}
	r = k.get("/api/v1/config/diff?from=running&to=candidate")
	wantStatus(t, r, http.StatusOK, "diff running candidate")
	if !strings.Contains(r.String(), minIntervalPath) {
		t.Fatalf("diff running->candidate does not name %s:\n%s", minIntervalPath, r.Body)
	}
}

func TestCandidatePutRefused(t *testing.T) {
	k := ready(t)
	valid := config.Marshal(k.candidate())
	cases := []struct {
		name   string
		body   []byte
		status int
		path   string // for 422
	}{
		{"broken JSON", []byte(`{"schemaVersion": 1,`), http.StatusBadRequest, ""},
		{"not JSON", []byte(`minIntervalSeconds=0`), http.StatusBadRequest, ""},
		{"empty body", nil, http.StatusBadRequest, ""},
		{"trailing data", append(append([]byte{}, valid...), []byte(`{}`)...), http.StatusBadRequest, ""},
		{"array", []byte(`[]`), http.StatusBadRequest, ""},
		{"unknown top-level field", setJSON(t, valid, "bogus", 1), either400or422, "bogus"},
		{"unknown nested field", setJSON(t, valid, "sbc.remoteSubscribers.bogus", 1), either400or422, "sbc.remoteSubscribers.bogus"},
		{"invalid value", setJSON(t, valid, minIntervalPath, 0), http.StatusUnprocessableEntity, minIntervalPath},
		{"value above maxExpiry", setJSON(t, setJSON(t, valid, minIntervalPath, 5000), "sbc.remoteSubscribers.maxExpirySeconds", 4000), http.StatusUnprocessableEntity, minIntervalPath},
		{"wrong type", setJSON(t, valid, minIntervalPath, "300"), http.StatusUnprocessableEntity, minIntervalPath},
		{"bad hostname", setJSON(t, valid, "system.hostname", "not a label!"), http.StatusUnprocessableEntity, "system.hostname"},
		{"schema version", setJSON(t, valid, "schemaVersion", 2), http.StatusUnprocessableEntity, "schemaVersion"},
		{"proxy password without URL", setJSON(t, valid, "cloudLink.proxy", map[string]any{"url": "", "username": "u", "password": "p"}), http.StatusUnprocessableEntity, "cloudLink.proxy.url"},
	}
	before := k.candidate()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body any = c.body
			if c.body == nil {
				body = ""
			}
			r := k.send(http.MethodPut, "/api/v1/config/candidate", body)
			wantRefusal(t, r, c.status, c.path, c.name)
			sameConfig(t, "candidate after a refused PUT", k.candidate(), before)
		})
	}
	// Several errors are all named.
	bad := setJSON(t, setJSON(t, valid, minIntervalPath, 0), "system.hostname", "")
	e := wantFieldError(t, k.send(http.MethodPut, "/api/v1/config/candidate", bad), minIntervalPath, "two errors")
	if !slices.Contains(e.paths(), "system.hostname") {
		t.Fatalf("paths %q lack system.hostname", e.paths())
	}
	if n := len(k.revisions()); n != 1 {
		t.Fatalf("%d revisions, want 1", n)
	}
}

func TestApplyAndConfirm(t *testing.T) {
	k := ready(t)
	c := k.candidate()
	c.SBC.RemoteSubscribers.MinIntervalSeconds = 600
	k.putCandidate(c)

	r := k.send(http.MethodPost, "/api/v1/config/apply", map[string]any{"comment": "longer interval", "confirmMinutes": 0})
	wantStatus(t, r, http.StatusOK, "apply")
	var out struct {
		Revision store.RevisionInfo `json:"revision"`
		Pending  *store.Pending     `json:"pending"`
	}
	r.JSON(t, &out)
	if out.Revision.Number != 2 || out.Revision.Kind != store.KindApply || out.Revision.Author != "admin" || out.Revision.Comment != "longer interval" || out.Pending != nil {
		t.Fatalf("apply answered %s", r.Body)
	}
	if run := k.running(); run.Number != 2 || run.Config.SBC.RemoteSubscribers.MinIntervalSeconds != 600 {
		t.Fatalf("running revision %d minIntervalSeconds %d after apply", run.Number, run.Config.SBC.RemoteSubscribers.MinIntervalSeconds)
	}

	for _, m := range []int{-1, 61, 1000} {
		r := k.send(http.MethodPost, "/api/v1/config/apply", map[string]any{"comment": "x", "confirmMinutes": m})
		wantFieldError(t, r, "confirmMinutes", fmt.Sprint("confirmMinutes ", m))
	}
	wantStatus(t, k.send(http.MethodPost, "/api/v1/config/apply", `{"comment": "x", "confirm": 5}`), http.StatusBadRequest, "apply with an unknown field")
	wantStatus(t, k.send(http.MethodPost, "/api/v1/config/apply", `{"comment": "x", "confirmMinutes": "5"}`), http.StatusBadRequest, "apply with a string")
	if n := len(k.revisions()); n != 2 {
		t.Fatalf("%d revisions after refused applies, want 2", n)
	}

	r = k.send(http.MethodPost, "/api/v1/config/confirm", nil)
	wantStatus(t, r, http.StatusConflict, "confirm with nothing pending")

	r = k.send(http.MethodPost, "/api/v1/config/apply", map[string]any{"comment": "try", "confirmMinutes": 60})
	wantStatus(t, r, http.StatusOK, "apply with confirmMinutes 60")
	out.Pending = nil
	r.JSON(t, &out)
	if out.Revision.Number != 3 || out.Pending == nil || out.Pending.Revision != 3 || out.Pending.Previous != 2 ||
		!out.Pending.Deadline.Equal(k.clock.Now().Add(60*time.Minute)) {
		t.Fatalf("apply with confirmation answered %s", r.Body)
	}
	if p, err := k.st.Pending(); err != nil || p.Revision != 3 {
		t.Fatalf("store pending %+v, %v", p, err)
	}
	r = k.get("/api/v1/status")
	wantStatus(t, r, http.StatusOK, "status")
	var status struct {
		Version string             `json:"version"`
		Running store.RevisionInfo `json:"running"`
		Pending *store.Pending     `json:"pending"`
	}
	r.JSON(t, &status)
	if status.Version != testVersion || status.Running.Number != 3 || status.Pending == nil || status.Pending.Revision != 3 {
		t.Fatalf("status %s", r.Body)
	}

	r = k.send(http.MethodPost, "/api/v1/config/confirm", nil)
	wantStatus(t, r, http.StatusOK, "confirm")
	var conf struct {
		Confirmed uint64 `json:"confirmed"`
	}
	r.JSON(t, &conf)
	if conf.Confirmed != 3 {
		t.Fatalf("confirm answered %s", r.Body)
	}
	if _, err := k.st.Pending(); err != store.ErrNoPending {
		t.Fatalf("store pending after confirm: %v", err)
	}
	wantStatus(t, k.send(http.MethodPost, "/api/v1/config/confirm", nil), http.StatusConflict, "second confirm")
	if n := k.auditCount("confirm", true); n != 1 {
		t.Fatalf("%d successful confirm audit events, want 1", n)
	}
	if run := k.running(); run.Number != 3 {
		t.Fatalf("running revision %d after confirm, want 3", run.Number)
	}
}

func TestRevisionsAndDiff(t *testing.T) {
	k := ready(t)
	c := k.candidate()
	c.SBC.RemoteSubscribers.MinIntervalSeconds = 600
	k.putCandidate(c)
	k.apply("r2", 0)
	c.System.Hostname = "gw1"
	k.putCandidate(c)
	k.apply("r3", 0)

	r := k.get("/api/v1/config/revisions")
	wantStatus(t, r, http.StatusOK, "revisions")
	var list []store.RevisionInfo
	r.JSON(t, &list)
	var nums []uint64
	for _, l := range list {
		nums = append(nums, l.Number)
	}
	if !slices.Equal(nums, []uint64{3, 2, 1}) {
		t.Fatalf("revisions %v, want newest first [3 2 1]", nums)
	}
	if list[0].Comment != "r3" || list[1].Comment != "r2" || list[2].Kind != store.KindInitial || list[0].Author != "admin" {
		t.Fatalf("revisions %s", r.Body)
	}

	type diffAnswer struct {
		From, To string
		Changes  []config.Change `json:"changes"`
	}
	diff := func(q string) diffAnswer {
		t.Helper()
		r := k.get("/api/v1/config/diff?" + q)
		wantStatus(t, r, http.StatusOK, "diff "+q)
		var d diffAnswer
		r.JSON(t, &d)
		if d.Changes == nil {
			t.Fatalf("diff %s: changes is null, want a list: %s", q, r.Body)
		}
		return d
	}
	d := diff("from=1&to=2")
	if len(d.Changes) != 1 || d.Changes[0] != (config.Change{Path: minIntervalPath, Old: "300", New: "600"}) || d.From != "1" || d.To != "2" {
		t.Fatalf("diff 1->2 = %+v", d)
	}
	d = diff("from=2&to=3")
	if len(d.Changes) != 1 || d.Changes[0].Path != "system.hostname" || d.Changes[0].New != `"gw1"` {
		t.Fatalf("diff 2->3 = %+v", d)
	}
	d = diff("from=1&to=running")
	if len(d.Changes) != 2 {
		t.Fatalf("diff 1->running = %+v, want 2 changes", d)
	}
	if d = diff("from=running&to=candidate"); len(d.Changes) != 0 {
		t.Fatalf("diff running->candidate = %+v, want none", d)
	}
	if d = diff("from=3&to=2"); len(d.Changes) != 1 || d.Changes[0].Old != `"gw1"` {
		t.Fatalf("diff 3->2 = %+v", d)
	}

	for _, q := range []string{"from=1&to=99", "from=99&to=1", "from=0&to=1"} {
		r := k.get("/api/v1/config/diff?" + q)
		wantStatus(t, r, http.StatusNotFound, "diff "+q)
		var e apiFieldError
		r.JSON(t, &e)
		if e.Error == "" {
			t.Fatalf("diff %s: no error message", q)
		}
	}
	for _, q := range []string{"from=abc&to=1", "from=1&to=-1", "from=1&to=1.5", "from=Running&to=1"} {
		wantRefusal(t, k.get("/api/v1/config/diff?"+q), either400or422, "revision", "diff "+q)
	}
	for _, q := range []string{"", "from=1", "to=1", "from=&to=1"} {
		wantStatus(t, k.get("/api/v1/config/diff?"+q), http.StatusBadRequest, "diff "+q)
	}
}

func TestRollback(t *testing.T) {
	k := ready(t)
	rev1 := k.running()
	c := k.candidate()
	c.SBC.RemoteSubscribers.MinIntervalSeconds = 600
	c.System.Hostname = "changed"
	k.putCandidate(c)
	k.apply("change", 5) // pending; a rollback cancels it

	r := k.send(http.MethodPost, "/api/v1/config/rollback", map[string]any{"revision": 1, "comment": "back to the defaults"})
	wantStatus(t, r, http.StatusOK, "rollback")
	var out struct {
		Revision store.RevisionInfo `json:"revision"`
	}
	r.JSON(t, &out)
	if out.Revision.Number != 3 || out.Revision.From != 1 || out.Revision.Kind != store.KindRollback || out.Revision.Comment != "back to the defaults" || out.Revision.Author != "admin" {
		t.Fatalf("rollback answered %s", r.Body)
	}
	run := k.running()
	if run.Number != 3 || run.From != 1 {
		t.Fatalf("running %+v after rollback", run.RevisionInfo)
	}
	sameConfig(t, "running config after rollback to 1", run.Config, rev1.Config)
	sameConfig(t, "candidate after rollback to 1", k.candidate(), rev1.Config)
	if _, err := k.st.Pending(); err != store.ErrNoPending {
		t.Fatalf("pending after rollback: %v", err)
	}

	for _, c := range []struct {
		body   any
		status int
	}{
		{map[string]any{"revision": 99}, http.StatusNotFound},
		{map[string]any{"revision": 0}, http.StatusNotFound},
		{map[string]any{"revision": "1"}, http.StatusBadRequest},
		{map[string]any{"revision": -1}, http.StatusBadRequest},
		{map[string]any{"revision": 1, "force": true}, http.StatusBadRequest},
		{`{"revision": 1`, http.StatusBadRequest},
	} {
		r := k.send(http.MethodPost, "/api/v1/config/rollback", c.body)
		wantStatus(t, r, c.status, fmt.Sprintf("rollback %v", c.body))
		if n := k.running().Number; n != 3 {
			t.Fatalf("running revision %d after a refused rollback", n)
		}
	}
	if n := k.auditCount("rollback", false); n != 2 {
		t.Errorf("%d refused rollback audit events, want 2", n)
	}
}

func TestExportSecrets(t *testing.T) {
	k := ready(t)
	k.putCandidate(withProxy(k.candidate()))
	k.apply("proxy", 0)
	if got := k.running().Config.CloudLink.Proxy.Password; got != proxySecret {
		t.Fatalf("running proxy password %q, want the secret", got)
	}

	filename := regexp.MustCompile(`^attachment; filename="psigate-config-r2-\d{8}-\d{6}\.json"$`)
	for _, c := range []struct {
		query   string
		secrets bool
	}{
		{"", false},
		{"?secrets=false", false},
		{"?secrets=1", false}, // the API takes "true"
		{"?secrets=true", true},
	} {
		r := k.get("/api/v1/config/export" + c.query)
		wantStatus(t, r, http.StatusOK, "export"+c.query)
		if cd := r.Header.Get("Content-Disposition"); !filename.MatchString(cd) {
			t.Errorf("export%s: Content-Disposition %q", c.query, cd)
		}
		var e config.Export
		r.JSON(t, &e)
		if e.Format != config.ExportFormat || e.MachineID != k.id.MachineID || e.Revision != 2 || e.SecretsIncluded != c.secrets {
			t.Fatalf("export%s header: format %q machine %q revision %d secrets %v", c.query, e.Format, e.MachineID, e.Revision, e.SecretsIncluded)
		}
		if e.Config.CloudLink.Proxy.Username != "psigate" || e.Config.CloudLink.Proxy.URL == "" {
			t.Fatalf("export%s lost the proxy: %+v", c.query, e.Config.CloudLink.Proxy)
		}
		has := strings.Contains(r.String(), proxySecret)
		if has != c.secrets || (e.Config.CloudLink.Proxy.Password == proxySecret) != c.secrets {
			t.Fatalf("export%s: secret included %v, want %v", c.query, has, c.secrets)
		}
		if c.secrets {
			sameConfig(t, "export with secrets", e.Config, k.running().Config)
		}
	}
	if n := k.auditCount("export", true); n != 4 {
		t.Errorf("%d export audit events, want 4", n)
	}
}

func TestImportApply(t *testing.T) {
	k := ready(t)
	k.putCandidate(withProxy(k.candidate()))
	k.apply("proxy", 0)
	saved := k.running().Config
	withSecrets := k.get("/api/v1/config/export?secrets=true")
	wantStatus(t, withSecrets, http.StatusOK, "export with secrets")
	without := k.get("/api/v1/config/export")
	wantStatus(t, without, http.StatusOK, "export")

	// Change everything the export holds, secret included.
	c := k.candidate()
	c.System.Hostname = "other"
	c.CloudLink.Proxy.Password = "another-secret"
	k.putCandidate(c)
	k.apply("other", 0)

	r := k.send(http.MethodPost, "/api/v1/config/import?apply=true&comment=restore", withSecrets.Body)
	wantStatus(t, r, http.StatusOK, "import with apply")
	var out struct {
		Candidate config.Config       `json:"candidate"`
		Revision  *store.RevisionInfo `json:"revision"`
	}
	r.JSON(t, &out)
	if out.Revision == nil || out.Revision.Number != 4 || out.Revision.Comment != "restore" || out.Revision.Kind != store.KindApply {
		t.Fatalf("import answered %s", r.Body)
	}
	if out.Candidate.CloudLink.Proxy.Password != "" {
		t.Fatal("the import answer shows the proxy password")
	}
	run := k.running()
	if run.Number != 4 {
		t.Fatalf("running revision %d after import, want 4", run.Number)
	}
	sameConfig(t, "running after import", run.Config, saved)

	// Without apply the candidate changes, running does not; an export
	// without secrets keeps the secret the appliance has.
	c = k.candidate()
	c.System.Hostname = "third"
	k.putCandidate(c)
	k.apply("third", 0)
	r = k.send(http.MethodPost, "/api/v1/config/import", without.Body)
	wantStatus(t, r, http.StatusOK, "import without apply")
	out.Revision = nil
	r.JSON(t, &out)
	if out.Revision != nil {
		t.Fatalf("import without apply answered a revision: %s", r.Body)
	}
	if run := k.running(); run.Number != 5 || run.Config.System.Hostname != "third" {
		t.Fatalf("running revision %d hostname %q after an import without apply", run.Number, run.Config.System.Hostname)
	}
	sameConfig(t, "candidate after importing an export without secrets", k.candidate(), saved)

	// A bare configuration is accepted too.
	bare := config.Marshal(k.running().Config)
	r = k.send(http.MethodPost, "/api/v1/config/import?apply=true", bare)
	wantStatus(t, r, http.StatusOK, "import of a bare configuration")
	if run := k.running(); run.Number != 6 || run.Comment != "import" || run.Config.System.Hostname != "third" {
		t.Fatalf("running after a bare import: %+v", run.RevisionInfo)
	}
	if n := k.auditCount("import", true); n != 3 {
		t.Errorf("%d import audit events, want 3", n)
	}
}

func TestImportRefused(t *testing.T) {
	k := ready(t)
	k.putCandidate(withProxy(k.candidate()))
	k.apply("proxy", 0)
	exp := k.get("/api/v1/config/export?secrets=true")
	wantStatus(t, exp, http.StatusOK, "export")
	bare := config.Marshal(k.running().Config)

	// Make the candidate differ from running, to see that neither moves.
	c := k.candidate()
	c.System.Hostname = "edited"
	k.putCandidate(c)
	candBefore, runBefore, revsBefore := k.candidate(), k.running(), len(k.revisions())

	cases := []struct {
		name   string
		body   []byte
		status int
		path   string
	}{
		{"broken JSON", []byte(`{"format": "psigate-config",`), http.StatusBadRequest, ""},
		{"not JSON", []byte("hello"), http.StatusBadRequest, ""},
		{"empty", []byte(""), http.StatusBadRequest, ""},
		{"JSON array", []byte("[1,2]"), http.StatusBadRequest, ""},
		{"other format", setJSON(t, exp.Body, "format", "other-config"), http.StatusBadRequest, ""},
		{"unknown export field", setJSON(t, exp.Body, "signature", "x"), either400or422, "signature"},
		{"unknown config field", setJSON(t, exp.Body, "config.sbc.bogus", 1), either400or422, "config.sbc.bogus"},
		{"invalid value in an export", setJSON(t, exp.Body, "config."+minIntervalPath, 0), http.StatusUnprocessableEntity, minIntervalPath},
		{"invalid value in a bare config", setJSON(t, bare, minIntervalPath, -5), http.StatusUnprocessableEntity, minIntervalPath},
		{"invalid DNS in a bare config", setJSON(t, bare, "cloudLink.dns", []string{"10.0.0.1", "nope"}), http.StatusUnprocessableEntity, "cloudLink.dns[1]"},
		{"schema version", setJSON(t, exp.Body, "config.schemaVersion", 99), http.StatusUnprocessableEntity, "schemaVersion"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := k.send(http.MethodPost, "/api/v1/config/import?apply=true", c.body)
			wantRefusal(t, r, c.status, c.path, c.name)
			if strings.Contains(r.String(), proxySecret) {
				t.Fatalf("the refusal shows the proxy password:\n%s", r.Body)
			}
			sameConfig(t, "candidate after a refused import", k.candidate(), candBefore)
			if run := k.running(); run.Number != runBefore.Number {
				t.Fatalf("running revision %d after a refused import, want %d", run.Number, runBefore.Number)
			}
			if n := len(k.revisions()); n != revsBefore {
				t.Fatalf("%d revisions after a refused import, want %d", n, revsBefore)
			}
		})
	}
	// A type error in an export names the field (under "config.").
	r := k.send(http.MethodPost, "/api/v1/config/import?apply=true", setJSON(t, exp.Body, "config."+minIntervalPath, "300"))
	wantStatus(t, r, http.StatusUnprocessableEntity, "type error in an export")
	var e apiFieldError
	r.JSON(t, &e)
	if len(e.Fields) != 1 || !strings.HasSuffix(e.Fields[0].Path, minIntervalPath) {
		t.Fatalf("type error in an export: %s", r.Body)
	}
	if n := k.auditCount("import", false); n != len(cases)+1 {
		t.Errorf("%d refused import audit events, want %d", n, len(cases)+1)
	}
}

func TestResponsesNeverShowTheProxyPassword(t *testing.T) {
	k := ready(t)
	noSecret := func(r resp, what string) {
		t.Helper()
		if r.Status >= 300 {
			t.Fatalf("%s: status %d: %s", what, r.Status, r.Body)
		}
		if strings.Contains(r.String(), proxySecret) {
			t.Fatalf("%s shows the proxy password:\n%s", what, r.Body)
		}
	}
	noSecret(k.send(http.MethodPut, "/api/v1/config/candidate", withProxy(k.candidate())), "PUT candidate")
	if k.candidate().CloudLink.Proxy.Password != proxySecret {
		t.Fatal("the store does not keep the proxy password")
	}
	noSecret(k.get("/api/v1/config/candidate"), "GET candidate")
	diff := k.get("/api/v1/config/diff?from=running&to=candidate")
	noSecret(diff, "diff running->candidate")
	if !strings.Contains(diff.String(), `cloudLink.proxy.password`) || !strings.Contains(diff.String(), `(secret)`) {
		t.Fatalf("the diff does not show that the password changed:\n%s", diff.Body)
	}
	noSecret(k.send(http.MethodPost, "/api/v1/config/apply", map[string]any{"comment": "proxy"}), "apply")
	noSecret(k.get("/api/v1/config/running"), "GET running")
	noSecret(k.get("/api/v1/config/diff?from=1&to=2"), "diff 1->2")
	noSecret(k.get("/api/v1/config/diff?from=2&to=1"), "diff 2->1")
	noSecret(k.get("/api/v1/config/diff?from=1&to=candidate"), "diff 1->candidate")
	noSecret(k.get("/api/v1/config/revisions"), "revisions")
	noSecret(k.get("/api/v1/status"), "status")
	noSecret(k.get("/api/v1/config/export"), "export")
	exp := k.get("/api/v1/config/export?secrets=true")
	if !strings.Contains(exp.String(), proxySecret) {
		t.Fatal("export?secrets=true lacks the proxy password")
	}
	noSecret(k.send(http.MethodPost, "/api/v1/config/import", exp.Body), "import")
	noSecret(k.send(http.MethodPost, "/api/v1/config/import?apply=true", exp.Body), "import with apply")
	noSecret(k.send(http.MethodPost, "/api/v1/config/rollback", map[string]any{"revision": 2}), "rollback")
	noSecret(k.get("/api/v1/audit"), "audit")
	// Changing the password shows only that it changed.
	c := k.candidate()
	c.CloudLink.Proxy.Password = proxySecret + "-2"
	noSecret(k.send(http.MethodPut, "/api/v1/config/candidate", c), "PUT of a new password")
	d := k.get("/api/v1/config/diff?from=running&to=candidate")
	noSecret(d, "diff of a new password")
	var out struct {
		Changes []config.Change `json:"changes"`
	}
	d.JSON(t, &out)
	if len(out.Changes) != 1 || out.Changes[0] != (config.Change{Path: "cloudLink.proxy.password", Old: `"(secret)"`, New: `"(secret)"`}) {
		t.Fatalf("diff of a new password = %+v", out.Changes)
	}
}

func TestUnknownAPIPath(t *testing.T) {
	k := ready(t)
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/nope"},
		{"GET", "/api/v2/status"},
		{"POST", "/api/v1/config/nope"},
		{"GET", "/api/"},
		{"DELETE", "/api/v1/config/candidate"},
	} {
		r := k.do(req{Method: c.method, Path: c.path, Header: map[string]string{"X-CSRF-Token": k.csrf}})
		wantStatus(t, r, http.StatusNotFound, c.method+" "+c.path)
		var e apiFieldError
		r.JSON(t, &e)
		if e.Error != "no such API endpoint" {
			t.Fatalf("%s %s: error %q", c.method, c.path, e.Error)
		}
	}
}
