package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// api is the appliance's /api/v1, as a script uses it: a bearer token,
// no cookies, no CSRF token (docs/api.md).
type api struct {
	base  string // "https://127.0.0.1:8443"
	http  *http.Client
	token string

	mu   sync.Mutex
	cert *x509.Certificate // the portal's, pinned at first contact
}

// newAPI talks to the portal at url. The portal's certificate is
// self-signed: the first one presented is trusted, and later
// connections must present the same.
func newAPI(url string) *api {
	a := &api{base: strings.TrimSuffix(url, "/")}
	a.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // checked in VerifyConnection instead
		VerifyConnection:   a.pin,
	}}}
	return a
}

func (a *api) pin(cs tls.ConnectionState) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	got := cs.PeerCertificates[0]
	if a.cert == nil {
		a.cert = got
		return nil
	}
	if !a.cert.Equal(got) {
		return errors.New("the portal presented another certificate than at first contact")
	}
	return nil
}

// certificate is the portal's certificate (the appliance's self-signed
// one, also presented by its SIP TLS listener).
func (a *api) certificate() *x509.Certificate {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cert
}

// close ends the idle connections to the portal.
func (a *api) close() { a.http.CloseIdleConnections() }

// do sends a request with body as JSON (nil: none) and decodes the
// answer into out (nil: ignored). Any status but want is an error that
// carries the API's error message.
func (a *api) do(ctx context.Context, method, path string, body, out any, want int) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+"/api/v1"+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, bytes.TrimSpace(data))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: %w: %s", method, path, err, data)
		}
	}
	return nil
}

// setup sets the admin password on first boot and logs in with it.
func (a *api) setup(ctx context.Context, password string) error {
	if err := a.do(ctx, "POST", "/setup", map[string]string{"password": password}, nil, http.StatusCreated); err != nil {
		return fmt.Errorf("setting the admin password: %w", err)
	}
	var login struct {
		Token string `json:"token"`
	}
	if err := a.do(ctx, "POST", "/session", map[string]string{"username": "admin", "password": password}, &login, http.StatusOK); err != nil {
		return fmt.Errorf("logging in: %w", err)
	}
	a.token = login.Token
	return nil
}
