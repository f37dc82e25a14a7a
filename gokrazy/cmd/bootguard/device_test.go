package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/psigate/psigate/gokrazy/ota/otatest"
)

// TestGokrazyDevice rolls back against a fake gokrazy on a unix socket,
// as bootguard does on the box (no password: unix socket only).
func TestGokrazyDevice(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "gokrazy-http.sock")
	fake, err := otatest.NewUnix(otatest.Config{ActiveRoot: 3, BuildTimestamp: "new"}, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	d := &gokrazyDevice{socket: sock, password: func() (string, error) { return "", nil }}
	if err := d.Switch(t.Context()); err != nil {
		t.Fatal(err)
	}
	if fake.NextRoot() != 2 {
		t.Errorf("next root = %d after switching back from 3, want 2", fake.NextRoot())
	}
	if err := d.Reboot(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Synchronous: gokrazy stops the services and unmounts /perm first.
	if got := fake.Reboots(); len(got) != 1 || got[0].Kexec || got[0].Async || got[0].WaitPerSignal != "15s" {
		t.Errorf("reboots = %+v, want one synchronous, without kexec, 15s per signal", got)
	}

	noPassword := errors.New("open /etc/gokr-pw.txt: permission denied")
	d.password = func() (string, error) { return "", noPassword }
	if err := d.Switch(t.Context()); !errors.Is(err, noPassword) {
		t.Errorf("Switch without a readable password = %v", err)
	}
}

func TestHTTPHealth(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusOK)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
	}))
	h := newHTTPHealth(srv.URL + "/healthz")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := h.Check(ctx); err != nil {
		t.Errorf("200 from a self-signed server: %v", err)
	}
	status.Store(http.StatusServiceUnavailable)
	if err := h.Check(ctx); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("503: %v", err)
	}
	srv.Close()
	if err := h.Check(ctx); err == nil {
		t.Error("a closed server is healthy")
	}
}
