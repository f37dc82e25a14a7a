// Package firmwaretest helps test firmware installs: a fake Device that
// records what it is asked to do, and a signing key with small parts to
// build signed bundles from.
package firmwaretest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/psigate/psigate/gokrazy/bundle"
)

// Call is one thing the Device was asked to do.
type Call struct {
	Op   string // "root", "boot", "mbr", "switch" or "reboot"
	Data []byte // what a Put wrote
}

// Device is a firmware.Device that records its calls.
type Device struct {
	mu       sync.Mutex
	calls    []Call
	fail     map[string]error
	rebooted chan struct{}
	once     sync.Once
}

// NewDevice returns a Device whose operations all succeed.
func NewDevice() *Device {
	return &Device{fail: map[string]error{}, rebooted: make(chan struct{})}
}

// Fail makes the operation op ("root", ..., "reboot") fail with err.
func (d *Device) Fail(op string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fail[op] = err
}

func (d *Device) record(op string, r io.Reader) error {
	var data []byte
	if r != nil {
		var err error
		if data, err = io.ReadAll(r); err != nil {
			return err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, Call{op, data})
	return d.fail[op]
}

func (d *Device) PutRoot(_ context.Context, r io.Reader) error { return d.record("root", r) }
func (d *Device) PutBoot(_ context.Context, r io.Reader) error { return d.record("boot", r) }
func (d *Device) PutMBR(_ context.Context, r io.Reader) error  { return d.record("mbr", r) }
func (d *Device) Switch(context.Context) error                 { return d.record("switch", nil) }

// Reboot records the call and closes Rebooted.
func (d *Device) Reboot(context.Context) error {
	err := d.record("reboot", nil)
	d.once.Do(func() { close(d.rebooted) })
	return err
}

// Rebooted is closed once Reboot was called.
func (d *Device) Rebooted() <-chan struct{} { return d.rebooted }

// WaitReboot fails the test unless Reboot is called within 10 s.
func (d *Device) WaitReboot(t testing.TB) {
	t.Helper()
	select {
	case <-d.rebooted:
	case <-time.After(10 * time.Second):
		t.Fatal("the device was not rebooted")
	}
}

// Ops lists the operations called, in order.
func (d *Device) Ops() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := []string{}
	for _, c := range d.calls {
		out = append(out, c.Op)
	}
	return out
}

// Data is what the first call of op wrote.
func (d *Device) Data(op string) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.calls {
		if c.Op == op {
			return c.Data
		}
	}
	return nil
}

// Signer is a signing key and the part files of a small bundle.
type Signer struct {
	Priv    ed25519.PrivateKey
	Pub     ed25519.PublicKey
	PubPath string            // the public key's PEM file
	Parts   map[string]string // part name -> file
}

// NewSigner makes a key and parts (about 280 KB) in a temporary
// directory.
func NewSigner(t testing.TB) *Signer {
	t.Helper()
	dir := t.TempDir()
	s := &Signer{PubPath: filepath.Join(dir, "update-signing.pub"), Parts: map[string]string{}}
	privPath := filepath.Join(dir, "update-signing.pem")
	if err := bundle.GenerateKey(privPath, s.PubPath); err != nil {
		t.Fatal(err)
	}
	var err error
	if s.Priv, err = bundle.LoadPrivateKey(privPath); err != nil {
		t.Fatal(err)
	}
	if s.Pub, err = bundle.LoadPublicKey(s.PubPath); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"boot": bytes.Repeat([]byte("BOOT"), 5_000),
		"root": bytes.Repeat([]byte("ROOT-squashfs"), 20_000),
		"mbr":  bytes.Repeat([]byte{0xeb}, bundle.MBRSize),
	} {
		p := filepath.Join(dir, name+".img")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s.Parts[name] = p
	}
	return s
}

// KeyID is the ID of the signer's key.
func (s *Signer) KeyID() string { return bundle.KeyID(s.Pub) }

// Bundle builds a bundle of the parts, signed.
func (s *Signer) Bundle(t testing.TB, version, target string) []byte {
	t.Helper()
	return s.BundleFor(t, version, target, Disk)
}

// Disk is the disk the bundles of Bundle name, and the one Cmdline boots.
const Disk = "60c24cc1-f3f9-427a-8199-3107e6400001"

// Cmdline is a kernel command line of a box running root partition 2 of
// Disk, as gokrazy writes it.
const Cmdline = "console=ttyS0,115200 root=PARTUUID=" + Disk + "/PARTNROFF=1 ro init=/gokrazy/init rootwait"

// BundleFor is Bundle for the given disk (partition 1's GUID).
func (s *Signer) BundleFor(t testing.TB, version, target, disk string) []byte {
	t.Helper()
	var buf bytes.Buffer
	m := bundle.Manifest{Version: version, Target: target, Disk: disk,
		BuildTime: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), BuildTimestamp: "2025-03-01T12:00:00Z"}
	if err := bundle.Write(&buf, s.Priv, m, s.Parts); err != nil {
		t.Fatalf("bundle.Write: %v", err)
	}
	return buf.Bytes()
}

// Part is the content of a part file.
func (s *Signer) Part(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(s.Parts[name])
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Box makes the files of a box running root partition 2 (kernel command
// line Cmdline) that bootguard has confirmed with version: it returns the
// rollback file's path (bootguard's state.json is next to it) and the
// command line's, for firmware.Options.
func Box(t testing.TB, version string) (rollbackFile, cmdline string) {
	t.Helper()
	dir := t.TempDir()
	cmdline = filepath.Join(dir, "cmdline")
	if err := os.WriteFile(cmdline, []byte(Cmdline+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte(`{"goodRoot":2,"goodVersion":"`+version+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "rollback.json"), cmdline
}
