package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeClock moves only when bootguard sleeps.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.now = c.now.Add(d)
	return nil
}

type healthFunc func(ctx context.Context) error

func (f healthFunc) Check(ctx context.Context) error { return f(ctx) }

// fakeDevice records what the guard asks of gokrazy.
type fakeDevice struct {
	calls          []string
	switchFailures int // Switch fails this many times first
}

func (d *fakeDevice) Switch(context.Context) error {
	d.calls = append(d.calls, "switch")
	if d.switchFailures > 0 {
		d.switchFailures--
		return errors.New("POST /update/switch: connection refused")
	}
	return nil
}

func (d *fakeDevice) Reboot(context.Context) error {
	d.calls = append(d.calls, "reboot")
	return nil
}

var (
	testStart   = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	errRefused  = errors.New("dial tcp 127.0.0.1:443: connect: connection refused")
	healthyFrom = func(from time.Duration) func(time.Duration) error {
		return func(elapsed time.Duration) error {
			if elapsed < from {
				return errRefused
			}
			return nil
		}
	}
	neverHealthy = func(time.Duration) error { return errRefused }
)

// rig is a guard with fakes. Its health function sees the time since
// bootguard's start; after a (fake) hour the rig ends the run, for the
// cases that would wait forever.
type rig struct {
	t      *testing.T
	ctx    context.Context
	g      *guard
	clock  *fakeClock
	dev    *fakeDevice
	checks int
}

func newRig(t *testing.T, health func(elapsed time.Duration) error) *rig {
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	r := &rig{t: t, ctx: ctx, clock: &fakeClock{now: testStart}, dev: &fakeDevice{}}
	r.g = &guard{
		cfg: config{
			stateDir:      filepath.Join(t.TempDir(), "perm", "bootguard"),
			interval:      2 * time.Second,
			settle:        60 * time.Second,
			deadline:      5 * time.Minute,
			maxTrialBoots: 3,
			retry:         10 * time.Second,
		},
		log: slog.New(slog.NewTextHandler(t.Output(), nil)),
		health: healthFunc(func(context.Context) error {
			r.checks++
			elapsed := r.elapsed()
			if elapsed > time.Hour {
				cancel()
				return errors.New("test over")
			}
			return health(elapsed)
		}),
		dev:   r.dev,
		clock: r.clock,
		start: testStart,
	}
	return r
}

func (r *rig) elapsed() time.Duration { return r.clock.now.Sub(testStart) }

func boot(root int, version, bootID string) bootInfo {
	return bootInfo{root: root, release: release{Version: version}, bootID: bootID}
}

func (r *rig) writeState(st state) {
	r.t.Helper()
	if err := os.MkdirAll(r.g.cfg.stateDir, 0o700); err != nil {
		r.t.Fatal(err)
	}
	if err := writeJSON(r.g.cfg.stateDir, stateFile, st); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) state() state {
	r.t.Helper()
	st, err := loadState(r.g.cfg.stateDir)
	if err != nil {
		r.t.Fatal(err)
	}
	return st
}

func (r *rig) rollback() (rollbackRecord, bool) {
	r.t.Helper()
	b, err := os.ReadFile(filepath.Join(r.g.cfg.stateDir, rollbackFile))
	if errors.Is(err, os.ErrNotExist) {
		return rollbackRecord{}, false
	}
	var rec rollbackRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		r.t.Fatal(err)
	}
	return rec, true
}

func (r *rig) expectNoRollback() {
	r.t.Helper()
	if len(r.dev.calls) != 0 {
		r.t.Errorf("device calls %v, want none", r.dev.calls)
	}
	if rec, ok := r.rollback(); ok {
		r.t.Errorf("rollback.json written: %+v", rec)
	}
}

var good = state{GoodRoot: 2, GoodVersion: "1.4.0", Since: testStart.Add(-24 * time.Hour)}

func TestFirstBoot(t *testing.T) {
	r := newRig(t, healthyFrom(10*time.Second))
	if got := r.g.run(r.ctx, boot(2, "1.4.0", "b1")); got != outcomeConfirmed {
		t.Fatalf("run = %v, want confirmed", got)
	}
	st := r.state()
	if st.GoodRoot != 2 || st.GoodVersion != "1.4.0" || !st.Since.Equal(testStart.Add(70*time.Second)) {
		t.Errorf("state = %+v, want root 2, 1.4.0, since start+70s", st)
	}
	r.expectNoRollback()
}

