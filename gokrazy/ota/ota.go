// Package ota is a client of gokrazy's device-side update protocol, the
// HTTP endpoints a gokrazy init serves (gokrazy/update.go): it writes
// images to the boot partition, the inactive root partition and the MBR,
// switches the root partition and reboots.
//
// Every endpoint sits behind HTTP basic auth, user "gokrazy" and the
// password from gokr-pw.txt. Over the local unix socket a box built
// without a password takes requests without auth.
package ota

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// SocketPath is where gokrazy's HTTP server listens for local processes
// (root only: the socket is mode 0600).
const SocketPath = "/run/gokrazy-http.sock"

// User is the basic auth user of gokrazy's HTTP server.
const User = "gokrazy"

// MaxMBRSize is the most PutMBR sends: gokrazy writes /update/mbr at offset
// 0 of the whole disk, so anything longer would overwrite the partition
// table.
const MaxMBRSize = 446

// Errors.
var (
	// ErrUnauthorized: the device refused the password (HTTP 401).
	ErrUnauthorized = errors.New("wrong gokrazy password")
	// ErrDigest: the device's digest of what it wrote differs from what
	// was sent.
	ErrDigest = errors.New("the device wrote other bytes than were sent")
)

// StatusError is a non-2xx answer of the device.
type StatusError struct {
	Device string // e.g. "http://192.168.1.20:8080"
	Method string // e.g. "PUT"
	Path   string // e.g. "/update/root"
	Code   int    // e.g. 500
	Body   string // the device's answer, trimmed and cut to 1 KiB
}

func (e *StatusError) Error() string {
	if e.Code == http.StatusUnauthorized {
		return fmt.Sprintf("gokrazy %s: %s %s: %v (%d: %s)", e.Device, e.Method, e.Path, ErrUnauthorized, e.Code, e.Body)
	}
	return fmt.Sprintf("gokrazy %s: %s %s: device answered %d %s: %s", e.Device, e.Method, e.Path, e.Code, http.StatusText(e.Code), e.Body)
}

// Is makes a 401 match ErrUnauthorized.
func (e *StatusError) Is(target error) bool {
	return target == ErrUnauthorized && e.Code == http.StatusUnauthorized
}

// Client talks to one gokrazy device.
type Client struct {
	base     string // e.g. "http://192.168.1.20:8080"
	name     string // for messages, e.g. "http://192.168.1.20:8080" or "unix /run/gokrazy-http.sock"
	password string
	http     *http.Client
}

// New returns a client of the device at baseURL, e.g.
// "http://192.168.1.20:8080" ("192.168.1.20:8080" means the same).
func New(baseURL, password string) *Client {
	if !strings.Contains(baseURL, "://") {
		baseURL = "http://" + baseURL
	}
	baseURL = strings.TrimSuffix(baseURL, "/")
	return &Client{base: baseURL, name: baseURL, password: password, http: newHTTPClient(nil)}
}

// Local returns a client of the device it runs on, over gokrazy's unix
// socket. Only root can use it.
func Local(password string) *Client {
	return NewUnix(SocketPath, password)
}

// NewUnix returns a client of a gokrazy HTTP server on the unix socket at
// path.
func NewUnix(path, password string) *Client {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
	return &Client{base: "http://gokrazy", name: "unix " + path, password: password, http: newHTTPClient(dial)}
}

