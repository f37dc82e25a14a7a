package supervisor

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/psigate/psigate/appliance/alarm"
	"github.com/psigate/psigate/appliance/config"
	"github.com/psigate/psigate/appliance/store"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(t.TempDir(), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// recorder is a service that records the hostnames it was given.
type recorder struct {
	mu      sync.Mutex
	seen    []string
	applied chan string
	started chan struct{}
	fail    func(c config.Config) error
}

func newRecorder() *recorder {
	return &recorder{applied: make(chan string, 16), started: make(chan struct{})}
}

func (r *recorder) service(name string) Service {
	return Service{
		Name: name,
		Apply: func(ctx context.Context, c config.Config) error {
			r.mu.Lock()
			r.seen = append(r.seen, c.System.Hostname)
			r.mu.Unlock()
			r.applied <- c.System.Hostname
			if r.fail != nil {
				return r.fail(c)
			}
			return nil
		},
		Run: func(ctx context.Context) error {
			close(r.started)
			<-ctx.Done()
			return nil
		},
	}
}

func apply(t *testing.T, s *store.Store, hostname string) store.Revision {
	t.Helper()
	c, _ := s.Candidate()
	c.System.Hostname = hostname
	if _, err := s.SetCandidate(c); err != nil {
		t.Fatal(err)
	}
	rev, err := s.Apply(store.ApplyOptions{Author: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func next(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("service was not reconciled within 10s")
		return ""
	}
}

func TestReconcilesBeforeRunAndOnEveryChange(t *testing.T) {
	st := openStore(t)
	alarms := alarm.New(nil)
	rec := newRecorder()
	sup := New(quiet, st, alarms, rec.service("svc"))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()

	if got := next(t, rec.applied); got != "psigate" {
		t.Fatalf("first reconcile with %q, want the running psigate", got)
	}
	<-rec.started
	if s := sup.States(); len(s) != 1 || !s[0].Running {
		t.Errorf("states = %+v", s)
	}
	apply(t, st, "second")
	if got := next(t, rec.applied); got != "second" {
		t.Errorf("reconciled with %q, want second", got)
	}
	if _, err := st.Rollback(1, "test", ""); err != nil {
		t.Fatal(err)
	}
	if got := next(t, rec.applied); got != "psigate" {
		t.Errorf("after rollback reconciled with %q", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	if s := sup.States(); s[0].Running {
		t.Error("service still marked running after stop")
	}
}

func TestApplyErrorRaisesAlarmUntilFixed(t *testing.T) {
	st := openStore(t)
	alarms := alarm.New(nil)
	rec := newRecorder()
	rec.fail = func(c config.Config) error {
		if c.System.Hostname == "bad" {
			return errors.New("interface eth9 missing")
		}
		return nil
	}
	sup := New(quiet, st, alarms, rec.service("netcfg"))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	next(t, rec.applied)

	apply(t, st, "bad")
	next(t, rec.applied)
	waitFor(t, func() bool { return len(alarms.List()) == 1 })
	a := alarms.List()[0]
	if a.Code != "reconcile-netcfg" || a.Severity != alarm.Major || !strings.Contains(a.Text, "eth9") {
		t.Errorf("alarm = %+v", a)
	}
	if s := sup.States(); !strings.Contains(s[0].Err, "eth9") {
		t.Errorf("state = %+v", s[0])
	}
	apply(t, st, "good")
	next(t, rec.applied)
	waitFor(t, func() bool { return len(alarms.List()) == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestFailingServiceStopsAll(t *testing.T) {
	st := openStore(t)
	rec := newRecorder()
	broken := Service{Name: "broken", Run: func(ctx context.Context) error {
		<-rec.started
		return errors.New("listen: address already in use")
	}}
	sup := New(quiet, st, alarm.New(nil), rec.service("healthy"), broken)
	err := sup.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "broken: listen: address already in use") {
		t.Fatalf("Run = %v, want the broken service's error", err)
	}
	for _, s := range sup.States() {
		if s.Running {
			t.Errorf("%s still running", s.Name)
		}
	}
}

func TestUnconfirmedApplyRolledBackWithAlarm(t *testing.T) {
	st := openStore(t)
	alarms := alarm.New(nil)
	rec := newRecorder()
	sup := New(quiet, st, alarms, rec.service("svc"))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	next(t, rec.applied)

	c, _ := st.Candidate()
	c.System.Hostname = "risky"
	if _, err := st.SetCandidate(c); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Apply(store.ApplyOptions{ConfirmWithin: 20 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if got := next(t, rec.applied); got != "risky" {
		t.Fatalf("reconciled with %q", got)
	}
	if got := next(t, rec.applied); got != "psigate" {
		t.Fatalf("after the deadline reconciled with %q, want the rollback to psigate", got)
	}
	waitFor(t, func() bool { return len(alarms.List()) == 1 })
	if a := alarms.List()[0]; a.Code != "config-auto-rollback" {
		t.Errorf("alarm = %+v", a)
	}
	log, _ := st.AuditLog(10)
	if len(log) == 0 || log[0].Action != "auto-rollback" {
		t.Errorf("audit = %+v", log)
	}
	cancel()
	<-done
}

// waitFor polls a condition that another goroutine makes true, bounded.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
