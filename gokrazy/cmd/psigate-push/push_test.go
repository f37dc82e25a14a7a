package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/psigate/psigate/gokrazy/bundle"
	"github.com/psigate/psigate/gokrazy/ota"
	"github.com/psigate/psigate/gokrazy/ota/otatest"
)

const (
	password = "s3cret"
	newBuild = "2026-11-25T10:00:00Z"
)

// fixture is a signed bundle and the files it was made from.
type fixture struct {
	dir, bundle, pub, otherPub, passwordFile string
	root, boot, mbr                          []byte
}

func newFixture(t *testing.T) *fixture {
	dir := t.TempDir()
	f := &fixture{
		dir:          dir,
		bundle:       filepath.Join(dir, "update.psig"),
		pub:          filepath.Join(dir, "signing.pub"),
		otherPub:     filepath.Join(dir, "other.pub"),
		passwordFile: filepath.Join(dir, "gokr-pw.txt"),
		root:         otatest.RootImage(newBuild, 20000),
		boot:         bytes.Repeat([]byte("FAT!"), 3000),
		mbr:          bytes.Repeat([]byte{0x90}, bundle.MBRSize),
	}
	priv := filepath.Join(dir, "signing.key")
	if err := bundle.GenerateKey(priv, f.pub); err != nil {
		t.Fatal(err)
	}
	if err := bundle.GenerateKey(filepath.Join(dir, "other.key"), f.otherPub); err != nil {
		t.Fatal(err)
	}
	key, err := bundle.LoadPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for name, data := range map[string][]byte{"root": f.root, "boot": f.boot, "mbr": f.mbr} {
		files[name] = filepath.Join(dir, name+".img")
		mustWrite(t, files[name], data)
	}
	var buf bytes.Buffer
	m := bundle.Manifest{Version: "1.4.0", Target: "amd64", BuildTime: time.Now(), BuildTimestamp: newBuild}
	if err := bundle.Write(&buf, key, m, files); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, f.bundle, buf.Bytes())
	mustWrite(t, f.passwordFile, []byte(password+"\n"))
	return f
}

func mustWrite(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) options(d *otatest.Device) options {
	return options{
		host:         d.URL,
		passwordFile: f.passwordFile,
		keyFile:      f.pub,
		bundle:       f.bundle,
		timeout:      10 * time.Second,
		kexec:        true,
		poll:         time.Millisecond,
	}
}

func newDevice(t *testing.T, cfg otatest.Config) *otatest.Device {
	if cfg.Password == "" {
		cfg.Password = password
	}
	if cfg.BuildTimestamp == "" {
		cfg.BuildTimestamp = "2026-11-01T09:00:00Z"
	}
	d := otatest.New(cfg)
	t.Cleanup(d.Close)
	return d
}

