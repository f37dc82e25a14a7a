package vm_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/psigate/psigate/gokrazy/builder"
	"github.com/psigate/psigate/gokrazy/bundle"
	"github.com/psigate/psigate/gokrazy/vm"
)

// The tests build real images from gokrazy/instances and boot them in
// QEMU under software emulation. Each VM forwards its own free ports on
// 127.0.0.1 and is killed by process group when its test ends.

const (
	portalPort  = 443
	gokrazyPort = 8080
	sipTLSPort  = 65061 // the access realm's default TLS port
	adminPass   = "a long admin password 7"
)

func needTools(t *testing.T, boot vm.Boot) {
	t.Helper()
	missing := vm.Tools(boot)
	for _, tool := range []string{"mksquashfs"} {
		if _, err := exec.LookPath(tool); err != nil && missing == nil {
			missing = fmt.Errorf("%s missing (Debian's squashfs-tools)", tool)
		}
	}
	if boot != vm.RaspberryPi && missing == nil {
		if _, err := os.Stat("/usr/lib/systemd/boot/efi/systemd-bootx64.efi"); err != nil {
			missing = fmt.Errorf("systemd-bootx64.efi missing (Debian's systemd-boot-efi)")
		}
	}
	if missing == nil {
		return
	}
	if os.Getenv("PSIGATE_REQUIRE_PEERS") == "1" {
		t.Fatalf("image test needs %v", missing)
	}
	t.Skipf("image test skipped: %v", missing)
}

// images are one set of builds shared by the amd64 tests: version 1 with
// a disk image, version 2, and version 3 whose appliance cannot start.
type images struct {
	dir      string
	password string
	key      ed25519.PrivateKey
	v1, v2   *builder.Result
	v3       *builder.Result
	cmdline  string
	kernel   string
}

var (
	amd64Once sync.Once
	amd64Set  *images
	amd64Err  error
)

func moduleRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// options are the builder's options for a test's image: its own
// password and signing key (made by secrets), the host's CA bundle.
func options(root, config, out, version, password string, key ed25519.PrivateKey, pubPEM []byte) builder.Options {
	ca, _ := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	return builder.Options{
		ConfigPath: config, ModuleDir: root, OutDir: out, Version: version,
		Password: password, SigningKey: key, PublicKeyPEM: pubPEM, CABundle: ca,
	}
}

// secrets makes a password and a signing key for the test's images.
func secrets(dir string) (string, ed25519.PrivateKey, []byte, error) {
	priv, pub := filepath.Join(dir, "update.key"), filepath.Join(dir, "update.pub")
	if err := bundle.GenerateKey(priv, pub); err != nil {
		return "", nil, nil, err
	}
	key, err := bundle.LoadPrivateKey(priv)
	if err != nil {
		return "", nil, nil, err
	}
	pubPEM, err := os.ReadFile(pub)
	if err != nil {
		return "", nil, nil, err
	}
	raw := make([]byte, 12)
	rand.Read(raw)
	return fmt.Sprintf("pw-%x", raw), key, pubPEM, nil
}

// instance writes a copy of an instance configuration with extra
// package settings (the test's bootguard timings, a broken appliance).
func instance(t *testing.T, root, name, dir string, edit func(map[string]any)) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "gokrazy", "instances", name, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, _ := json.MarshalIndent(m, "", "  ")
	p := filepath.Join(dir, "config.json")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func packageConfig(m map[string]any, pkg string, flags ...string) {
	pc, _ := m["PackageConfig"].(map[string]any)
	if pc == nil {
		pc = map[string]any{}
		m["PackageConfig"] = pc
	}
	pc[pkg] = map[string]any{"CommandLineFlags": flags}
}

const (
	appliancePkg = "github.com/psigate/psigate/appliance"
	bootguardPkg = "github.com/psigate/psigate/gokrazy/cmd/bootguard"
)