func TestFirstBootNeverHealthy(t *testing.T) {
	r := newRig(t, neverHealthy)
	if got := r.g.run(r.ctx, boot(3, "1.4.0", "b1")); got != outcomeStopped {
		t.Fatalf("run = %v, want stopped (it waits until healthy)", got)
	}
	if _, err := loadState(r.g.cfg.stateDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state written for a root that never became healthy: %v", err)
	}
	r.expectNoRollback()
}

func TestNormalBoot(t *testing.T) {
	r := newRig(t, healthyFrom(0))
	r.writeState(good)
	if got := r.g.run(r.ctx, boot(2, "1.4.0", "b1")); got != outcomeConfirmed {
		t.Fatalf("run = %v, want confirmed", got)
	}
	if st := r.state(); st.GoodRoot != 2 || !st.Since.Equal(good.Since) {
		t.Errorf("state = %+v, want it unchanged", st)
	}
	r.expectNoRollback()
}

// TestBootAfterRollback: the good root, booted again by a rollback,
// clears the failed trial and keeps its record.
func TestBootAfterRollback(t *testing.T) {
	r := newRig(t, healthyFrom(0))
	st := good
	st.Trial = &trial{Root: 3, Version: "1.5.0", Boots: 1, BootID: "b1"}
	r.writeState(st)
	if got := r.g.run(r.ctx, boot(2, "1.4.0", "b2")); got != outcomeConfirmed {
		t.Fatalf("run = %v", got)
	}
	if st := r.state(); st.GoodRoot != 2 || st.Trial != nil || !st.Since.Equal(good.Since) {
		t.Errorf("state = %+v, want root 2 since %v, no trial", st, good.Since)
	}
	r.expectNoRollback()
}

// TestNormalBootCrashLooping: on the good root there is nothing to roll
// back to, so a crash-looping appliance is waited for, never rolled back.
func TestNormalBootCrashLooping(t *testing.T) {
	r := newRig(t, func(elapsed time.Duration) error {
		if elapsed%(30*time.Second) < 20*time.Second {
			return nil
		}
		return errRefused
	})
	r.writeState(good)
	if got := r.g.run(r.ctx, boot(2, "1.4.0", "b1")); got != outcomeStopped {
		t.Fatalf("run = %v, want stopped", got)
	}
	r.expectNoRollback()
}

func TestNormalBootRecordsNewVersion(t *testing.T) {
	r := newRig(t, healthyFrom(0))
	r.writeState(state{GoodRoot: 2, GoodVersion: "1.3.0", Since: good.Since})
	if got := r.g.run(r.ctx, boot(2, "1.4.0", "b1")); got != outcomeConfirmed {
		t.Fatalf("run = %v", got)
	}
	if st := r.state(); st.GoodVersion != "1.4.0" {
		t.Errorf("state = %+v, want version 1.4.0", st)
	}
}

func TestTrialSuccess(t *testing.T) {
	r := newRig(t, healthyFrom(30*time.Second))
	r.writeState(good)
	if got := r.g.run(r.ctx, boot(3, "1.5.0", "b1")); got != outcomeConfirmed {
		t.Fatalf("run = %v, want confirmed", got)
	}
	st := r.state()
	if st.GoodRoot != 3 || st.GoodVersion != "1.5.0" || st.Trial != nil {
		t.Errorf("state = %+v, want root 3, 1.5.0, no trial", st)
	}
	if r.elapsed() != 90*time.Second {
		t.Errorf("confirmed after %v, want 90s (healthy at 30s + 60s settle)", r.elapsed())
	}
	r.expectNoRollback()
}