func TestPush(t *testing.T) {
	f := newFixture(t)
	d := newDevice(t, otatest.Config{})
	var out bytes.Buffer
	if err := push(t.Context(), f.options(d), &out); err != nil {
		t.Fatalf("push: %v\n%s", err, out.String())
	}
	if d.ActiveRoot() != 3 || !bytes.Equal(d.Root(3), f.root) {
		t.Errorf("box runs root partition %d; partition 3 holds the new root: %v", d.ActiveRoot(), bytes.Equal(d.Root(3), f.root))
	}
	if !bytes.Equal(d.Boot(), f.boot) || !bytes.Equal(d.DiskStart()[:bundle.MBRSize], f.mbr) {
		t.Error("boot partition or MBR not written")
	}
	if got := d.Reboots(); len(got) != 1 || !got[0].Kexec || !got[0].Async {
		t.Errorf("reboots = %+v", got)
	}
	wantOrder := []string{"GET /update/features", "GET /", "PUT /update/root", "PUT /update/boot", "PUT /update/mbr", "POST /update/switch", "POST /reboot"}
	if got := d.Requests(); len(got) < len(wantOrder) || strings.Join(got[:len(wantOrder)], ",") != strings.Join(wantOrder, ",") {
		t.Errorf("requests = %v, want %v then polls", got, wantOrder)
	}
	for _, want := range []string{
		"bundle    psigate 1.4.0 for amd64, build " + newBuild + ", signed by key ",
		"features  partuuid,updatehash,gpt,",
		"before    build 2026-11-01T09:00:00Z",
		"root      20000 bytes written, sha256 confirmed",
		"boot      12000 bytes written",
		"mbr       446 bytes written",
		"switch    ",
		"reboot    requested",
		"running   build " + newBuild,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestPushWithoutKeyChecksHashes(t *testing.T) {
	f := newFixture(t)
	d := newDevice(t, otatest.Config{})
	o := f.options(d)
	o.keyFile = ""
	o.kexec = false
	var out bytes.Buffer
	if err := push(t.Context(), o, &out); err != nil {
		t.Fatalf("push: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "signature not checked") {
		t.Errorf("output does not say the signature was not checked:\n%s", out.String())
	}
	if got := d.Reboots(); len(got) != 1 || got[0].Kexec {
		t.Errorf("reboots = %+v, want one with kexec=off", got)
	}

	// A damaged bundle is refused even without a key.
	b, _ := os.ReadFile(f.bundle)
	b[bytes.Index(b, f.root[1000:1100])] ^= 1 // inside root.img
	mustWrite(t, f.bundle, b)
	d2 := newDevice(t, otatest.Config{})
	o.host = d2.URL
	if err := push(t.Context(), o, &out); !errors.Is(err, bundle.ErrCorrupt) {
		t.Errorf("push of a damaged bundle = %v, want ErrCorrupt", err)
	}
	if len(d2.Requests()) != 0 {
		t.Errorf("the device got %v for a damaged bundle", d2.Requests())
	}
}

func TestPushRefusesOtherKey(t *testing.T) {
	f := newFixture(t)
	d := newDevice(t, otatest.Config{})
	o := f.options(d)
	o.keyFile = f.otherPub
	var out bytes.Buffer
	err := push(t.Context(), o, &out)
	if !errors.Is(err, bundle.ErrSignature) {
		t.Fatalf("push = %v, want ErrSignature", err)
	}
	if len(d.Requests()) != 0 {
		t.Errorf("the device got %v for a bundle with the wrong signature", d.Requests())
	}
}

func TestPushTruncatedBundle(t *testing.T) {
	f := newFixture(t)
	d := newDevice(t, otatest.Config{})
	b, _ := os.ReadFile(f.bundle)
	mustWrite(t, f.bundle, b[:len(b)/2])
	var out bytes.Buffer
	if err := push(t.Context(), f.options(d), &out); !errors.Is(err, bundle.ErrTruncated) {
		t.Fatalf("push = %v, want ErrTruncated", err)
	}
	if len(d.Requests()) != 0 {
		t.Errorf("the device got %v", d.Requests())
	}
}

func TestPushWrongPassword(t *testing.T) {
	f := newFixture(t)
	d := newDevice(t, otatest.Config{})
	mustWrite(t, f.passwordFile, []byte("guess\n"))
	var out bytes.Buffer
	err := push(t.Context(), f.options(d), &out)
	if !errors.Is(err, ota.ErrUnauthorized) || !strings.Contains(err.Error(), "wrong gokrazy password") {
		t.Fatalf("push = %v, want ErrUnauthorized", err)
	}
}

func TestPushRequiresFeatures(t *testing.T) {
	f := newFixture(t)
	d := newDevice(t, otatest.Config{Features: "partuuid,"})
	var out bytes.Buffer
	err := push(t.Context(), f.options(d), &out)
	if err == nil || !strings.Contains(err.Error(), `lacks the "updatehash" update feature`) {
		t.Fatalf("push = %v", err)
	}
	for _, r := range d.Requests() {
		if strings.HasPrefix(r, "PUT") {
			t.Errorf("the device got %s", r)
		}
	}
}

func TestPushSwitchFails(t *testing.T) {
	f := newFixture(t)
	d := newDevice(t, otatest.Config{})
	d.FailSwitch(`"/cmdline.txt" not found`)
	var out bytes.Buffer
	err := push(t.Context(), f.options(d), &out)
	if err == nil || !strings.Contains(err.Error(), `switch: gokrazy`) || !strings.Contains(err.Error(), "/cmdline.txt") {
		t.Fatalf("push = %v", err)
	}
	if len(d.Reboots()) != 0 {
		t.Error("rebooted after a failed switch")
	}
}

func TestPushTimesOut(t *testing.T) {
	f := newFixture(t)
	d := newDevice(t, otatest.Config{DownRequests: 1 << 30})
	o := f.options(d)
	o.timeout = 50 * time.Millisecond
	var out bytes.Buffer
	err := push(t.Context(), o, &out)
	if err == nil || !strings.Contains(err.Error(), "did not come back running build "+newBuild) {
		t.Fatalf("push = %v", err)
	}
}

// TestPushSameBuild re-installs the build the box runs: push must see the
// box go down before it believes the answer.
func TestPushSameBuild(t *testing.T) {
	f := newFixture(t)
	d := newDevice(t, otatest.Config{BuildTimestamp: newBuild, UpAfterReboot: 3})
	var out bytes.Buffer
	if err := push(t.Context(), f.options(d), &out); err != nil {
		t.Fatalf("push: %v\n%s", err, out.String())
	}
	if d.ActiveRoot() != 3 {
		t.Errorf("push returned while the box ran partition %d", d.ActiveRoot())
	}
}

func TestReadPasswordEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	mustWrite(t, path, []byte("\n"))
	if _, err := readPassword(path); err == nil {
		t.Error("an empty password file was accepted")
	}
}

// A bundle for the other kind of box is not written: the Raspberry Pi
// says so in its model, a PC does not.
func TestPushRefusesOtherTarget(t *testing.T) {
	f := newFixture(t) // an amd64 bundle
	d := newDevice(t, otatest.Config{Model: "Raspberry Pi 4 Model B Rev 1.4"})
	var out bytes.Buffer
	err := push(t.Context(), f.options(d), &out)
	if err == nil || !strings.Contains(err.Error(), "the bundle is for amd64") || !strings.Contains(err.Error(), "nothing was written") {
		t.Fatalf("push = %v, want a refusal naming the targets", err)
	}
	for _, r := range d.Requests() {
		if strings.HasPrefix(r, "PUT") || strings.HasPrefix(r, "POST") {
			t.Errorf("the device got %s", r)
		}
	}
}
