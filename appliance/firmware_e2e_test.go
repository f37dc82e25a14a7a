package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/psigate/psigate/appliance/firmware/firmwaretest"
)

// TestFirmwareFlags runs the real binary with a release file, an update
// key and a rollback event from the flags: the rollback raises the alarm
// until dismissed, and a bundle is verified but, off a gokrazy box, not
// installed.
func TestFirmwareFlags(t *testing.T) {
	bin := buildAppliance(t)
	dir := t.TempDir()
	sign := firmwaretest.NewSigner(t)
	release := filepath.Join(dir, "release.json")
	rollback := filepath.Join(dir, "bootguard", "rollback.json")
	os.MkdirAll(filepath.Dir(rollback), 0o755)
	os.WriteFile(release, []byte(`{"version":"7.7.7","target":"amd64","buildTime":"2025-03-01T12:00:00Z","buildTimestamp":"2025-03-01T12:00:00Z"}`), 0o644)
	os.WriteFile(rollback, []byte(`{"time":"2025-03-02T08:15:00Z","fromVersion":"7.8.0","fromRoot":3,"toRoot":2,"toVersion":"7.7.7","reason":"healthz did not answer 200"}`), 0o644)
	a := start(t, bin, filepath.Join(dir, "data"), "-release", release, "-update-key", sign.PubPath, "-rollback-file", rollback)
	c := newClient(t, a.url)
	const password = "e2e: a long passphrase"
	expect(t, "setup", c.do("POST", "/api/v1/setup", map[string]string{"password": password}, nil), 201)
	var login struct{ Token, CSRFToken string }
	expect(t, "login", c.do("POST", "/api/v1/session", map[string]string{"username": "admin", "password": password}, &login), 200)
	c.csrf = login.CSRFToken

	const alarmText = "Firmware update to version 7.8.0 was rolled back to 7.7.7 at 2025-03-02 08:15:00 UTC: healthz did not answer 200"
	if !hasAlarm(t, c, "firmware-rolled-back", alarmText) {
		t.Fatalf("no rollback alarm\n%s", a.stderr)
	}
	var fw struct {
		Running     struct{ Version, Target string }
		KeyID       string
		Updatable   bool
		Unavailable string
		Rollback    *struct{ FromVersion string }
	}
	expect(t, "GET firmware", c.do("GET", "/api/v1/firmware", nil, &fw), 200)
	if fw.Running.Version != "7.7.7" || fw.Running.Target != "amd64" || fw.KeyID != sign.KeyID() || fw.Updatable ||
		!strings.Contains(fw.Unavailable, "psigate image") || fw.Rollback == nil || fw.Rollback.FromVersion != "7.8.0" {
		t.Fatalf("GET firmware: %+v", fw)
	}

	req, _ := http.NewRequest("POST", c.base+"/api/v1/firmware", bytes.NewReader(sign.Bundle(t, "7.9.0", "amd64")))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("X-CSRF-Token", c.csrf)
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var answer struct{ Error string }
	json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotImplemented || !strings.Contains(answer.Error, "version 7.9.0") || !strings.Contains(answer.Error, "verified") {
		t.Fatalf("POST firmware: %d %q", resp.StatusCode, answer.Error)
	}

	expect(t, "dismiss", c.do("POST", "/api/v1/firmware/rollback/dismiss", nil, nil), 200)
	if hasAlarm(t, c, "firmware-rolled-back", "") {
		t.Fatal("the rollback alarm stays after dismiss")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(rollback), "rollback.dismissed.json")); err != nil {
		t.Fatal(err)
	}
	var health map[string]string
	expect(t, "healthz", c.do("GET", "/healthz", nil, &health), 200)
	if health["status"] != "ok" || health["version"] == "" {
		t.Fatalf("healthz: %v", health)
	}
	if err := a.stop(t); err != nil {
		t.Fatalf("exit: %v\n%s", err, a.stderr)
	}
}

// hasAlarm reports whether the dashboard shows the alarm code (with the
// text, unless "").
func hasAlarm(t *testing.T, c *client, code, text string) bool {
	t.Helper()
	var st struct {
		Alarms []struct{ Code, Severity, Text string }
	}
	expect(t, "status", c.do("GET", "/api/v1/status", nil, &st), 200)
	for _, a := range st.Alarms {
		if a.Code == code {
			if text != "" && (a.Text != text || a.Severity != "major") {
				t.Fatalf("alarm %s: %s %q, want major %q", code, a.Severity, a.Text, text)
			}
			return true
		}
	}
	return false
}
