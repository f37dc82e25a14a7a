package firmware_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/psigate/psigate/appliance/firmware"
	"github.com/psigate/psigate/appliance/firmware/firmwaretest"
	"github.com/psigate/psigate/gokrazy/bundle"
)

// fakeAlarms records the active alarms.
type fakeAlarms struct {
	mu sync.Mutex
	m  map[string]string
}

func (a *fakeAlarms) Raise(code, text string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.m[code] = text
}

func (a *fakeAlarms) Clear(code string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.m, code)
}

func (a *fakeAlarms) get(code string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.m[code]
	return s, ok
}

const (
	target         = "amd64"
	runningVersion = "1.0.0"
	newVersion     = "1.1.0"
)

// rig is an Updater around a fake device, with a signer for bundles.
type rig struct {
	t      *testing.T
	sign   *firmwaretest.Signer
	dir    string // the Updater's Dir
	dev    *firmwaretest.Device
	alarms *fakeAlarms
	opts   firmware.Options
}

func newRig(t *testing.T) *rig {
	t.Helper()
	rollback, cmdline := firmwaretest.Box(t, runningVersion)
	r := &rig{t: t, sign: firmwaretest.NewSigner(t), dir: filepath.Join(t.TempDir(), "firmware"),
		dev: firmwaretest.NewDevice(), alarms: &fakeAlarms{m: map[string]string{}}}
	r.opts = firmware.Options{
		Dir:          r.dir,
		PublicKey:    r.sign.Pub,
		Release:      firmware.Release{Version: runningVersion, Target: target},
		Device:       r.dev,
		RollbackFile: rollback,
		Cmdline:      cmdline,
		Alarms:       r.alarms,
		Log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		RebootDelay:  time.Millisecond,
	}
	return r
}

func (r *rig) good() []byte { return r.sign.Bundle(r.t, newVersion, target) }

// wantClean fails unless nothing is staged under the rig's Dir.
func (r *rig) wantClean() {
	r.t.Helper()
	entries, err := os.ReadDir(r.dir)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		r.t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "last-attempt.json" {
			r.t.Errorf("%s left in the firmware directory", e.Name())
		}
	}
}

func TestInstallWritesRootBootMBRSwitchesAndReboots(t *testing.T) {
	r := newRig(t)
	u := firmware.New(r.opts)
	m, err := u.Install(t.Context(), bytes.NewReader(r.good()), firmware.InstallOptions{})
	if err != nil {
		t.Fatalf("Install: %v", err)
	}
	if m.Version != newVersion || m.Target != target || m.KeyID != r.sign.KeyID() {
		t.Fatalf("manifest %+v", m)
	}
	r.dev.WaitReboot(t)
	if got, want := r.dev.Ops(), []string{"root", "boot", "mbr", "switch", "reboot"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("device calls %q, want %q", got, want)
	}
	for _, name := range []string{"root", "boot", "mbr"} {
		if !bytes.Equal(r.dev.Data(name), r.sign.Part(t, name)) {
			t.Errorf("the device got %d bytes for %s, want the %d of the part", len(r.dev.Data(name)), name, len(r.sign.Part(t, name)))
		}
	}
	r.wantClean()
	s := u.Status()
	if !s.Busy || !s.Rebooting || s.Last == nil || !s.Last.OK || s.Last.Version != newVersion || s.Last.Error != "" || s.Last.Warning != "" {
		t.Fatalf("status after install: %+v, last %+v", s, s.Last)
	}
	if _, err := u.Install(t.Context(), bytes.NewReader(r.good()), firmware.InstallOptions{}); !errors.Is(err, firmware.ErrBusy) {
		t.Fatalf("Install while rebooting: %v, want ErrBusy", err)
	}
	// The record outlives the process (the reboot).
	again := firmware.New(r.opts).Status()
	if again.Last == nil || !again.Last.OK || again.Last.Version != newVersion || again.Busy {
		t.Fatalf("status after a restart: %+v, last %+v", again, again.Last)
	}
}

