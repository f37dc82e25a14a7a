package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"time"

	"github.com/psigate/psigate/gokrazy/ota"
)

// httpHealth checks the appliance's health URL.
type httpHealth struct {
	url    string // e.g. "https://127.0.0.1:443/healthz"
	client *http.Client
}

func newHTTPHealth(url string) *httpHealth {
	return &httpHealth{url: url, client: &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			// Loopback to the appliance's own self-signed certificate:
			// there is nothing to verify it against.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
			// A fresh connection per check, so a restarted appliance is
			// seen as it is now.
			DisableKeepAlives: true,
		},
	}}
}

// Check is healthy (nil) on a 200 answer.
func (h *httpHealth) Check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", h.url, resp.Status)
	}
	return nil
}

// gokrazyDevice is the box's own gokrazy, over its unix socket.
type gokrazyDevice struct {
	socket   string                 // e.g. ota.SocketPath
	password func() (string, error) // e.g. ota.ReadPassword
}

// client reads the password each time: it is only needed for a rollback,
// and a missing one at start must not matter until then.
func (d *gokrazyDevice) client() (*ota.Client, error) {
	pw, err := d.password()
	if err != nil {
		return nil, err
	}
	return ota.NewUnix(d.socket, pw), nil
}

func (d *gokrazyDevice) Switch(ctx context.Context) error {
	c, err := d.client()
	if err != nil {
		return err
	}
	return c.Switch(ctx)
}

// Reboot reboots without kexec; see the package comment for why.
func (d *gokrazyDevice) Reboot(ctx context.Context) error {
	c, err := d.client()
	if err != nil {
		return err
	}
	return c.Reboot(ctx, ota.WithoutKexec(), ota.Synchronous(), ota.WaitPerSignal(15*time.Second))
}

// realClock is the system clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
