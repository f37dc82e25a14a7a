package ota

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/psigate/psigate/gokrazy/ota/otatest"
)

const password = "s3cret"

func newDevice(t *testing.T) *otatest.Device {
	d := otatest.New(otatest.Config{Password: password, BuildTimestamp: "old"})
	t.Cleanup(d.Close)
	return d
}

// waitForBuild polls BuildTimestamp while the device reboots.
func waitForBuild(t *testing.T, c *Client, want string) {
	t.Helper()
	var last string
	var err error
	for range 20 {
		last, err = c.BuildTimestamp(t.Context())
		if err == nil && last == want {
			return
		}
	}
	t.Fatalf("BuildTimestamp = %q, %v; want %q", last, err, want)
}

func TestUpdateFlow(t *testing.T) {
	d := newDevice(t)
	c := New(d.URL, password)
	ctx := t.Context()
	if ts, err := c.BuildTimestamp(ctx); err != nil || ts != "old" {
		t.Fatalf("BuildTimestamp = %q, %v; want old", ts, err)
	}
	root := otatest.RootImage("new", 10000)
	boot := bytes.Repeat([]byte("boot"), 1000)
	mbr := bytes.Repeat([]byte{0xeb}, MaxMBRSize)
	if err := c.PutRoot(ctx, bytes.NewReader(root)); err != nil {
		t.Fatal(err)
	}
	if err := c.PutBoot(ctx, bytes.NewReader(boot)); err != nil {
		t.Fatal(err)
	}
	if err := c.PutMBR(ctx, bytes.NewReader(mbr)); err != nil {
		t.Fatal(err)
	}
	if err := c.Switch(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Reboot(ctx); err != nil {
		t.Fatal(err)
	}
	waitForBuild(t, c, "new")

	if !bytes.Equal(d.Root(3), root) || !bytes.Equal(d.Boot(), boot) || !bytes.Equal(d.DiskStart()[:MaxMBRSize], mbr) {
		t.Error("the device's partitions do not hold what was sent")
	}
	if d.ActiveRoot() != 3 {
		t.Errorf("running root partition %d, want 3", d.ActiveRoot())
	}
	if got := d.Reboots(); len(got) != 1 || !got[0].Kexec || !got[0].Async {
		t.Errorf("reboots = %+v, want one async with kexec", got)
	}
}

func TestFeatures(t *testing.T) {
	f, err := New(newDevice(t).URL, password).Features(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if f != "partuuid,updatehash,gpt," || !HasFeature(f, "updatehash") || HasFeature(f, "update") {
		t.Errorf("Features = %q", f)
	}
	mbr := otatest.New(otatest.Config{Password: password, MBROnly: true})
	defer mbr.Close()
	if f, _ := New(mbr.URL, password).Features(t.Context()); HasFeature(f, "gpt") || !HasFeature(f, "partuuid") {
		t.Errorf("MBR-only device: Features = %q", f)
	}
}

func TestWrongPassword(t *testing.T) {
	d := newDevice(t)
	_, err := New(d.URL, "guess").Features(t.Context())
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Features = %v, want ErrUnauthorized", err)
	}
	for _, want := range []string{"wrong gokrazy password", "401", "invalid username/password", d.URL} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if err := New(d.URL, "guess").PutRoot(t.Context(), strings.NewReader("x")); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("PutRoot = %v, want ErrUnauthorized", err)
	}
	if len(d.Root(3)) != 0 {
		t.Error("the device wrote a root image without the password")
	}
}

func TestDeviceError(t *testing.T) {
	d := newDevice(t)
	d.FailSwitch(`"/cmdline.txt" not found`)
	err := New(d.URL, password).Switch(t.Context())
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusInternalServerError {
		t.Fatalf("Switch = %v, want a 500 StatusError", err)
	}
	if !strings.Contains(err.Error(), `POST /update/switch: device answered 500 Internal Server Error: "/cmdline.txt" not found`) {
		t.Errorf("error %q lacks the request, status or the device's text", err)
	}
	if d.NextRoot() != 2 {
		t.Error("a failed switch changed the root partition")
	}
}