func TestTrialFailureRollsBack(t *testing.T) {
	r := newRig(t, neverHealthy)
	r.writeState(good)
	if got := r.g.run(r.ctx, boot(3, "1.5.0", "b1")); got != outcomeRolledBack {
		t.Fatalf("run = %v, want rolled back", got)
	}
	if !slices.Equal(r.dev.calls, []string{"switch", "reboot"}) {
		t.Errorf("device calls %v, want switch then reboot", r.dev.calls)
	}
	if r.elapsed() != 5*time.Minute {
		t.Errorf("rolled back after %v, want at the 5m deadline", r.elapsed())
	}
	rec, ok := r.rollback()
	if !ok {
		t.Fatal("no rollback.json")
	}
	want := rollbackRecord{Time: testStart.Add(5 * time.Minute), FromVersion: "1.5.0", FromRoot: 3, ToRoot: 2, ToVersion: "1.4.0"}
	if rec.Reason == "" || !strings.Contains(rec.Reason, "connection refused") {
		t.Errorf("reason %q does not give the last failure", rec.Reason)
	}
	rec.Reason = ""
	if !rec.Time.Equal(want.Time) || rec.FromVersion != want.FromVersion || rec.FromRoot != want.FromRoot || rec.ToRoot != want.ToRoot || rec.ToVersion != want.ToVersion {
		t.Errorf("rollback.json = %+v, want %+v", rec, want)
	}
	if st := r.state(); st.GoodRoot != 2 || st.GoodVersion != "1.4.0" {
		t.Errorf("state = %+v, want the good root 2 kept", st)
	}
}

// TestTrialCrashLoop: an appliance that comes up for 20 s and crashes for
// 10 s never settles for 60 s, so the trial fails.
func TestTrialCrashLoop(t *testing.T) {
	r := newRig(t, func(elapsed time.Duration) error {
		if elapsed%(30*time.Second) < 20*time.Second {
			return nil
		}
		return errRefused
	})
	r.writeState(good)
	if got := r.g.run(r.ctx, boot(3, "1.5.0", "b1")); got != outcomeRolledBack {
		t.Fatalf("run = %v, want rolled back", got)
	}
	if rec, _ := r.rollback(); !strings.Contains(rec.Reason, "healthy for only 0s at the deadline; last failure: "+errRefused.Error()) {
		t.Errorf("reason = %q", rec.Reason)
	}
}

func TestTrialHealthyTooLate(t *testing.T) {
	r := newRig(t, healthyFrom(4*time.Minute+30*time.Second))
	r.writeState(good)
	if got := r.g.run(r.ctx, boot(3, "1.5.0", "b1")); got != outcomeRolledBack {
		t.Fatalf("run = %v, want rolled back (healthy 30s before the deadline, settle is 60s)", got)
	}
}

// TestTrialRebootLoop: a new version that reboots the box before the
// deadline is rolled back on its fourth boot, without waiting.
func TestTrialRebootLoop(t *testing.T) {
	r := newRig(t, healthyFrom(0))
	st := good
	st.Trial = &trial{Root: 3, Version: "1.5.0", Boots: 3, BootID: "b3"}
	r.writeState(st)
	if got := r.g.run(r.ctx, boot(3, "1.5.0", "b4")); got != outcomeRolledBack {
		t.Fatalf("run = %v, want rolled back", got)
	}
	if r.checks != 0 {
		t.Errorf("%d health checks; the rollback should not wait", r.checks)
	}
	if rec, _ := r.rollback(); !strings.Contains(rec.Reason, "booted 4 times") {
		t.Errorf("reason = %q", rec.Reason)
	}
}

// TestTrialRestartSameBoot: bootguard restarted within one boot (same
// boot_id) does not count another boot.
func TestTrialRestartSameBoot(t *testing.T) {
	r := newRig(t, neverHealthy)
	st := good
	st.Trial = &trial{Root: 3, Version: "1.5.0", Boots: 3, BootID: "b3"}
	r.writeState(st)
	if got := r.g.run(r.ctx, boot(3, "1.5.0", "b3")); got != outcomeRolledBack {
		t.Fatalf("run = %v", got)
	}
	if r.elapsed() != 5*time.Minute {
		t.Errorf("rolled back after %v; a restart within the boot gets the full deadline", r.elapsed())
	}
	if n := r.state().Trial.Boots; n != 3 {
		t.Errorf("trial boots = %d, want 3", n)
	}
}

// TestTrialCountResetsForNewVersion: a trial record of another version
// does not count against this one.
func TestTrialCountResetsForNewVersion(t *testing.T) {
	r := newRig(t, healthyFrom(0))
	st := good
	st.Trial = &trial{Root: 3, Version: "1.4.9", Boots: 9, BootID: "b1"}
	r.writeState(st)
	if got := r.g.run(r.ctx, boot(3, "1.5.0", "b2")); got != outcomeConfirmed {
		t.Fatalf("run = %v, want confirmed", got)
	}
}

