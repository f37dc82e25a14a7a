// Package otatest is a fake gokrazy device for tests, in the manner of
// net/http/httptest: an HTTP server with the endpoints of gokrazy's update
// protocol (gokrazy/update.go at the version in go.mod's module cache) and
// a disk in memory.
//
// What it copies from gokrazy:
//   - basic auth as gokrazy/authenticated.go does it (user "gokrazy"; with
//     no password only the unix socket is served);
//   - PUT /update/root writes the partition that was inactive at boot,
//     /update/boot partition 1, /update/mbr the start of the disk; writes
//     overwrite in place (a shorter image leaves the old tail) and the
//     answer is the hex SHA-256 (or CRC32 with X-Gokrazy-Update-Hash:
//     crc32) of what was written;
//   - POST /update/switch points the boot config at the partition that was
//     inactive at boot, so a second switch changes nothing;
//   - POST /reboot (async=true answers at once, kexec=off, wait_per_signal)
//     takes the device down; it then boots the root the boot config points
//     at, or, when that partition holds no image, never comes back (a
//     kernel panic loop: gokrazy has no fallback);
//   - GET / with Accept: application/json reports BuildTimestamp;
//   - wrong methods get 400 "expected a PUT request" and the like.
//
// Root images are fakes made by RootImage, which carry their
// BuildTimestamp in their first line.
package otatest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Partition sizes of gokrazy's disk layout.
const (
	BootSize = 100 << 20
	RootSize = 500 << 20
)

// Config describes a fake device.
type Config struct {
	// Password is gokr-pw.txt; empty means only the unix socket takes
	// requests, and those without auth.
	Password string
	// BuildTimestamp is that of the image running at start, e.g.
	// "2026-11-01T10:00:00Z".
	BuildTimestamp string
	// Model is what the device says it is (gokrazy.Model()), e.g.
	// "QEMU Standard PC (Q35 + ICH9, 2009)"; default "QEMU".
	Model string
	// ActiveRoot is the root partition running at start: 2 (default) or 3.
	ActiveRoot int
	// MBROnly leaves "gpt" out of the features, as on a box whose root=
	// is PARTUUID=<disk signature>-02.
	MBROnly bool
	// Features, when set, replaces the features the device reports, e.g.
	// "partuuid," for an old gokrazy.
	Features string
	// UpAfterReboot is how many requests the device still answers, with
	// the old system, after a reboot request: gokrazy stops its services
	// and waits a second before it reboots.
	UpAfterReboot int
	// DownRequests is how many requests a rebooting device then drops
	// (closes the connection) before it has booted; default 2.
	DownRequests int
}

// Reboot is one reboot request the device received.
type Reboot struct {
	Kexec         bool   // false with kexec=off
	Async         bool   // async=true
	WaitPerSignal string // e.g. "10s", empty for the default
}

// Device is a running fake gokrazy device.
type Device struct {
	URL string // e.g. "http://127.0.0.1:41234"; unset for a unix socket device

	srv      *httptest.Server
	password string
	features string
	model    string
	upFor    int
	downFor  int

	mu        sync.Mutex
	boot      []byte
	roots     map[int][]byte
	disk      []byte // the start of the disk, where /update/mbr writes
	nextRoot  int    // where cmdline.txt's root= points
	running   int    // the root partition booted
	inactive  int    // the other one, as gokrazy computes it at boot
	up        int    // requests still to answer before going down to reboot
	down      int    // requests still to drop while rebooting
	dead      bool   // booted a partition without an image
	switchErr string
	reboots   []Reboot
	requests  []string
}

// New starts a fake device on a loopback TCP port.
func New(cfg Config) *Device {
	d := newDevice(cfg)
	d.srv = httptest.NewServer(http.HandlerFunc(d.serve))
	d.URL = d.srv.URL
	return d
}

// NewUnix starts a fake device on a unix socket at path (in place of
// /run/gokrazy-http.sock).
func NewUnix(cfg Config, path string) (*Device, error) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	d := newDevice(cfg)
	d.srv = httptest.NewUnstartedServer(http.HandlerFunc(d.serve))
	d.srv.Listener.Close()
	d.srv.Listener = ln
	d.srv.Start()
	return d, nil
}