func TestInstallRefusesBadBundles(t *testing.T) {
	r := newRig(t)
	other := firmwaretest.NewSigner(t)
	good := r.good()
	corrupt := bytes.Clone(good)
	i := bytes.Index(corrupt, []byte("ROOT-squashfs"))
	corrupt[i+5] ^= 0xff
	cases := []struct {
		name   string
		bundle []byte
		want   error
		text   string
	}{
		{"bad signature", other.Bundle(t, newVersion, target), bundle.ErrSignature, "signed by key " + other.KeyID()},
		{"wrong target", r.sign.Bundle(t, newVersion, "rpi"), bundle.ErrTarget, "bundle is for rpi, this box is amd64"},
		{"truncated", good[:len(good)/2], bundle.ErrTruncated, "incomplete"},
		{"corrupt", corrupt, bundle.ErrCorrupt, "does not match its SHA-256"},
		{"not a bundle", []byte("hello"), bundle.ErrTruncated, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := firmware.New(r.opts)
			_, err := u.Install(t.Context(), bytes.NewReader(c.bundle), firmware.InstallOptions{})
			if !errors.Is(err, firmware.ErrRefused) || !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
				t.Fatalf("Install: %v, want ErrRefused and %v saying %q", err, c.want, c.text)
			}
			if ops := r.dev.Ops(); len(ops) != 0 {
				t.Fatalf("the device was asked to %q", ops)
			}
			r.wantClean()
			s := u.Status()
			if s.Busy || s.Last == nil || s.Last.OK || s.Last.Error != err.Error() {
				t.Fatalf("status after refusal: %+v, last %+v", s, s.Last)
			}
		})
	}
}

// stepReader hands out a bundle in two steps: the first read returns
// first, later reads block until release is closed.
type stepReader struct {
	first   []byte
	rest    io.Reader
	reading chan struct{} // closed at the first read
	release chan struct{}
	once    sync.Once
}

func (s *stepReader) Read(p []byte) (int, error) {
	if len(s.first) > 0 {
		s.once.Do(func() { close(s.reading) })
		n := copy(p, s.first)
		s.first = s.first[n:]
		return n, nil
	}
	<-s.release
	return s.rest.Read(p)
}

func TestInstallOneAtATime(t *testing.T) {
	r := newRig(t)
	u := firmware.New(r.opts)
	good := r.good()
	sr := &stepReader{first: good[:1024], rest: bytes.NewReader(good[1024:]), reading: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := u.Install(context.Background(), sr, firmware.InstallOptions{})
		done <- err
	}()
	<-sr.reading
	if s := u.Status(); !s.Busy || s.Rebooting || s.Step == "" {
		t.Fatalf("status during an install: %+v", s)
	}
	_, err := u.Install(t.Context(), bytes.NewReader(good), firmware.InstallOptions{})
	if !errors.Is(err, firmware.ErrBusy) || !strings.Contains(err.Error(), "verifying the bundle") {
		t.Fatalf("second Install: %v, want ErrBusy saying what the first does", err)
	}
	close(sr.release)
	if err := <-done; err != nil {
		t.Fatalf("first Install: %v", err)
	}
	r.dev.WaitReboot(t)
	if got := r.dev.Ops(); len(got) != 5 {
		t.Fatalf("device calls %q", got)
	}
}

func TestInstallWithoutDeviceVerifiesOnly(t *testing.T) {
	r := newRig(t)
	r.opts.Device = nil
	u := firmware.New(r.opts)
	if s := u.Status(); s.Updatable || !strings.Contains(s.Unavailable, "psigate image") || s.KeyID != r.sign.KeyID() {
		t.Fatalf("status without device: %+v", s)
	}
	_, err := u.Install(t.Context(), bytes.NewReader(r.good()), firmware.InstallOptions{})
	if !errors.Is(err, firmware.ErrUnavailable) || !strings.Contains(err.Error(), "version "+newVersion) || !strings.Contains(err.Error(), "verified") {
		t.Fatalf("Install without device: %v", err)
	}
	r.wantClean()
	_, err = u.Install(t.Context(), bytes.NewReader(r.sign.Bundle(t, newVersion, "rpi")), firmware.InstallOptions{})
	if !errors.Is(err, firmware.ErrRefused) || !errors.Is(err, bundle.ErrTarget) {
		t.Fatalf("Install of a wrong-target bundle without device: %v", err)
	}
	if s := u.Status(); s.Busy {
		t.Fatal("busy after refusals")
	}
}