func buildAMD64(t *testing.T) *images {
	t.Helper()
	amd64Once.Do(func() {
		root := moduleRoot(t)
		dir, err := os.MkdirTemp("", "psigate-vmtest-")
		if err != nil {
			amd64Err = err
			return
		}
		set := &images{dir: dir}
		var pubPEM []byte
		set.password, set.key, pubPEM, amd64Err = secrets(dir)
		if amd64Err != nil {
			return
		}
		// bootguard decides within about a minute instead of five.
		guard := func(m map[string]any) { packageConfig(m, bootguardPkg, "-settle", "15s", "-deadline", "100s") }
		good := instance(t, root, "amd64", filepath.Join(dir, "good"), guard)
		broken := instance(t, root, "amd64", filepath.Join(dir, "broken"), func(m map[string]any) {
			guard(m)
			// An appliance that exits at once: gokrazy restarts it for
			// ever, and it never answers its health check.
			packageConfig(m, appliancePkg, "-http", "256.0.0.1:443")
		})
		base := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
		build := func(cfg, version string, noDisk bool, at time.Time) (*builder.Result, error) {
			o := options(root, cfg, filepath.Join(dir, version), version, set.password, set.key, pubPEM)
			o.BuildTime, o.NoDisk = at, noDisk
			return builder.Build(context.Background(), o)
		}
		if set.v1, amd64Err = build(good, "1.0.0", false, base); amd64Err != nil {
			return
		}
		if set.v2, amd64Err = build(good, "2.0.0", true, base.Add(time.Hour)); amd64Err != nil {
			return
		}
		if set.v3, amd64Err = build(broken, "3.0.0", true, base.Add(2*time.Hour)); amd64Err != nil {
			return
		}
		cmdline, err := os.ReadFile(filepath.Join(dir, "1.0.0", "cmdline.txt"))
		if err != nil {
			amd64Err = err
			return
		}
		set.cmdline = strings.TrimSpace(string(cmdline))
		set.kernel = filepath.Join(dir, "1.0.0", "vmlinuz")
		amd64Set = set
	})
	if amd64Err != nil {
		t.Fatalf("building the amd64 images: %v", amd64Err)
	}
	return amd64Set
}

// disk copies the version 1 disk image for one VM (sparse).
func (s *images) disk(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	if out, err := exec.Command("cp", "--sparse=always", s.v1.Disk, p).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return p
}

func boot(t *testing.T, o vm.Options) *vm.VM {
	t.Helper()
	o.Serial = filepath.Join(t.TempDir(), "serial.log")
	o.Forward = map[int]int{portalPort: 0, gokrazyPort: 0, sipTLSPort: 0}
	v, err := vm.Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		v.Stop()
		if t.Failed() {
			t.Logf("serial console:\n%s", tail(v.Serial(), 80))
			t.Logf("QEMU's output:\n%s", v.Output())
		}
	})
	return v
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// portal is an HTTPS client of the appliance's portal through the
// forward.
type portal struct {
	base  string
	hc    *http.Client
	token string
}

func newPortal(v *vm.VM) *portal {
	return &portal{base: "https://" + v.Addr(portalPort), hc: &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // the box's self-signed certificate
	}}
}

func (p *portal) do(method, path string, body io.Reader, ctype string, out any) (int, string, error) {
	req, err := http.NewRequest(method, p.base+path, body)
	if err != nil {
		return 0, "", err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, string(b), fmt.Errorf("%s %s: %w: %s", method, path, err, b)
		}
	}
	return resp.StatusCode, string(b), nil
}

func (p *portal) json(method, path string, in, out any) (int, string, error) {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	return p.do(method, path, body, "application/json", out)
}

type health struct {
	Status  string `json:"status"`
	Version string `json:"version"`
}

// waitHealthy waits until /healthz answers 200 with version; it returns
// how long that took.
func waitHealthy(t *testing.T, v *vm.VM, p *portal, version string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var last string
	err := v.Poll(ctx, "the portal's /healthz to report "+version, func() bool {
		var h health
		code, body, err := p.do("GET", "/healthz", nil, "", &h)
		last = fmt.Sprint(code, " ", body, " ", err)
		return err == nil && code == 200 && h.Version == version
	})
	if err != nil {
		t.Fatalf("%v (last answer: %s)", err, last)
	}
	return time.Since(start)
}