func newDevice(cfg Config) *Device {
	if cfg.ActiveRoot == 0 {
		cfg.ActiveRoot = 2
	}
	if cfg.DownRequests == 0 {
		cfg.DownRequests = 2
	}
	if cfg.Model == "" {
		cfg.Model = "QEMU"
	}
	features := "partuuid,updatehash,gpt,"
	if cfg.MBROnly {
		features = "partuuid,updatehash,"
	}
	if cfg.Features != "" {
		features = cfg.Features
	}
	d := &Device{
		password: cfg.Password,
		features: features,
		model:    cfg.Model,
		upFor:    cfg.UpAfterReboot,
		downFor:  cfg.DownRequests,
		roots:    map[int][]byte{cfg.ActiveRoot: RootImage(cfg.BuildTimestamp, 64)},
		nextRoot: cfg.ActiveRoot,
		disk:     make([]byte, 512),
	}
	d.bootRoot()
	return d
}

// Close shuts the device down.
func (d *Device) Close() { d.srv.Close() }

// RootImage returns a fake root file system image of at least size bytes
// whose BuildTimestamp the device reports when it runs it.
func RootImage(buildTimestamp string, size int) []byte {
	b := []byte("otatest root " + buildTimestamp + "\n")
	for i := 0; len(b) < size; i++ {
		b = append(b, byte(i))
	}
	return b
}

// imageTimestamp reads what RootImage wrote.
func imageTimestamp(img []byte) (string, bool) {
	line, _, ok := bytes.Cut(img, []byte("\n"))
	ts, found := strings.CutPrefix(string(line), "otatest root ")
	return ts, ok && found
}

func (d *Device) serve(w http.ResponseWriter, r *http.Request) {
	if d.dropWhileDown(w) {
		return
	}
	if !d.authenticated(w, r) {
		return
	}
	d.mu.Lock()
	d.requests = append(d.requests, r.Method+" "+r.URL.Path)
	d.mu.Unlock()
	switch r.URL.Path {
	case "/":
		d.status(w, r)
	case "/update/features":
		d.featuresHandler(w, r)
	case "/update/root":
		d.write(w, r, RootSize, func(b []byte) { d.roots[d.inactive] = overlay(d.roots[d.inactive], b) })
	case "/update/boot":
		d.write(w, r, BootSize, func(b []byte) { d.boot = overlay(d.boot, b) })
	case "/update/mbr":
		d.write(w, r, 0, func(b []byte) { d.disk = overlay(d.disk, b) })
	case "/update/switch":
		d.switchRoot(w, r)
	case "/reboot":
		d.reboot(w, r)
	default:
		http.Error(w, "not found", http.StatusNotFound)
	}
}

// dropWhileDown closes the connection of a request that arrives while the
// device reboots, or after it booted a partition without an image.
func (d *Device) dropWhileDown(w http.ResponseWriter) bool {
	d.mu.Lock()
	if d.up > 0 {
		d.up--
		d.mu.Unlock()
		return false
	}
	drop := d.dead || d.down > 0
	if d.down > 0 {
		d.down--
		if d.down == 0 {
			d.bootRoot()
		}
	}
	d.mu.Unlock()
	if !drop {
		return false
	}
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		conn.Close()
	}
	return true
}

// bootRoot boots the partition the boot config points at. d.mu is held.
func (d *Device) bootRoot() {
	d.running = d.nextRoot
	d.inactive = 5 - d.running // 2 ↔ 3
	if _, ok := imageTimestamp(d.roots[d.running]); !ok {
		d.dead = true
	}
}

