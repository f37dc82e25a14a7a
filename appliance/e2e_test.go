package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/psigate/psigate/appliance/store"
	"github.com/psigate/psigate/sbc/b2bua"
)

// buildAppliance compiles this program once per test binary run.
func buildAppliance(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "appliance")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// appliance is a running appliance process.
type appliance struct {
	cmd    *exec.Cmd
	url    string
	stderr *bytes.Buffer
	done   chan error
}

// start runs the binary on a free loopback port, with more flags if
// given, and waits for the URL it prints.
func start(t *testing.T, bin, data string, flags ...string) *appliance {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-data", data, "-http", "127.0.0.1:0", "-drain", "5s"}, flags...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	a := &appliance{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = a.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "psigate: admin portal at "); ok {
				lines <- u
			}
		}
	}()
	go func() { a.done <- cmd.Wait() }()
	select {
	case a.url = <-lines:
	case err := <-a.done:
		t.Fatalf("appliance exited before serving: %v\n%s", err, a.stderr)
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("appliance printed no portal URL within 30s\n%s", a.stderr)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-a.done
		}
	})
	return a
}

// stop sends SIGTERM and returns the exit error (nil for status 0).
func (a *appliance) stop(t *testing.T) error {
	t.Helper()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-a.done:
		return err
	case <-time.After(30 * time.Second):
		a.cmd.Process.Kill()
		t.Fatalf("no exit within 30s of SIGTERM\n%s", a.stderr)
		return nil
	}
}

// client talks to the appliance like a browser: cookies, CSRF header.
type client struct {
	t    *testing.T
	http *http.Client
	base string
	csrf string
	cert *x509.Certificate // what the portal presented
}

func newClient(t *testing.T, base string) *client {
	jar, _ := cookiejar.New(nil)
	c := &client{t: t, base: strings.TrimSuffix(base, "/"), http: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
	c.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{
		// The certificate is self-signed; it is checked below against
		// the one stored on first boot instead.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			c.cert = cs.PeerCertificates[0]
			return nil
		},
	}}
	c.http.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

// do sends a request with a JSON body and decodes a JSON answer into out
// (if not nil); it returns the status code.
func (c *client) do(method, path string, body any, out any, header ...string) int {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.csrf != "" {
		req.Header.Set("X-CSRF-Token", c.csrf)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			c.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

func expect(t *testing.T, what string, got, want int) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: status %d, want %d", what, got, want)
	}
}

type revision struct {
	Number uint64 `json:"number"`
	Kind   string `json:"kind"`
	From   uint64 `json:"from"`
}