func (p *portal) setupAndLogin(t *testing.T, setup bool) {
	t.Helper()
	if setup {
		if code, body, err := p.json("POST", "/api/v1/setup", map[string]string{"password": adminPass}, nil); err != nil || code != 201 {
			t.Fatalf("first-boot setup: %d %s %v", code, body, err)
		}
	}
	var login struct{ Token string }
	if code, body, err := p.json("POST", "/api/v1/session", map[string]string{"username": "admin", "password": adminPass}, &login); err != nil || code != 200 {
		t.Fatalf("login: %d %s %v", code, body, err)
	}
	p.token = login.Token
}

// gokrazyGet asks gokrazy's own HTTP server (moved to port 8080).
func gokrazyGet(v *vm.VM, path, password string) (int, string, error) {
	req, _ := http.NewRequest("GET", "http://"+v.Addr(gokrazyPort)+path, nil)
	if password != "" {
		req.SetBasicAuth("gokrazy", password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func gokrazyPost(v *vm.VM, path, password string) (int, error) {
	req, _ := http.NewRequest("POST", "http://"+v.Addr(gokrazyPort)+path, nil)
	req.SetBasicAuth("gokrazy", password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// sipOptions sends an OPTIONS over TLS and returns the status line.
func sipOptions(addr string) (string, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	msg := "OPTIONS sip:psigate.invalid SIP/2.0\r\n" +
		"Via: SIP/2.0/TLS " + local + ";branch=z9hG4bK-vmtest-1;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:probe@test.invalid>;tag=vm1\r\nTo: <sip:psigate.invalid>\r\n" +
		"Call-ID: vmtest-options-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := conn.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
	return line, nil
}

// TestAMD64DirectBoot boots version 1 with the kernel loaded directly:
// the portal over HTTPS, the first-login flow, SIP over TLS on the access
// realm, gokrazy's page behind its password on its own port, and the
// admin password still there after a reboot (state on /perm).
func TestAMD64DirectBoot(t *testing.T) {
	needTools(t, vm.Direct)
	t.Parallel()
	set := buildAMD64(t)
	// The image written to a disk larger than itself: /perm grows to
	// fill it at the first boot.
	disk := set.disk(t)
	if err := os.Truncate(disk, 3<<30); err != nil {
		t.Fatal(err)
	}
	v := boot(t, vm.Options{Disk: disk, Boot: vm.Direct, Kernel: set.kernel, Append: set.cmdline})
	p := newPortal(v)
	took := waitHealthy(t, v, p, "1.0.0", 4*time.Minute)
	t.Logf("direct boot: portal healthy %.1f s after QEMU started", took.Seconds())
	ctx0, cancel0 := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel0()
	if err := v.WaitSerial(ctx0, "growperm: /perm grown to"); err != nil {
		t.Error(err)
	}
	for _, l := range strings.Split(v.Serial(), "\n") {
		if strings.Contains(l, "growperm:") || strings.Contains(l, "resized filesystem") {
			t.Logf("serial: %s", strings.TrimSpace(l))
		}
	}
	if !strings.Contains(v.Serial(), "EXT4-fs (vda4): resized filesystem to") {
		t.Error("the kernel did not report /perm resized")
	}

	serial := v.Serial()
	for _, want := range []string{"Run /gokrazy/init", "EXT4-fs (vda4): mounted"} {
		if !strings.Contains(serial, want) {
			t.Errorf("serial console lacks %q", want)
		}
	}
	if code, body, err := p.json("GET", "/api/v1/status", nil, nil); err != nil || code != 403 {
		t.Errorf("status before setup: %d %s %v, want 403", code, body, err)
	}
	p.setupAndLogin(t, true)
	if code, body, err := p.json("GET", "/api/v1/status", nil, nil); err != nil || code != 200 {
		t.Errorf("status after login: %d %s %v", code, body, err)
	}

	if code, _, err := gokrazyGet(v, "/update/features", ""); err != nil || code != 401 {
		t.Errorf("gokrazy without password: %d %v, want 401", code, err)
	}
	if code, _, err := gokrazyGet(v, "/update/features", "wrong"); err != nil || code != 401 {
		t.Errorf("gokrazy with a wrong password: %d %v, want 401", code, err)
	}
	code, features, err := gokrazyGet(v, "/update/features", set.password)
	if err != nil || code != 200 || !strings.Contains(features, "partuuid") || !strings.Contains(features, "gpt") {
		t.Errorf("gokrazy features: %d %q %v", code, features, err)
	}

	line, err := sipOptions(v.Addr(sipTLSPort))
	if err != nil || !strings.HasPrefix(line, "SIP/2.0 ") {
		t.Errorf("SIP OPTIONS over TLS to the access realm: %q %v", line, err)
	} else {
		t.Logf("SIP OPTIONS over TLS: %s", line)
	}

	// Reboot through gokrazy (kexec, reading the boot partition's
	// cmdline.txt), then log in with the password set before.
	boots := strings.Count(v.Serial(), "Run /gokrazy/init")
	if code, err := gokrazyPost(v, "/reboot?async=true&wait_per_signal=5s", set.password); err != nil || code != 200 {
		t.Fatalf("reboot: %d %v", code, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := v.Poll(ctx, "a second boot", func() bool { return strings.Count(v.Serial(), "Run /gokrazy/init") > boots }); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, v, p, "1.0.0", 3*time.Minute)
	if n := strings.Count(v.Serial(), "growperm: /perm grown to"); n != 1 {
		t.Errorf("/perm grown %d times, want once (the second boot finds it filled)", n)
	}
	p.setupAndLogin(t, false)
	if code, _, _ := p.json("POST", "/api/v1/setup", map[string]string{"password": "another long password"}, nil); code != 409 {
		t.Errorf("setup after reboot: %d, want 409 (already set)", code)
	}

	// psigate-push, as from an admin's machine on the LAN: gokrazy's
	// update protocol with the build's password, then a kexec reboot
	// that reads the switched command line.
	bin := filepath.Join(t.TempDir(), "psigate-push")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/psigate/psigate/gokrazy/cmd/psigate-push").CombinedOutput(); err != nil {
		t.Fatalf("building psigate-push: %v\n%s", err, out)
	}
	pwFile := filepath.Join(t.TempDir(), "gokr-pw.txt")
	if err := os.WriteFile(pwFile, []byte(set.password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// -kexec: with the kernel loaded by QEMU, only gokrazy's kexec
	// reads the switched command line from the boot partition.
	push := exec.Command(bin, "-kexec", "-host", v.Addr(gokrazyPort), "-password-file", pwFile, "-key", filepath.Join(set.dir, "update.pub"), "-timeout", "4m", set.v2.Bundle)
	out, err := push.CombinedOutput()
	if err != nil {
		t.Fatalf("psigate-push: %v\n%s", err, out)
	}
	t.Logf("psigate-push to 2.0.0 took %.1f s:\n%s", time.Since(start).Seconds(), out)
	waitHealthy(t, v, p, "2.0.0", 3*time.Minute)
	if !strings.Contains(v.Serial(), "PARTNROFF=2") {
		t.Errorf("the kernel did not boot root B after the push")
	}
}

// upload posts a bundle to the portal's firmware API.
func (p *portal) upload(t *testing.T, file string) (int, string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	code, body, err := p.do("POST", "/api/v1/firmware", f, "application/octet-stream", nil)
	if err != nil {
		t.Fatalf("upload %s: %v", filepath.Base(file), err)
	}
	return code, body
}

// tampered writes a copy of a bundle with one byte of the signed
// manifest changed.
func tampered(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte(`"version"`))
	if i < 0 {
		t.Fatal("no version in the bundle's manifest")
	}
	b[i+1] = 'V'
	out := filepath.Join(t.TempDir(), "tampered.psig")
	if err := os.WriteFile(out, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

func truncated(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "truncated.psig")
	if err := os.WriteFile(out, b[:len(b)*2/3], 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// wrongTarget is a bundle of the same parts, signed with the right key,
// that says it is for the Raspberry Pi.
func wrongTarget(t *testing.T, set *images) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "rpi.psig")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := bundle.Manifest{Format: 1, Product: "psigate", Version: "2.0.0", Target: "rpi", BuildTime: time.Now().UTC(), BuildTimestamp: "for another board"}
	if err := bundle.Write(f, set.key, m, map[string]string{"boot": set.v2.Boot, "root": set.v2.Root, "mbr": set.v2.MBR}); err != nil {
		t.Fatal(err)
	}
	return out
}

type statusAlarms struct {
	Version string `json:"version"`
	Alarms  []struct {
		Code string `json:"code"`
		Text string `json:"text"`
	} `json:"alarms"`
}

// TestAMD64UpdateRoundTrip boots version 1 through UEFI (OVMF and the
// image's systemd-boot, what a PC does), refuses bad bundles without
// touching anything, installs version 2 through the portal's API, then
// installs a version 3 that never becomes healthy and watches the box
// roll back to version 2 by itself and raise an alarm.
func TestAMD64UpdateRoundTrip(t *testing.T) {
	needTools(t, vm.UEFI)
	t.Parallel()
	set := buildAMD64(t)
	v := boot(t, vm.Options{Disk: set.disk(t), Boot: vm.UEFI, Timeout: 20 * time.Minute})
	p := newPortal(v)
	took := waitHealthy(t, v, p, "1.0.0", 5*time.Minute)
	t.Logf("UEFI boot: portal healthy %.1f s after QEMU started", took.Seconds())
	p.setupAndLogin(t, true)
	waitConfirmed(t, v, p, "1.0.0")

	for name, file := range map[string]string{
		"bad signature": tampered(t, set.v2.Bundle),
		"truncated":     truncated(t, set.v2.Bundle),
		"wrong target":  wrongTarget(t, set),
	} {
		code, body := p.upload(t, file)
		if code < 400 || code >= 500 {
			t.Errorf("%s bundle: %d %s, want a 4xx refusal", name, code, body)
		} else {
			t.Logf("%s bundle refused: %d %s", name, code, strings.Join(strings.Fields(body), " "))
		}
	}
	if code, body, _ := p.do("GET", "/healthz", nil, "", nil); code != 200 || !strings.Contains(body, "1.0.0") {
		t.Fatalf("after refused bundles: %d %s, want version 1.0.0 still running", code, body)
	}

	start := time.Now()
	if code, body := p.upload(t, set.v2.Bundle); code != 202 {
		t.Fatalf("version 2 bundle: %d %s, want 202", code, body)
	}
	waitHealthy(t, v, p, "2.0.0", 6*time.Minute)
	t.Logf("update to 2.0.0: upload to healthy %.1f s", time.Since(start).Seconds())
	p.setupAndLogin(t, false)
	waitConfirmed(t, v, p, "2.0.0")

	start = time.Now()
	if code, body := p.upload(t, set.v3.Bundle); code != 202 {
		t.Fatalf("version 3 bundle: %d %s, want 202", code, body)
	}
	// Version 3's appliance never serves; bootguard's deadline passes, it
	// switches back and reboots into version 2.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := v.Poll(ctx, "version 3 to boot", func() bool { return strings.Contains(v.Serial(), "3.0.0") }); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, v, p, "2.0.0", 8*time.Minute)
	t.Logf("version 3 rolled back to 2.0.0 %.1f s after its upload", time.Since(start).Seconds())
	p.setupAndLogin(t, false)
	var st statusAlarms
	if code, body, err := p.json("GET", "/api/v1/status", nil, &st); err != nil || code != 200 {
		t.Fatalf("status: %d %s %v", code, body, err)
	}
	found := false
	for _, a := range st.Alarms {
		if a.Code == "firmware-rolled-back" {
			found = true
			t.Logf("alarm: %s", a.Text)
			if !strings.Contains(a.Text, "3.0.0") {
				t.Errorf("rollback alarm does not name version 3: %q", a.Text)
			}
		}
	}
	if !found {
		t.Errorf("no firmware-rolled-back alarm after the rollback: %+v", st.Alarms)
	}
}

// TestRaspberryPiBoot boots the Raspberry Pi image on QEMU's raspi3b
// board far enough to see the appliance start on the serial console.
//
// It runs alone, before the amd64 tests: with them on the same two cores,
// the emulated board twice printed nothing at all for six minutes.
func TestRaspberryPiBoot(t *testing.T) {
	needTools(t, vm.RaspberryPi)
	root := moduleRoot(t)
	dir := t.TempDir()
	password, key, pubPEM, err := secrets(dir)
	if err != nil {
		t.Fatal(err)
	}
	o := options(root, filepath.Join(root, "gokrazy", "instances", "rpi", "config.json"), filepath.Join(dir, "out"), "1.0.0-pi", password, key, pubPEM)
	o.DiskSize = 2 << 30 // QEMU's SD card must be a power of two in size
	r, err := builder.Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Raspberry Pi image: %v", r.Sizes)
	kdir, err := exec.Command("go", "list", "-f", "{{.Dir}}", "github.com/gokrazy/kernel.rpi").Output()
	if err != nil {
		t.Fatal(err)
	}
	cmdline, err := os.ReadFile(filepath.Join(dir, "out", "cmdline.txt"))
	if err != nil {
		t.Fatal(err)
	}
	appendArgs := strings.Replace(strings.TrimSpace(string(cmdline)), "console=serial0,115200", "console=ttyAMA1,115200", 1)
	v := boot(t, vm.Options{Disk: r.Disk, Boot: vm.RaspberryPi, Kernel: filepath.Join(dir, "out", "vmlinuz"),
		DTB: filepath.Join(strings.TrimSpace(string(kdir)), "bcm2710-rpi-3-b.dtb"), Append: appendArgs})
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	if err := v.WaitSerial(ctx, "psigate 1.0.0-pi starting"); err != nil {
		t.Fatal(err)
	}
	t.Logf("Raspberry Pi: appliance started %.1f s after QEMU started (%d CPUs here)", time.Since(start).Seconds(), runtime.NumCPU())
}

// waitConfirmed waits until bootguard has confirmed version healthy (the
// firmware status says so): only then does the other root partition
// stop being the fallback an update must not overwrite.
func waitConfirmed(t *testing.T, v *vm.VM, p *portal, version string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var last string
	err := v.Poll(ctx, "bootguard to confirm "+version, func() bool {
		var st struct {
			OnTrial   bool   `json:"onTrial"`
			Confirmed string `json:"confirmedVersion"`
		}
		code, body, err := p.json("GET", "/api/v1/firmware", nil, &st)
		last = fmt.Sprint(code, " ", body, " ", err)
		return err == nil && code == 200 && !st.OnTrial && st.Confirmed == version
	})
	if err != nil {
		t.Fatalf("%v (last answer: %s)", err, last)
	}
}

// Two builds from the same sources, build time, version, password and
// key give the same bytes.
func TestBuildReproducible(t *testing.T) {
	needTools(t, vm.Direct)
	t.Parallel()
	root := moduleRoot(t)
	dir := t.TempDir()
	password, key, pubPEM, err := secrets(dir)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var sums [2]map[string]string
	for i := range sums {
		o := options(root, filepath.Join(root, "gokrazy", "instances", "amd64", "config.json"), filepath.Join(dir, fmt.Sprint(i)), "9.9.9", password, key, pubPEM)
		o.BuildTime = at
		r, err := builder.Build(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			// The update's root (what a bundle carries) holds no usable
			// gokrazy password; the first-install disk's /perm does.
			out, err := exec.Command("unsquashfs", "-cat", r.Root, "etc/gokr-pw.txt").Output()
			if err != nil || len(out) < 16 || strings.Contains(string(out), password) {
				t.Errorf("the root's etc/gokr-pw.txt: %v, %d bytes, the real password: %v", err, len(out), strings.Contains(string(out), password))
			}
		}
		sums[i] = map[string]string{}
		for name, p := range map[string]string{"disk": r.Disk, "boot": r.Boot, "root": r.Root, "mbr": r.MBR, "bundle": r.Bundle} {
			sums[i][name] = sha256File(t, p)
		}
	}
	for name, sum := range sums[0] {
		if sums[1][name] != sum {
			t.Errorf("%s differs between two identical builds", name)
		}
	}
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	out, err := exec.Command("sha256sum", p).Output()
	if err != nil {
		t.Fatal(err)
	}
	f, _, _ := strings.Cut(string(out), " ")
	return f
}