// unread fails the test when Install reads the bundle.
type unread struct{ t *testing.T }

func (u unread) Read([]byte) (int, error) {
	u.t.Error("the bundle was read")
	return 0, io.EOF
}

func TestInstallWithoutKeyOrTargetRefusesAtOnce(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*firmware.Options)
		want string
	}{
		{"no key", func(o *firmware.Options) { o.PublicKey = nil }, "trusts no update key"},
		{"no target", func(o *firmware.Options) { o.Release.Target = "" }, "does not name its target"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			c.edit(&r.opts)
			u := firmware.New(r.opts)
			_, err := u.Install(t.Context(), unread{t}, firmware.InstallOptions{})
			if !errors.Is(err, firmware.ErrUnavailable) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Install: %v", err)
			}
			if ops := r.dev.Ops(); len(ops) != 0 {
				t.Fatalf("the device was asked to %q", ops)
			}
			if s := u.Status(); s.Updatable || !strings.Contains(s.Unavailable, c.want) {
				t.Fatalf("status: %+v", s)
			}
		})
	}
}

func TestInstallDeviceFailure(t *testing.T) {
	r := newRig(t)
	r.dev.Fail("boot", errors.New("disk on fire"))
	u := firmware.New(r.opts)
	_, err := u.Install(t.Context(), bytes.NewReader(r.good()), firmware.InstallOptions{})
	if err == nil || !strings.Contains(err.Error(), "writing the boot partition: disk on fire") || !strings.Contains(err.Error(), "install the update again") {
		t.Fatalf("Install: %v", err)
	}
	if got, want := r.dev.Ops(), []string{"root", "boot"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("device calls %q, want %q (no switch, no reboot)", got, want)
	}
	r.wantClean()
	if s := u.Status(); s.Busy || s.Last.OK {
		t.Fatalf("status: %+v", s)
	}
}