func TestRollbackRetriesSwitch(t *testing.T) {
	r := newRig(t, neverHealthy)
	r.dev.switchFailures = 2
	r.writeState(good)
	if got := r.g.run(r.ctx, boot(3, "1.5.0", "b1")); got != outcomeRolledBack {
		t.Fatalf("run = %v", got)
	}
	if !slices.Equal(r.dev.calls, []string{"switch", "switch", "switch", "reboot"}) {
		t.Errorf("device calls %v", r.dev.calls)
	}
}

func TestRollbackReplacesOlderRecord(t *testing.T) {
	r := newRig(t, neverHealthy)
	r.writeState(good)
	old := rollbackRecord{Time: testStart.Add(-time.Hour), FromVersion: "1.4.1", Reason: "old"}
	if err := writeJSON(r.g.cfg.stateDir, rollbackFile, old); err != nil {
		t.Fatal(err)
	}
	r.g.run(r.ctx, boot(3, "1.5.0", "b1"))
	if rec, _ := r.rollback(); rec.FromVersion != "1.5.0" {
		t.Errorf("rollback.json = %+v, want the newest", rec)
	}
	entries, _ := os.ReadDir(r.g.cfg.stateDir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{rollbackFile, stateFile}) {
		t.Errorf("state dir holds %v, want only the two files", names)
	}
}

func TestMissingPerm(t *testing.T) {
	r := newRig(t, neverHealthy)
	notADir := filepath.Join(t.TempDir(), "perm")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r.g.cfg.stateDir = filepath.Join(notADir, "bootguard")
	if got := r.g.run(r.ctx, boot(3, "1.5.0", "b1")); got != outcomeInactive {
		t.Fatalf("run = %v, want inactive", got)
	}
	if r.checks != 0 || len(r.dev.calls) != 0 {
		t.Errorf("%d health checks, device calls %v; want nothing done", r.checks, r.dev.calls)
	}
}

func TestCorruptStateIsFirstBoot(t *testing.T) {
	r := newRig(t, healthyFrom(0))
	os.MkdirAll(r.g.cfg.stateDir, 0o700)
	if err := os.WriteFile(filepath.Join(r.g.cfg.stateDir, stateFile), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := r.g.run(r.ctx, boot(3, "1.5.0", "b1")); got != outcomeConfirmed {
		t.Fatalf("run = %v", got)
	}
	if st := r.state(); st.GoodRoot != 3 {
		t.Errorf("state = %+v", st)
	}
	r.expectNoRollback()
}

func TestReadRelease(t *testing.T) {
	dir := t.TempDir()
	if r, err := readRelease(filepath.Join(dir, "missing.json")); err != nil || r.Version != "unknown" {
		t.Errorf("missing release file: %+v, %v", r, err)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("{"), 0o644)
	if r, err := readRelease(bad); err == nil || r.Version != "unknown" {
		t.Errorf("damaged release file: %+v, %v", r, err)
	}
	ok := filepath.Join(dir, "release.json")
	os.WriteFile(ok, []byte(`{"version":"1.5.0","target":"amd64","buildTime":"2026-11-25T10:00:00Z","buildTimestamp":"x"}`), 0o644)
	if r, err := readRelease(ok); err != nil || r.Version != "1.5.0" || r.Target != "amd64" || r.BuildTimestamp != "x" {
		t.Errorf("release file: %+v, %v", r, err)
	}
}

func TestReadBootInfo(t *testing.T) {
	dir := t.TempDir()
	cmdline := filepath.Join(dir, "cmdline")
	bootID := filepath.Join(dir, "boot_id")
	os.WriteFile(cmdline, []byte("console=tty1 root=PARTUUID=60c24cc1-f3f9-427a-8199-a1b2c3d40001/PARTNROFF=2 ro init=/gokrazy/init\n"), 0o644)
	os.WriteFile(bootID, []byte("6f1c2b3a\n"), 0o644)
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	b, err := readBootInfo(log, cmdline, filepath.Join(dir, "none.json"), bootID)
	if err != nil || b.root != 3 || b.release.Version != "unknown" || b.bootID != "6f1c2b3a" {
		t.Errorf("readBootInfo = %+v, %v", b, err)
	}
	os.WriteFile(cmdline, []byte("console=tty1 ro\n"), 0o644)
	if _, err := readBootInfo(log, cmdline, "", bootID); err == nil {
		t.Error("readBootInfo accepted a command line without root=")
	}
}