// TestEndToEnd runs the real binary: first-boot setup over HTTPS, login,
// a candidate change, apply, rollback, refusals of the default password
// and a wrong CSRF token, a clean SIGTERM shutdown and a restart.
func TestEndToEnd(t *testing.T) {
	bin := buildAppliance(t)
	data := t.TempDir()
	a := start(t, bin, data)
	c := newClient(t, a.url)

	var health map[string]string
	expect(t, "healthz", c.do("GET", "/healthz", nil, &health), 200)
	expect(t, "status before setup", c.do("GET", "/api/v1/status", nil, nil), 403)
	expect(t, "login before setup", c.do("POST", "/api/v1/session", map[string]string{"username": "admin", "password": "Asd123!."}, nil), 403)
	var apiErr struct {
		Error  string `json:"error"`
		Fields []struct{ Path, Message string }
	}
	expect(t, "setup with the seed's default", c.do("POST", "/api/v1/setup", map[string]string{"password": "Asd123!."}, &apiErr), 422)
	if !strings.Contains(apiErr.Error, "well-known default") {
		t.Errorf("refusal says %q", apiErr.Error)
	}
	const password = "e2e: a long passphrase"
	expect(t, "setup", c.do("POST", "/api/v1/setup", map[string]string{"password": password}, nil), 201)
	expect(t, "second setup", c.do("POST", "/api/v1/setup", map[string]string{"password": "another long one"}, nil), 409)
	expect(t, "login with the seed's default", c.do("POST", "/api/v1/session", map[string]string{"username": "admin", "password": "Asd123!."}, nil), 401)

	var login struct{ Token, CSRFToken string }
	expect(t, "login", c.do("POST", "/api/v1/session", map[string]string{"username": "admin", "password": password}, &login), 200)
	if login.Token == "" || login.CSRFToken == "" {
		t.Fatalf("login answer %+v", login)
	}

	// The cookie session needs the CSRF token for changes.
	var cand map[string]any
	expect(t, "get candidate", c.do("GET", "/api/v1/config/candidate", nil, &cand), 200)
	cand["system"].(map[string]any)["hostname"] = "edge-e2e"
	c.csrf = "wrong-token"
	expect(t, "put with wrong CSRF token", c.do("PUT", "/api/v1/config/candidate", cand, nil), 403)
	c.csrf = ""
	expect(t, "put without CSRF token", c.do("PUT", "/api/v1/config/candidate", cand, nil), 403)
	var check map[string]any
	c.do("GET", "/api/v1/config/candidate", nil, &check)
	if h := check["system"].(map[string]any)["hostname"]; h != "psigate" {
		t.Fatalf("refused PUT changed the candidate: hostname %v", h)
	}
	c.csrf = login.CSRFToken
	expect(t, "put candidate", c.do("PUT", "/api/v1/config/candidate", cand, nil), 200)

	var running struct {
		Revision revision       `json:"revision"`
		Config   map[string]any `json:"config"`
	}
	c.do("GET", "/api/v1/config/running", nil, &running)
	if running.Revision.Number != 1 || running.Config["system"].(map[string]any)["hostname"] != "psigate" {
		t.Fatalf("running changed before apply: %+v", running.Revision)
	}
	var applied struct{ Revision revision }
	expect(t, "apply", c.do("POST", "/api/v1/config/apply", map[string]any{"comment": "e2e rename", "confirmMinutes": 0}, &applied), 200)
	c.do("GET", "/api/v1/config/running", nil, &running)
	if running.Revision.Number != 2 || running.Config["system"].(map[string]any)["hostname"] != "edge-e2e" {
		t.Fatalf("after apply running = %+v %v", running.Revision, running.Config["system"])
	}
	var diff struct {
		Changes []struct{ Path, Old, New string }
	}
	expect(t, "diff", c.do("GET", "/api/v1/config/diff?from=1&to=2", nil, &diff), 200)
	if len(diff.Changes) != 1 || diff.Changes[0].Path != "system.hostname" || diff.Changes[0].New != `"edge-e2e"` {
		t.Fatalf("diff = %+v", diff.Changes)
	}

	// Bearer authentication needs no CSRF token.
	bearer := newClient(t, a.url)
	var rolled struct{ Revision revision }
	expect(t, "rollback", bearer.do("POST", "/api/v1/config/rollback", map[string]any{"revision": 1}, &rolled, "Authorization", "Bearer "+login.Token), 200)
	if rolled.Revision.Number != 3 || rolled.Revision.From != 1 || rolled.Revision.Kind != "rollback" {
		t.Fatalf("rollback revision = %+v", rolled.Revision)
	}
	c.do("GET", "/api/v1/config/running", nil, &running)
	if running.Revision.Number != 3 || running.Config["system"].(map[string]any)["hostname"] != "psigate" {
		t.Fatalf("after rollback running = %+v %v", running.Revision, running.Config["system"])
	}
	var status struct {
		MachineID string `json:"machineID"`
	}
	expect(t, "status", c.do("GET", "/api/v1/status", nil, &status), 200)

	if err := a.stop(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, a.stderr)
	}
	checkStoreAfterStop(t, data, status.MachineID, c.cert)

	addCallRecords(t, data)

	// A restart keeps the identity and the password.
	a = start(t, bin, data)
	c2 := newClient(t, a.url)
	expect(t, "setup after restart", c2.do("POST", "/api/v1/setup", map[string]string{"password": "yet another one"}, nil), 409)
	expect(t, "login after restart", c2.do("POST", "/api/v1/session", map[string]string{"username": "admin", "password": password}, &login), 200)
	expect(t, "status after restart", c2.do("GET", "/api/v1/status", nil, &status, "Authorization", "Bearer "+login.Token), 200)
	if status.MachineID == "" || c2.cert == nil || !c2.cert.Equal(c.cert) {
		t.Errorf("identity changed across restart")
	}
	checkCallHistory(t, c2, login.Token)
	if err := a.stop(t); err != nil {
		t.Fatalf("exit after second SIGTERM: %v", err)
	}
}