func TestInstallRebootFailure(t *testing.T) {
	r := newRig(t)
	r.dev.Fail("reboot", errors.New("no"))
	u := firmware.New(r.opts)
	if _, err := u.Install(t.Context(), bytes.NewReader(r.good()), firmware.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	r.dev.WaitReboot(t)
	// The reboot's failure is recorded right after Reboot returns.
	deadline := time.Now().Add(10 * time.Second)
	for u.Status().Busy {
		if time.Now().After(deadline) {
			t.Fatal("still busy after the failed reboot")
		}
		time.Sleep(time.Millisecond)
	}
	s := u.Status()
	if s.Last.OK || !strings.Contains(s.Last.Error, "the reboot failed: no") {
		t.Fatalf("last attempt %+v", s.Last)
	}
}

func TestInstallSameVersionWarns(t *testing.T) {
	r := newRig(t)
	u := firmware.New(r.opts)
	if _, err := u.Install(t.Context(), bytes.NewReader(r.sign.Bundle(t, runningVersion, target)), firmware.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	r.dev.WaitReboot(t)
	if s := u.Status(); !s.Last.OK || !strings.Contains(s.Last.Warning, "running version") {
		t.Fatalf("last attempt %+v", s.Last)
	}
}

func TestRollbackStatusAlarmAndDismiss(t *testing.T) {
	r := newRig(t)
	u := firmware.New(r.opts)
	if ev, err := u.RefreshAlarm(); ev != nil || err != nil {
		t.Fatalf("RefreshAlarm without a file: %v, %v", ev, err)
	}
	if _, ok := r.alarms.get(firmware.AlarmRolledBack); ok {
		t.Fatal("alarm raised without a rollback")
	}
	ev := map[string]any{"time": "2025-03-02T08:15:00Z", "fromVersion": "1.1.0", "fromRoot": 3,
		"toRoot": 2, "toVersion": "1.0.0", "reason": "healthz did not answer 200 within 5m0s"}
	data, _ := json.Marshal(ev)
	if err := os.WriteFile(r.opts.RollbackFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	s := u.Status()
	if s.Rollback == nil || s.Rollback.FromVersion != "1.1.0" || s.Rollback.ToVersion != "1.0.0" || s.Rollback.ToRoot != 2 || s.RollbackError != "" {
		t.Fatalf("status rollback %+v (%s)", s.Rollback, s.RollbackError)
	}
	want := "Firmware update to version 1.1.0 was rolled back to 1.0.0 at 2025-03-02 08:15:00 UTC: healthz did not answer 200 within 5m0s"
	if text, _ := r.alarms.get(firmware.AlarmRolledBack); text != want {
		t.Fatalf("alarm %q, want %q", text, want)
	}
	if err := u.DismissRollback(); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.alarms.get(firmware.AlarmRolledBack); ok {
		t.Fatal("alarm still raised after dismiss")
	}
	if s := u.Status(); s.Rollback != nil {
		t.Fatalf("rollback %+v after dismiss", s.Rollback)
	}
	kept, err := os.ReadFile(filepath.Join(filepath.Dir(r.opts.RollbackFile), "rollback.dismissed.json"))
	if err != nil || !bytes.Equal(kept, data) {
		t.Fatalf("dismissed file: %q, %v", kept, err)
	}
	if err := u.DismissRollback(); err != nil {
		t.Fatalf("second dismiss: %v", err)
	}

	// A record that does not parse still raises the alarm.
	if err := os.WriteFile(r.opts.RollbackFile, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s := u.Status(); s.Rollback != nil || s.RollbackError == "" {
		t.Fatalf("status with a broken record: %+v", s)
	}
	if text, _ := r.alarms.get(firmware.AlarmRolledBack); !strings.Contains(text, "does not read") {
		t.Fatalf("alarm %q", text)
	}
}

func TestReadRelease(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "release.json")
	os.WriteFile(good, []byte(`{"version":"1.4.0","target":"rpi","buildTime":"2025-03-01T12:00:00Z","buildTimestamp":"2025-03-01T12:00:00Z","extra":1}`), 0o644)
	r, err := firmware.ReadRelease(good)
	want := firmware.Release{Version: "1.4.0", Target: "rpi", BuildTime: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), BuildTimestamp: "2025-03-01T12:00:00Z"}
	if err != nil || r != want {
		t.Fatalf("ReadRelease = %+v, %v; want %+v", r, err, want)
	}
	noVersion := filepath.Join(dir, "bad.json")
	os.WriteFile(noVersion, []byte(`{"target":"rpi"}`), 0o644)
	for _, p := range []string{noVersion, filepath.Join(dir, "missing.json")} {
		if _, err := firmware.ReadRelease(p); err == nil {
			t.Errorf("ReadRelease(%s) did not fail", p)
		}
	}
}

// Until bootguard has confirmed the running root partition, the other
// one is the fallback (or no good root is recorded at all): installs
// wait, and the status says so.
func TestInstallWaitsForTheTrial(t *testing.T) {
	r := newRig(t)
	state := filepath.Join(filepath.Dir(r.opts.RollbackFile), "state.json")
	u := firmware.New(r.opts)
	for _, tc := range []struct {
		name, state string
		trial       bool
		confirmed   string
	}{
		{"running root confirmed", `{"goodRoot":2,"goodVersion":"` + runningVersion + `"}`, false, runningVersion},
		{"no bootguard state yet", "", true, ""},
		{"unreadable state", "{", true, ""},
		{"on trial: partition 3 is the fallback", `{"goodRoot":3,"goodVersion":"0.9.0"}`, true, ""},
		{"same version on trial", `{"goodRoot":3,"goodVersion":"` + runningVersion + `"}`, true, ""},
	} {
		os.Remove(state)
		if tc.state != "" {
			if err := os.WriteFile(state, []byte(tc.state), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		s := u.Status()
		if s.OnTrial != tc.trial || s.Confirmed != tc.confirmed || (s.Trial != "") != tc.trial {
			t.Errorf("%s: on trial %v (%q), confirmed %q; want %v, %q", tc.name, s.OnTrial, s.Trial, s.Confirmed, tc.trial, tc.confirmed)
		}
		if tc.trial {
			if _, err := u.Install(t.Context(), unread{t}, firmware.InstallOptions{}); !errors.Is(err, firmware.ErrOnTrial) {
				t.Errorf("%s: Install: %v, want ErrOnTrial", tc.name, err)
			}
		}
	}
	if ops := r.dev.Ops(); len(ops) != 0 {
		t.Fatalf("device calls on trial: %q", ops)
	}
	if err := os.WriteFile(state, []byte(`{"goodRoot":2,"goodVersion":"`+runningVersion+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Install(t.Context(), bytes.NewReader(r.good()), firmware.InstallOptions{}); err != nil {
		t.Fatalf("Install after the trial: %v", err)
	}
	r.dev.WaitReboot(t)
}

// A bundle whose boot partition names another disk (an image built with
// another Hostname) is refused after it verified, and nothing is written.
func TestInstallRefusesAnotherDisk(t *testing.T) {
	r := newRig(t)
	u := firmware.New(r.opts)
	other := r.sign.BundleFor(t, newVersion, target, "60c24cc1-f3f9-427a-8199-5daa376e0001")
	_, err := u.Install(t.Context(), bytes.NewReader(other), firmware.InstallOptions{})
	if !errors.Is(err, firmware.ErrRefused) || !strings.Contains(err.Error(), "another Hostname") {
		t.Fatalf("Install: %v, want a refusal naming the disks", err)
	}
	if ops := r.dev.Ops(); len(ops) != 0 {
		t.Fatalf("device calls: %q", ops)
	}
	r.wantClean()
}

// corrupting damages the staged root file just before it is sent, as a
// failing SD card could between verification and writing.
type corrupting struct {
	*firmwaretest.Device
	dir string
	t   *testing.T
}

func (c corrupting) PutRoot(ctx context.Context, r io.Reader) error {
	files, _ := filepath.Glob(filepath.Join(c.dir, "*", "root*"))
	files2, _ := filepath.Glob(filepath.Join(c.dir, "root*"))
	files = append(files, files2...)
	if len(files) != 1 {
		c.t.Fatalf("staged root files: %q", files)
	}
	f, err := os.OpenFile(files[0], os.O_WRONLY, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	f.WriteAt([]byte("XX"), 0)
	f.Close()
	return c.Device.PutRoot(ctx, r)
}

func TestInstallCatchesAStagedPartChanged(t *testing.T) {
	r := newRig(t)
	r.opts.Device = corrupting{Device: r.dev, dir: r.dir, t: t}
	u := firmware.New(r.opts)
	_, err := u.Install(t.Context(), bytes.NewReader(r.good()), firmware.InstallOptions{})
	if err == nil || !strings.Contains(err.Error(), "the signed manifest says") {
		t.Fatalf("Install: %v, want the mismatch with the manifest", err)
	}
	if ops := r.dev.Ops(); len(ops) != 1 || ops[0] != "root" {
		t.Fatalf("device calls %q, want only the (inactive) root written, no switch", ops)
	}
}

// Staging leaves room for the appliance's state: a bundle that does not
// fit is refused with the sizes, and nothing is written.
func TestInstallNeedsFreeSpace(t *testing.T) {
	defer firmware.SetStagingReserve(1 << 62)()
	r := newRig(t)
	u := firmware.New(r.opts)
	_, err := u.Install(t.Context(), bytes.NewReader(r.good()), firmware.InstallOptions{})
	if err == nil || !strings.Contains(err.Error(), "must stay free") {
		t.Fatalf("Install: %v, want a refusal for lack of space", err)
	}
	if ops := r.dev.Ops(); len(ops) != 0 {
		t.Fatalf("device calls: %q", ops)
	}
	r.wantClean()
}

// A bundle built before the running version is refused unless the admin
// allows it: an old signed bundle must not quietly undo a fix.
func TestInstallOlderOnlyWhenAllowed(t *testing.T) {
	r := newRig(t)
	r.opts.Release.BuildTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // after the signer's bundles
	u := firmware.New(r.opts)
	_, err := u.Install(t.Context(), bytes.NewReader(r.good()), firmware.InstallOptions{})
	if !errors.Is(err, firmware.ErrRefused) || !strings.Contains(err.Error(), "older firmware") {
		t.Fatalf("Install of an older build: %v, want a refusal", err)
	}
	if ops := r.dev.Ops(); len(ops) != 0 {
		t.Fatalf("device calls: %q", ops)
	}
	if _, err := u.Install(t.Context(), bytes.NewReader(r.good()), firmware.InstallOptions{AllowOlder: true}); err != nil {
		t.Fatalf("Install of an older build, allowed: %v", err)
	}
	r.dev.WaitReboot(t)
}