// authenticated is gokrazy's authenticated().
func (d *Device) authenticated(w http.ResponseWriter, r *http.Request) bool {
	if d.password == "" {
		if _, ok := r.Context().Value(http.LocalAddrContextKey).(*net.UnixAddr); ok {
			return true
		}
		http.Error(w, "httpPassword not set and request from unexpected address", http.StatusInternalServerError)
		return false
	}
	kind, encoded, found := strings.Cut(r.Header.Get("Authorization"), " ")
	if !found || kind != "Basic" {
		w.Header().Set("WWW-Authenticate", `Basic realm="gokrazy"`)
		http.Error(w, "no Basic Authorization header set", http.StatusUnauthorized)
		return false
	}
	b, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Basic realm="gokrazy"`)
		http.Error(w, fmt.Sprintf("could not decode Authorization header as base64: %v", err), http.StatusUnauthorized)
		return false
	}
	user, pw, found := strings.Cut(string(b), ":")
	if !found || user != "gokrazy" || pw != d.password {
		w.Header().Set("WWW-Authenticate", `Basic realm="gokrazy"`)
		http.Error(w, "invalid username/password", http.StatusUnauthorized)
		return false
	}
	return true
}

func jsonRequested(r *http.Request) bool {
	return strings.Contains(strings.ToLower(r.Header.Get("Accept")), "application/json") ||
		strings.Contains(strings.ToLower(r.Header.Get("Content-type")), "application/json")
}

func (d *Device) status(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	ts, _ := imageTimestamp(d.roots[d.running])
	d.mu.Unlock()
	if !jsonRequested(r) {
		fmt.Fprintf(w, "<html><body>gokrazy build %s</body></html>\n", ts)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	model := d.model
	json.NewEncoder(w).Encode(struct {
		Services       []string
		BuildTimestamp string
		Hostname       string
		Model          string
	}{Services: []string{}, BuildTimestamp: ts, Hostname: "otatest", Model: model})
}

func (d *Device) featuresHandler(w http.ResponseWriter, r *http.Request) {
	if !jsonRequested(r) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, d.features)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		Features string      `json:"features"`
		EEPROM   interface{} `json:"EEPROM"`
	}{Features: d.features})
}

// write is gokrazy's nonConcurrentLimitedUpdateHandler: it streams the
// body over the start of a partition of limit bytes (0: the whole disk).
// store runs with d.mu held.
func (d *Device) write(w http.ResponseWriter, r *http.Request, limit int, store func([]byte)) {
	if r.Method != http.MethodPut {
		http.Error(w, "expected a PUT request", http.StatusBadRequest)
		return
	}
	var h hash.Hash = sha256.New()
	if r.Header.Get("X-Gokrazy-Update-Hash") == "crc32" {
		h = crc32.NewIEEE()
	}
	var body bytes.Buffer
	if _, err := io.Copy(io.MultiWriter(&body, h), r.Body); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if limit > 0 && body.Len() > limit {
		http.Error(w, "write /dev/sda: no space left on device", http.StatusInternalServerError)
		return
	}
	d.mu.Lock()
	store(body.Bytes())
	d.mu.Unlock()
	fmt.Fprintf(w, "%x", h.Sum(nil))
}

// overlay writes src over the start of dst, as writing to a block device
// without truncating does.
func overlay(dst, src []byte) []byte {
	if len(src) > len(dst) {
		dst = append(dst, make([]byte, len(src)-len(dst))...)
	}
	out := bytes.Clone(dst)
	copy(out, src)
	return out
}

func (d *Device) switchRoot(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "expected a POST request", http.StatusBadRequest)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.switchErr != "" {
		http.Error(w, d.switchErr, http.StatusInternalServerError)
		return
	}
	d.nextRoot = d.inactive
}

func (d *Device) reboot(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "expected a POST request", http.StatusBadRequest)
		return
	}
	wait := r.FormValue("wait_per_signal")
	if wait != "" {
		if _, err := time.ParseDuration(wait); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	rb := Reboot{Kexec: r.FormValue("kexec") != "off", Async: r.FormValue("async") == "true", WaitPerSignal: wait}
	if !rb.Async {
		fmt.Fprintf(w, "All services killed in %s\n", time.Duration(0))
	}
	io.WriteString(w, "Rebooting...\n")
	d.mu.Lock()
	d.reboots = append(d.reboots, rb)
	d.up, d.down = d.upFor, d.downFor
	d.mu.Unlock()
}

// FailSwitch makes /update/switch answer 500 with msg, as gokrazy does
// when it cannot find cmdline.txt on the boot partition; "" undoes it.
func (d *Device) FailSwitch(msg string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.switchErr = msg
}

// Root returns the content of root partition n (2 or 3).
func (d *Device) Root(n int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return bytes.Clone(d.roots[n])
}

// Boot returns the content of the boot partition.
func (d *Device) Boot() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return bytes.Clone(d.boot)
}

// DiskStart returns the first bytes of the disk, where the MBR is.
func (d *Device) DiskStart() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return bytes.Clone(d.disk)
}

// ActiveRoot returns the root partition running now.
func (d *Device) ActiveRoot() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.running
}

// NextRoot returns the root partition the next boot will run.
func (d *Device) NextRoot() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.nextRoot
}

// Reboots returns the reboot requests received.
func (d *Device) Reboots() []Reboot {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Reboot(nil), d.reboots...)
}

// Requests returns the authenticated requests received, as "METHOD /path".
func (d *Device) Requests() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.requests...)
}

// Dead reports whether the device booted a partition without an image and
// will not answer again.
func (d *Device) Dead() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dead
}