// checkStoreAfterStop opens the data file the stopped appliance left:
// it must be closed (lock released), private, consistent, and hold the
// identity whose certificate the portal presented.
func checkStoreAfterStop(t *testing.T, data, machineID string, presented *x509.Certificate) {
	t.Helper()
	fi, err := os.Stat(filepath.Join(data, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("data file mode %o", fi.Mode().Perm())
	}
	st, err := store.Open(data, store.Options{})
	if err != nil {
		t.Fatalf("store still locked or broken after shutdown: %v", err)
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		t.Fatal(err)
	}
	id, err := st.Identity(func() (store.Identity, error) { return store.Identity{}, errors.New("identity missing") })
	if err != nil {
		t.Fatal(err)
	}
	if id.MachineID != machineID {
		t.Errorf("machine id %q, status said %q", id.MachineID, machineID)
	}
	block, _ := pem.Decode([]byte(id.CertPEM))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.Equal(presented) {
		t.Error("the portal presented another certificate than the stored one")
	}
	if _, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("certificate key is %T, want ECDSA", cert.PublicKey)
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		t.Errorf("certificate is not self-signed: %v", err)
	}
	revs, _ := st.Revisions()
	if len(revs) != 3 {
		t.Errorf("%d revisions after the run, want 3", len(revs))
	}
}

// TestExitsNonZeroOnFailure: a portal address already in use is a failure
// gokrazy must see (and restart on), not a silent exit 0.
func TestExitsNonZeroOnFailure(t *testing.T) {
	bin := buildAppliance(t)
	a := start(t, bin, t.TempDir())
	addr := strings.TrimSuffix(strings.TrimPrefix(a.url, "https://"), "/")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-data", t.TempDir(), "-http", addr).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("second appliance on %s: %v, want exit status 1\n%s", addr, err, out)
	}
	if !strings.Contains(string(out), "address already in use") {
		t.Errorf("output does not say why:\n%s", out)
	}
	if err := a.stop(t); err != nil {
		t.Fatal(err)
	}
}

// addCallRecords stores the records of three calls that ended an hour
// ago and one of two days ago in the stopped appliance's data file.
func addCallRecords(t *testing.T, data string) {
	t.Helper()
	st, err := store.Open(data, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	hour, old := time.Now().Add(-time.Hour), time.Now().Add(-48*time.Hour)
	err = st.AddCallRecords([]b2bua.Record{
		{From: "sip:1001@pbx.example.com", To: "sip:old@pbx.example.com", Result: b2bua.Answered, Started: old, Ended: old},
		{From: "sip:1001@pbx.example.com", To: "sip:2002@pbx.example.com", Result: b2bua.Answered, Code: 200, Started: hour, Answered: hour, Ended: hour.Add(time.Minute)},
		{From: "sip:1001@pbx.example.com", To: "sip:2003@pbx.example.com", Result: b2bua.Refused, Code: 486, Reason: "486 Busy Here", Started: hour, Ended: hour},
		{From: "sip:3003@pbx.example.com", To: "sip:1001@pbx.example.com", ToClient: true, Result: b2bua.Cancelled, Code: 487, Started: hour, Ended: hour},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkCallHistory finds what addCallRecords stored in the API and the
// last day's counts on the dashboard.
func checkCallHistory(t *testing.T, c *client, token string) {
	t.Helper()
	var page struct {
		Calls []struct {
			ID        uint64  `json:"id"`
			To        string  `json:"to"`
			Direction string  `json:"direction"`
			Result    string  `json:"result"`
			DurationS float64 `json:"durationSeconds"`
		} `json:"calls"`
		Next uint64 `json:"next"`
	}
	auth := []string{"Authorization", "Bearer " + token}
	expect(t, "call history", c.do("GET", "/api/v1/sip/calls/history?limit=2", nil, &page, auth...), 200)
	if len(page.Calls) != 2 || page.Calls[0].Direction != "PBX to client" || page.Calls[1].Result != "refused" || page.Next != 3 {
		t.Fatalf("call history page 1: %+v", page)
	}
	page.Calls, page.Next = nil, 0
	expect(t, "older calls", c.do("GET", "/api/v1/sip/calls/history?limit=2&before=3", nil, &page, auth...), 200)
	if len(page.Calls) != 2 || page.Calls[0].DurationS != 60 || page.Calls[1].To != "sip:old@pbx.example.com" {
		t.Fatalf("call history page 2: %+v", page)
	}
	var status struct {
		Last24h map[string]int `json:"callsLast24h"`
	}
	expect(t, "status", c.do("GET", "/api/v1/status", nil, &status, auth...), 200)
	if want := map[string]int{"answered": 1, "refused": 1, "cancelled": 1, "failed": 0}; fmt.Sprint(status.Last24h) != fmt.Sprint(want) {
		t.Errorf("calls of the last 24 h %v, want %v", status.Last24h, want)
	}
}
