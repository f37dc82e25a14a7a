package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/psigate/psigate/appliance/config"
	"github.com/psigate/psigate/appliance/field"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func open(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// edit changes the candidate's hostname.
func edit(t *testing.T, s *Store, hostname string) {
	t.Helper()
	c, err := s.Candidate()
	if err != nil {
		t.Fatal(err)
	}
	c.System.Hostname = hostname
	if _, err := s.SetCandidate(c); err != nil {
		t.Fatal(err)
	}
}

func TestOpenCreatesDefaultsAndPrivateFile(t *testing.T) {
	s := open(t, Options{})
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("data file mode %o, want 600", mode)
	}
	r, err := s.Running()
	if err != nil {
		t.Fatal(err)
	}
	if r.Number != 1 || r.Kind != KindInitial {
		t.Errorf("running = %d %s, want 1 initial", r.Number, r.Kind)
	}
	if diff := config.Diff(config.Default(), r.Config); len(diff) != 0 {
		t.Errorf("initial config differs from defaults: %v", diff)
	}
}

func TestReopenKeepsState(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	edit(t, s, "box2")
	if _, err := s.Apply(ApplyOptions{Author: "admin"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, _ := s.Running()
	if r.Number != 2 || r.Config.System.Hostname != "box2" {
		t.Errorf("after reopen running = %d %q, want 2 box2", r.Number, r.Config.System.Hostname)
	}
}

func TestApplyDiffRollback(t *testing.T) {
	s := open(t, Options{})
	edit(t, s, "edge1")
	r2, err := s.Apply(ApplyOptions{Author: "admin", Comment: "rename"})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Number != 2 || r2.Author != "admin" || r2.Comment != "rename" || r2.Kind != KindApply {
		t.Errorf("revision = %+v", r2.RevisionInfo)
	}
	run, _ := s.Running()
	if run.Number != 2 || run.Config.System.Hostname != "edge1" {
		t.Fatalf("running = %d %q", run.Number, run.Config.System.Hostname)
	}
	r1, err := s.Revision(1)
	if err != nil {
		t.Fatal(err)
	}
	d := config.Diff(r1.Config, r2.Config)
	if len(d) != 1 || d[0].String() != `system.hostname: "psigate" -> "edge1"` {
		t.Errorf("diff = %v", d)
	}

	r3, err := s.Rollback(1, "admin", "")
	if err != nil {
		t.Fatal(err)
	}
	if r3.Number != 3 || r3.Kind != KindRollback || r3.From != 1 || r3.Config.System.Hostname != "psigate" {
		t.Errorf("rollback revision = %+v %q", r3.RevisionInfo, r3.Config.System.Hostname)
	}
	cand, _ := s.Candidate()
	if cand.System.Hostname != "psigate" {
		t.Errorf("candidate after rollback = %q, want psigate", cand.System.Hostname)
	}
	list, err := s.Revisions()
	if err != nil {
		t.Fatal(err)
	}
	var nums []uint64
	for _, r := range list {
		nums = append(nums, r.Number)
	}
	if len(nums) != 3 || nums[0] != 3 || nums[2] != 1 {
		t.Errorf("revisions = %v, want [3 2 1]", nums)
	}
	if _, err := s.Rollback(42, "admin", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("rollback to missing revision: %v, want ErrNotFound", err)
	}
}

func TestInvalidCandidateRefusedAndNothingChanges(t *testing.T) {
	s := open(t, Options{})
	before, _ := s.Candidate()
	bad := config.Clone(before)
	bad.SBC.RemoteSubscribers.MinIntervalSeconds = 0
	bad.Network.Realms[0].SIPPorts.UDP = 70000
	_, err := s.SetCandidate(bad)
	paths := field.Paths(err)
	want := []string{"network.realms[0].sipPorts.udp", "sbc.remoteSubscribers.minIntervalSeconds"}
	for _, w := range want {
		if !contains(paths, w) {
			t.Errorf("error %v lacks path %s", err, w)
		}
	}
	after, _ := s.Candidate()
	if d := config.Diff(before, after); len(d) != 0 {
		t.Errorf("refused candidate changed the store: %v", d)
	}
	run, _ := s.Running()
	if run.Number != 1 {
		t.Errorf("running = %d", run.Number)
	}
}

func TestImportInvalidJSONRefused(t *testing.T) {
	for name, doc := range map[string]string{
		"syntax":       `{"schemaVersion": 1,`,
		"unknownField": `{"schemaVersion": 1, "bogus": true}`,
		"wrongType":    `{"schemaVersion": 1, "system": {"hostname": 7}}`,
		"trailing":     `{"schemaVersion": 1} {}`,
		"badFormat":    `{"format": "other", "config": {}}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := config.ParseImport([]byte(doc)); err == nil {
				t.Fatalf("ParseImport(%s) succeeded", doc)
			}
		})
	}
	_, err := config.ParseImport([]byte(`{"schemaVersion": 1, "system": {"hostname": 7}}`))
	if p := field.Paths(err); !contains(p, "system.hostname") {
		t.Errorf("type error paths = %v, want system.hostname", p)
	}
}

func TestSecretsKeptAcrossRedactedEdit(t *testing.T) {
	s := open(t, Options{})
	c, _ := s.Candidate()
	c.CloudLink.Proxy.URL = "http://proxy.example.com:3128"
	c.CloudLink.Proxy.Username = "u"
	c.CloudLink.Proxy.Password = "hunter2-secret"
	if _, err := s.SetCandidate(c); err != nil {
		t.Fatal(err)
	}
	red := config.Redact(c)
	if red.CloudLink.Proxy.Password != "" {
		t.Fatal("Redact kept the password")
	}
	red.System.Hostname = "other"
	got, err := s.SetCandidate(red)
	if err != nil {
		t.Fatal(err)
	}
	if got.CloudLink.Proxy.Password != "hunter2-secret" {
		t.Errorf("password after redacted edit = %q", got.CloudLink.Proxy.Password)
	}
}

func TestConfirmedApplyStays(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := open(t, Options{Now: clk.Now})
	edit(t, s, "confirmed")
	r, err := s.Apply(ApplyOptions{Author: "admin", ConfirmWithin: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Pending()
	if err != nil || p.Revision != r.Number || p.Previous != 1 || !p.Deadline.Equal(clk.Now().Add(5*time.Minute)) {
		t.Fatalf("pending = %+v, %v", p, err)
	}
	if _, err := s.Confirm(); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour)
	if _, err := s.ExpirePending(clk.Now()); !errors.Is(err, ErrNoPending) {
		t.Errorf("expire after confirm: %v, want ErrNoPending", err)
	}
	if _, err := s.Confirm(); !errors.Is(err, ErrNoPending) {
		t.Errorf("second confirm: %v, want ErrNoPending", err)
	}
	run, _ := s.Running()
	if run.Number != r.Number {
		t.Errorf("running %d, want %d", run.Number, r.Number)
	}
}

func TestUnconfirmedApplyRollsBackAtDeadline(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := open(t, Options{Now: clk.Now})
	edit(t, s, "first")
	if _, err := s.Apply(ApplyOptions{Author: "admin"}); err != nil { // rev 2
		t.Fatal(err)
	}
	edit(t, s, "risky")
	if _, err := s.Apply(ApplyOptions{Author: "admin", ConfirmWithin: 2 * time.Minute}); err != nil { // rev 3
		t.Fatal(err)
	}
	edit(t, s, "riskier")
	if _, err := s.Apply(ApplyOptions{Author: "admin", ConfirmWithin: 2 * time.Minute}); err != nil { // rev 4
		t.Fatal(err)
	}
	clk.Add(time.Minute)
	if _, err := s.ExpirePending(clk.Now()); !errors.Is(err, ErrNoPending) {
		t.Fatalf("expired before the deadline: %v", err)
	}
	clk.Add(2 * time.Minute)
	r, err := s.ExpirePending(clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	// The rollback target stays the revision before the first unconfirmed apply.
	if r.Number != 5 || r.Kind != KindAutoRollback || r.From != 2 || r.Config.System.Hostname != "first" {
		t.Errorf("auto rollback = %+v %q", r.RevisionInfo, r.Config.System.Hostname)
	}
	if _, err := s.Pending(); !errors.Is(err, ErrNoPending) {
		t.Errorf("pending after rollback: %v", err)
	}
}

func TestConfirmTimerRollsBackByItself(t *testing.T) {
	s := open(t, Options{})
	watch, cancel := s.Watch()
	defer cancel()
	ctx, stop := contextWithCancel(t)
	defer stop()
	rolled := make(chan Revision, 1)
	done := make(chan error, 1)
	go func() { done <- s.RunConfirmTimer(ctx, func(r Revision) { rolled <- r }) }()

	edit(t, s, "temporary")
	applied, err := s.Apply(ApplyOptions{Author: "admin", ConfirmWithin: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if got := <-watch; got.Number != applied.Number {
		t.Fatalf("watch saw %d, want %d", got.Number, applied.Number)
	}
	select {
	case r := <-rolled:
		if r.Kind != KindAutoRollback || r.Config.System.Hostname != "psigate" {
			t.Errorf("rollback = %+v %q", r.RevisionInfo, r.Config.System.Hostname)
		}
		if got := <-watch; got.Number != r.Number {
			t.Errorf("watch saw %d, want %d", got.Number, r.Number)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no automatic rollback within 10s of a 50ms deadline")
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestPendingSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s, err := Open(dir, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	edit(t, s, "locked-out")
	if _, err := s.Apply(ApplyOptions{ConfirmWithin: time.Minute}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	clk.Add(time.Hour) // the box was off past the deadline
	s, err = Open(dir, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.ExpirePending(clk.Now())
	if err != nil || r.Config.System.Hostname != "psigate" {
		t.Fatalf("rollback after restart = %q, %v", r.Config.System.Hostname, err)
	}
}

func TestRevisionsPruned(t *testing.T) {
	s := open(t, Options{MaxRevisions: 3, NoSync: true})
	for i := 0; i < 6; i++ {
		edit(t, s, "h"+string(rune('a'+i)))
		if _, err := s.Apply(ApplyOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	list, _ := s.Revisions()
	if len(list) != 3 || list[0].Number != 7 || list[2].Number != 5 {
		t.Errorf("kept %v", list)
	}
}

func TestApplyRefusesInvalidStoredCandidate(t *testing.T) {
	// A candidate written by an older build may not validate any more.
	s := open(t, Options{})
	c, _ := s.Candidate()
	c.SBC.CoreMediaProfile = "gone"
	if err := s.db.Update(func(tx *bboltTx) error { return putJSON(tx.Bucket(bucketConfig), keyCandidate, c) }); err != nil {
		t.Fatal(err)
	}
	_, err := s.Apply(ApplyOptions{})
	if !contains(field.Paths(err), "sbc.coreMediaProfile") {
		t.Fatalf("apply error %v, want sbc.coreMediaProfile", err)
	}
	if run, _ := s.Running(); run.Number != 1 {
		t.Errorf("running %d after refused apply", run.Number)
	}
}

func TestUsersSessionsAudit(t *testing.T) {
	s := open(t, Options{MaxAudit: 3})
	if err := s.EnsureUser("admin"); err != nil {
		t.Fatal(err)
	}
	u, err := s.User("admin")
	if err != nil || u.PasswordHash != "" {
		t.Fatalf("new user = %+v, %v", u, err)
	}
	if err := s.SetPassword("admin", "hash1", true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPassword("admin", "hash2", true); !errors.Is(err, ErrPasswordSet) {
		t.Errorf("second setup: %v, want ErrPasswordSet", err)
	}
	if _, err := s.User("nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing user: %v", err)
	}
	now := time.Now()
	if err := s.PutSession([]byte("k1"), Session{User: "admin", Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSession([]byte("k2"), Session{User: "admin", Expires: now.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PruneSessions(now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session([]byte("k2")); !errors.Is(err, ErrNotFound) {
		t.Errorf("expired session kept: %v", err)
	}
	if err := s.DeleteSessions("admin", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session([]byte("k1")); !errors.Is(err, ErrNotFound) {
		t.Errorf("session kept after DeleteSessions: %v", err)
	}
	for _, a := range []string{"a", "b", "c", "d", "e"} {
		if err := s.Audit(Event{Action: a}); err != nil {
			t.Fatal(err)
		}
	}
	log, _ := s.AuditLog(10)
	var got []string
	for _, e := range log {
		got = append(got, e.Action)
	}
	if strings.Join(got, "") != "edc" {
		t.Errorf("audit log = %v, want newest three e d c", got)
	}
}

func TestIdentityCreatedOnce(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	mk := func() (Identity, error) { calls++; return Identity{MachineID: "id-" + string(rune('0'+calls))}, nil }
	a, _ := s.Identity(mk)
	s.Close()
	s, _ = Open(dir, Options{})
	defer s.Close()
	b, _ := s.Identity(mk)
	if calls != 1 || a.MachineID != b.MachineID {
		t.Errorf("identity created %d times: %q then %q", calls, a.MachineID, b.MachineID)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		t.Error(err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestRecords(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.LoadRecords("sip-bindings"); err != nil || len(got) != 0 {
		t.Fatalf("empty kind: %v %v", got, err)
	}
	if err := s.SaveRecords("sip-bindings", map[string][]byte{"a": []byte("1"), "b": []byte("2")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveRecords("sip-bindings", map[string][]byte{"c": []byte("3")}, []string{"a", "missing"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, _ = Open(dir, Options{})
	defer s.Close()
	got, err := s.LoadRecords("sip-bindings")
	if err != nil || len(got) != 2 || string(got["b"]) != "2" || string(got["c"]) != "3" {
		t.Fatalf("after reopen: %v %v", got, err)
	}
	if other, _ := s.LoadRecords("other"); len(other) != 0 {
		t.Fatal("kinds are not separate")
	}
}