// TestDigestMismatch puts a middlebox that changes one byte between the
// client and the device: the device's digest gives it away.
func TestDigestMismatch(t *testing.T) {
	d := newDevice(t)
	target, _ := url.Parse(d.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	mangle := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if len(b) > 0 {
			b[len(b)/2] ^= 1
		}
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		proxy.ServeHTTP(w, r)
	}))
	defer mangle.Close()

	err := New(mangle.URL, password).PutRoot(t.Context(), bytes.NewReader(otatest.RootImage("new", 5000)))
	if !errors.Is(err, ErrDigest) || !strings.Contains(err.Error(), "sent 5000 bytes") {
		t.Fatalf("PutRoot through a corrupting proxy = %v, want ErrDigest", err)
	}
	if err := New(d.URL, password).PutRoot(t.Context(), bytes.NewReader(otatest.RootImage("new", 5000))); err != nil {
		t.Errorf("PutRoot directly: %v", err)
	}
}

func TestRebootOptions(t *testing.T) {
	d := newDevice(t)
	if err := New(d.URL, password).Reboot(t.Context(), WithoutKexec(), WaitPerSignal(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	want := otatest.Reboot{Kexec: false, Async: true, WaitPerSignal: "10s"}
	if got := d.Reboots(); len(got) != 1 || got[0] != want {
		t.Errorf("reboots = %+v, want [%+v]", got, want)
	}
}

func TestPutMBRRefusesMoreThan446Bytes(t *testing.T) {
	d := newDevice(t)
	err := New(d.URL, password).PutMBR(t.Context(), bytes.NewReader(make([]byte, MaxMBRSize+1)))
	if err == nil || !strings.Contains(err.Error(), "at most 446 bytes") {
		t.Fatalf("PutMBR(447 bytes) = %v", err)
	}
	if len(d.Requests()) != 0 {
		t.Errorf("the device got %v", d.Requests())
	}
}

func TestSwitchTwiceChangesNothing(t *testing.T) {
	d := newDevice(t)
	c := New(d.URL, password)
	for range 2 {
		if err := c.Switch(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if d.NextRoot() != 3 {
		t.Errorf("next root = %d after two switches from 2, want 3", d.NextRoot())
	}
}

func TestUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "gokrazy-http.sock")
	d, err := otatest.NewUnix(otatest.Config{BuildTimestamp: "old"}, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if ts, err := NewUnix(sock, "").BuildTimestamp(t.Context()); err != nil || ts != "old" {
		t.Errorf("over the unix socket without a password: %q, %v", ts, err)
	}

	// Without a password, gokrazy serves nothing over TCP.
	tcp := otatest.New(otatest.Config{})
	defer tcp.Close()
	if _, err := New(tcp.URL, "").Features(t.Context()); err == nil || !strings.Contains(err.Error(), "httpPassword not set") {
		t.Errorf("over TCP without a password: %v", err)
	}
}

func TestNewAddsScheme(t *testing.T) {
	d := newDevice(t)
	if _, err := New(strings.TrimPrefix(d.URL, "http://")+"/", password).Features(t.Context()); err != nil {
		t.Error(err)
	}
}

func TestReadPassword(t *testing.T) {
	for _, tc := range []struct {
		name      string
		etc, perm string // "" means no file
		want      string
	}{
		{name: "built without a password", perm: "ignored", want: ""},
		{name: "etc", etc: "pw1\n", want: "pw1"},
		{name: "perm overrides etc", etc: "pw1\n", perm: "  pw2 \n", want: "pw2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir() + "/"
			for dir, content := range map[string]string{"etc": tc.etc, "perm": tc.perm} {
				if content == "" {
					continue
				}
				os.MkdirAll(root+dir, 0o755)
				if err := os.WriteFile(root+dir+"/gokr-pw.txt", []byte(content), 0o400); err != nil {
					t.Fatal(err)
				}
			}
			got, err := readPassword(root)
			if err != nil || got != tc.want {
				t.Errorf("readPassword = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestContextCancel(t *testing.T) {
	d := newDevice(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := New(d.URL, password).Switch(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Switch with a cancelled context = %v", err)
	}
}