// newHTTPClient returns a client that does not follow redirects: a gokrazy
// with TLS redirects plain HTTP to https, and a PUT must not be replayed
// without its body.
func newHTTPClient(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if dial != nil {
		tr.DialContext = dial
		tr.Proxy = nil
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// ReadPassword reads the gokrazy password the way the gokrazy init does:
// a box whose root file system has no /etc/gokr-pw.txt was built without a
// password (""); otherwise /perm/gokr-pw.txt overrides /etc/gokr-pw.txt.
// The password is trimmed.
func ReadPassword() (string, error) {
	return readPassword("/")
}

func readPassword(root string) (string, error) {
	etc := root + "etc/gokr-pw.txt"
	if _, err := os.Stat(etc); errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	b, err := os.ReadFile(root + "perm/gokr-pw.txt")
	if err != nil {
		b, err = os.ReadFile(etc)
	}
	if err != nil {
		return "", fmt.Errorf("reading the gokrazy password: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Features returns the device's update features, e.g.
// "partuuid,updatehash,gpt,".
func (c *Client) Features(ctx context.Context) (string, error) {
	b, err := c.call(ctx, http.MethodGet, "/update/features", nil, "", 4<<10)
	return string(b), err
}

// HasFeature reports whether a Features answer lists feature.
func HasFeature(features, feature string) bool {
	for _, f := range strings.Split(features, ",") {
		if strings.TrimSpace(f) == feature {
			return true
		}
	}
	return false
}

// PutRoot writes a root file system image to the inactive root partition.
func (c *Client) PutRoot(ctx context.Context, r io.Reader) error {
	return c.put(ctx, "/update/root", r)
}

// PutBoot writes a boot file system image to the boot partition.
func (c *Client) PutBoot(ctx context.Context, r io.Reader) error {
	return c.put(ctx, "/update/boot", r)
}

// PutMBR writes an MBR (boot code and disk signature, 446 bytes) to the
// start of the disk. It refuses more than MaxMBRSize bytes before sending
// anything.
func (c *Client) PutMBR(ctx context.Context, r io.Reader) error {
	b, err := io.ReadAll(io.LimitReader(r, MaxMBRSize+1))
	if err != nil {
		return fmt.Errorf("reading the MBR: %w", err)
	}
	if len(b) > MaxMBRSize {
		return fmt.Errorf("refusing to write more than %d bytes to the start of the disk of %s: an MBR update is at most %d bytes", MaxMBRSize, c.name, MaxMBRSize)
	}
	return c.put(ctx, "/update/mbr", bytes.NewReader(b))
}

// put streams r to path and checks the device's SHA-256 of what it wrote
// (gokrazy answers with the hex digest after it synced the partition).
func (c *Client) put(ctx context.Context, path string, r io.Reader) error {
	hr := &hashingReader{r: r, h: sha256.New()}
	b, err := c.call(ctx, http.MethodPut, path, hr, "", 4<<10)
	if err != nil {
		return err
	}
	sent, n := hr.sum()
	if got := strings.TrimSpace(string(b)); got != sent {
		return fmt.Errorf("gokrazy %s: PUT %s: %w: sent %d bytes with sha256 %s, the device reports %q", c.name, path, ErrDigest, n, sent, got)
	}
	return nil
}

// Switch makes the inactive root partition (the one PutRoot wrote) the one
// to boot next. gokrazy picks the inactive partition when it boots, so
// calling Switch again before a reboot changes nothing.
func (c *Client) Switch(ctx context.Context) error {
	_, err := c.call(ctx, http.MethodPost, "/update/switch", nil, "", 4<<10)
	return err
}

// RebootOption changes how Reboot reboots.
type RebootOption func(q url.Values)

// WithoutKexec makes the device reset through its firmware instead of
// kexec-ing the kernel on the boot partition (which gokrazy does on amd64).
func WithoutKexec() RebootOption {
	return func(q url.Values) { q.Set("kexec", "off") }
}

// WaitPerSignal sets how long the device waits for its services after each
// signal (SIGTERM, then SIGKILL) before it reboots; gokrazy's default is
// 100 s.
func WaitPerSignal(d time.Duration) RebootOption {
	return func(q url.Values) { q.Set("wait_per_signal", d.String()) }
}

// Synchronous makes gokrazy stop every service and unmount /perm before
// it answers and reboots. Without it, gokrazy answers at once and resets
// the machine a second later whether or not the services have stopped
// and /perm is written back: right for a host pushing an update, wrong
// for a program on the box whose own state must reach the disk. A
// program on the box that asks for it is stopped itself meanwhile, so
// the answer may never reach it.
func Synchronous() RebootOption {
	return func(q url.Values) { q.Del("async") }
}

// Reboot asks the device to stop its services and reboot. The device
// answers at once (async=true) and reboots in the background.
func (c *Client) Reboot(ctx context.Context, opts ...RebootOption) error {
	q := url.Values{"async": {"true"}}
	for _, o := range opts {
		o(q)
	}
	_, err := c.call(ctx, http.MethodPost, "/reboot?"+q.Encode(), nil, "", 4<<10)
	return err
}

// BuildTimestamp returns the BuildTimestamp of the running image, which
// changes when the device has booted a new one.
func (c *Client) BuildTimestamp(ctx context.Context) (string, error) {
	s, err := c.Status(ctx)
	return s.BuildTimestamp, err
}

// Status is what gokrazy's status page says about the device.
type Status struct {
	BuildTimestamp string // the running init's build
	Model          string // e.g. "Raspberry Pi 4 Model B Rev 1.4" or "QEMU"
}

// Status reads the device's status (GET / as JSON).
func (c *Client) Status(ctx context.Context) (Status, error) {
	// The status answer lists every service; 16 MiB is far more than it is.
	b, err := c.call(ctx, http.MethodGet, "/", nil, "application/json", 16<<20)
	if err != nil {
		return Status{}, err
	}
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return Status{}, fmt.Errorf("gokrazy %s: GET /: %w", c.name, err)
	}
	return s, nil
}

// Target is the kind of box a model is, as update bundles name it: "rpi"
// for a Raspberry Pi, else "amd64" (psigate's other target).
func (s Status) Target() string {
	if strings.HasPrefix(s.Model, "Raspberry Pi") {
		return "rpi"
	}
	return "amd64"
}

// call sends a request and returns the body of a 2xx answer, at most limit
// bytes.
func (c *Client) call(ctx context.Context, method, path string, body io.Reader, accept string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("gokrazy %s: %s %s: %w", c.name, method, path, err)
	}
	if c.password != "" {
		req.SetBasicAuth(User, c.password)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("gokrazy %s: %s %s: %w", c.name, method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("gokrazy %s: %s %s: reading the answer: %w", c.name, method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, statusError(c.name, method, path, resp, b)
	}
	return b, nil
}

func statusError(device, method, path string, resp *http.Response, body []byte) error {
	text := strings.TrimSpace(string(body))
	if len(text) > 1024 {
		text = text[:1024] + "…"
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		text = "redirects to " + loc
	}
	return &StatusError{Device: device, Method: method, Path: path, Code: resp.StatusCode, Body: text}
}

// hashingReader hashes what the HTTP transport reads. The transport reads
// in its own goroutine, hence the lock.
type hashingReader struct {
	r  io.Reader
	mu sync.Mutex
	h  hash.Hash
	n  int64
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.mu.Lock()
	h.h.Write(p[:n])
	h.n += int64(n)
	h.mu.Unlock()
	return n, err
}

func (h *hashingReader) sum() (string, int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return hex.EncodeToString(h.h.Sum(nil)), h.n
}
