package webui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/psigate/psigate/appliance/firmware"
	"github.com/psigate/psigate/appliance/firmware/firmwaretest"
	"github.com/psigate/psigate/webui"
)

const fwTarget = "amd64"

// fwRig is a firmware service around a fake device, and a signer for
// bundles.
type fwRig struct {
	sign     *firmwaretest.Signer
	dev      *firmwaretest.Device
	rollback string // bootguard's rollback file
	opts     firmware.Options
	u        *firmware.Updater
}

func newFWRig(t *testing.T, edit ...func(*firmware.Options)) *fwRig {
	t.Helper()
	r := &fwRig{sign: firmwaretest.NewSigner(t), dev: firmwaretest.NewDevice()}
	var cmdline string
	r.rollback, cmdline = firmwaretest.Box(t, testVersion)
	r.opts = firmware.Options{
		Cmdline:      cmdline,
		Dir:          filepath.Join(t.TempDir(), "firmware"),
		PublicKey:    r.sign.Pub,
		Release:      firmware.Release{Version: testVersion, Target: fwTarget, BuildTime: time.Date(2025, 2, 1, 9, 0, 0, 0, time.UTC)},
		Device:       r.dev,
		RollbackFile: r.rollback,
		Log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		RebootDelay:  time.Millisecond,
	}
	for _, f := range edit {
		f(&r.opts)
	}
	r.u = firmware.New(r.opts)
	return r
}

func withFirmware(f webui.FirmwareService) kitOption {
	return func(o *webui.Options) { o.Firmware = f }
}

// octets is a raw bundle body.
func octets(b []byte) rawBody { return rawBody{ContentType: "application/octet-stream", Data: b} }

// bundleForm is the upload form's body: the CSRF token (when not "")
// before or after the bundle.
func bundleForm(t *testing.T, csrf string, csrfFirst bool, data []byte) rawBody {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	field := func() {
		if csrf != "" {
			if err := w.WriteField("csrf", csrf); err != nil {
				t.Fatal(err)
			}
		}
	}
	if csrfFirst {
		field()
	}
	fw, err := w.CreateFormFile("bundle", "psigate-1.1.0-amd64.bundle")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(data)
	if !csrfFirst {
		field()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return rawBody{ContentType: w.FormDataContentType(), Data: buf.Bytes()}
}

func wantOps(t *testing.T, d *firmwaretest.Device, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if got := d.Ops(); !reflect.DeepEqual(got, want) {
		t.Fatalf("device calls %q, want %q", got, want)
	}
}

func TestFirmwareAPIInstall(t *testing.T) {
	fw := newFWRig(t)
	k := ready(t, withFirmware(fw.u))

	r := k.get("/api/v1/firmware")
	wantStatus(t, r, http.StatusOK, "GET firmware")
	var st firmware.Status
	r.JSON(t, &st)
	if !st.Updatable || st.KeyID != fw.sign.KeyID() || st.Running.Version != testVersion || st.Running.Target != fwTarget || st.Busy {
		t.Fatalf("GET firmware: %s", r.Body)
	}

	r = k.send(http.MethodPost, "/api/v1/firmware", octets(fw.sign.Bundle(t, "9.9.0", fwTarget)))
	wantStatus(t, r, http.StatusAccepted, "POST firmware")
	var out struct {
		Version, Target, KeyID, Status string
		Parts                          []struct{ Name string }
	}
	r.JSON(t, &out)
	if out.Version != "9.9.0" || out.Target != fwTarget || out.KeyID != fw.sign.KeyID() || out.Status != "rebooting" || len(out.Parts) != 3 {
		t.Fatalf("POST firmware answered %s", r.Body)
	}
	fw.dev.WaitReboot(t)
	wantOps(t, fw.dev, "root", "boot", "mbr", "switch", "reboot")
	for _, part := range []string{"root", "boot", "mbr"} {
		if !bytes.Equal(fw.dev.Data(part), fw.sign.Part(t, part)) {
			t.Errorf("the device got other bytes for %s", part)
		}
	}
	if n := k.auditCount("firmware-install", true); n != 1 {
		t.Fatalf("%d successful firmware-install audit events, want 1", n)
	}
	if last := k.audit()[len(k.audit())-1]; !strings.Contains(last.Detail, "version 9.9.0 for amd64 installed") {
		t.Fatalf("audit detail %q", last.Detail)
	}

	// Until the reboot, nothing else is installed.
	r = k.send(http.MethodPost, "/api/v1/firmware", octets(fw.sign.Bundle(t, "9.9.1", fwTarget)))
	wantStatus(t, r, http.StatusConflict, "POST firmware while rebooting")
	wantOps(t, fw.dev, "root", "boot", "mbr", "switch", "reboot")
	r = k.get("/api/v1/firmware")
	r.JSON(t, &st)
	if !st.Rebooting || st.Last == nil || !st.Last.OK || st.Last.Version != "9.9.0" {
		t.Fatalf("GET firmware after install: %s", r.Body)
	}
}

func TestFirmwareAPIMultipartWithBearer(t *testing.T) {
	fw := newFWRig(t)
	k := ready(t, withFirmware(fw.u))
	r := k.do(req{Method: http.MethodPost, Path: "/api/v1/firmware", Body: bundleForm(t, "", false, fw.sign.Bundle(t, "9.9.0", fwTarget)),
		Header: k.bearer(), Client: k.newClient(false)})
	wantStatus(t, r, http.StatusAccepted, "POST firmware as multipart with a Bearer token")
	fw.dev.WaitReboot(t)
	wantOps(t, fw.dev, "root", "boot", "mbr", "switch", "reboot")
}

func TestFirmwareAPIRefusesBadBundles(t *testing.T) {
	fw := newFWRig(t)
	k := ready(t, withFirmware(fw.u))
	other := firmwaretest.NewSigner(t)
	good := fw.sign.Bundle(t, "9.9.0", fwTarget)
	corrupt := bytes.Clone(good)
	corrupt[bytes.Index(corrupt, []byte("ROOT-squashfs"))+3] ^= 0xff
	cases := []struct {
		name   string
		body   any
		status int
		text   string
	}{
		{"bad signature", octets(other.Bundle(t, "9.9.0", fwTarget)), http.StatusUnprocessableEntity, "not signed by a trusted key: signed by key " + other.KeyID()},
		{"wrong target", octets(fw.sign.Bundle(t, "9.9.0", "rpi")), http.StatusUnprocessableEntity, "for another kind of device: bundle is for rpi, this box is amd64"},
		{"truncated", octets(good[:len(good)-2000]), http.StatusUnprocessableEntity, "incomplete"},
		{"corrupt", octets(corrupt), http.StatusUnprocessableEntity, "does not match its SHA-256"},
		{"empty", octets(nil), http.StatusUnprocessableEntity, "incomplete"},
		{"multipart without bundle", rawBody{ContentType: "multipart/form-data; boundary=x", Data: []byte("--x--\r\n")}, http.StatusBadRequest, `no "bundle"`},
		{"multipart without boundary", rawBody{ContentType: "multipart/form-data", Data: good}, http.StatusBadRequest, "reading the form"},
		{"broken multipart", rawBody{ContentType: "multipart/form-data; boundary=x", Data: good}, http.StatusBadRequest, "reading the form"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := k.send(http.MethodPost, "/api/v1/firmware", c.body)
			wantStatus(t, r, c.status, c.name)
			var e apiFieldError
			r.JSON(t, &e)
			if !strings.Contains(e.Error, c.text) {
				t.Fatalf("error %q does not say %q", e.Error, c.text)
			}
			wantOps(t, fw.dev)
			if n := k.auditCount("firmware-install", false); n != i+1 {
				t.Fatalf("%d refused firmware-install audit events, want %d", n, i+1)
			}
		})
	}
	entries, _ := os.ReadDir(fw.opts.Dir)
	for _, e := range entries {
		if e.Name() != "last-attempt.json" {
			t.Errorf("%s left in the firmware directory", e.Name())
		}
	}
}

func TestFirmwareNotPossible(t *testing.T) {
	t.Run("no firmware service", func(t *testing.T) {
		k := ready(t)
		r := k.send(http.MethodPost, "/api/v1/firmware", octets([]byte("x")))
		wantStatus(t, r, http.StatusNotImplemented, "POST firmware")
		var st firmware.Status
		k.get("/api/v1/firmware").JSON(t, &st)
		if st.Updatable || st.Unavailable == "" {
			t.Fatalf("status %+v", st)
		}
		wantHTML(t, k.get("/firmware"), http.StatusOK, "GET /firmware", `id="unavailable"`, "not available on this appliance")
	})
	t.Run("no device", func(t *testing.T) {
		fw := newFWRig(t, func(o *firmware.Options) { o.Device = nil })
		k := ready(t, withFirmware(fw.u))
		r := k.send(http.MethodPost, "/api/v1/firmware", octets(fw.sign.Bundle(t, "9.9.0", fwTarget)))
		wantStatus(t, r, http.StatusNotImplemented, "POST firmware without device")
		if !strings.Contains(r.String(), "psigate image") || !strings.Contains(r.String(), "9.9.0") {
			t.Fatalf("answer %s", r.Body)
		}
		page := wantHTML(t, k.get("/firmware"), http.StatusOK, "GET /firmware", `id="unavailable"`, "psigate image")
		if strings.Contains(page, `id="install-form"`) {
			t.Fatal("the page offers the upload form")
		}
	})
	t.Run("no key", func(t *testing.T) {
		fw := newFWRig(t, func(o *firmware.Options) { o.PublicKey = nil })
		k := ready(t, withFirmware(fw.u))
		r := k.send(http.MethodPost, "/api/v1/firmware", octets(fw.sign.Bundle(t, "9.9.0", fwTarget)))
		wantStatus(t, r, http.StatusNotImplemented, "POST firmware without key")
		wantHTML(t, k.get("/firmware"), http.StatusOK, "GET /firmware", "trusts no update key", "none trusted")
	})
}

func TestFirmwareNeedsLogin(t *testing.T) {
	fw := newFWRig(t)
	k := ready(t, withFirmware(fw.u))
	anon := k.newClient(false)
	body := fw.sign.Bundle(t, "9.9.0", fwTarget)
	r := k.do(req{Method: http.MethodPost, Path: "/api/v1/firmware", Body: octets(body), Client: anon})
	wantStatus(t, r, http.StatusUnauthorized, "POST /api/v1/firmware without login")
	r = k.do(req{Method: http.MethodGet, Path: "/api/v1/firmware", Client: anon})
	wantStatus(t, r, http.StatusUnauthorized, "GET /api/v1/firmware without login")
	r = k.do(req{Method: http.MethodPost, Path: "/api/v1/firmware/rollback/dismiss", Client: anon})
	wantStatus(t, r, http.StatusUnauthorized, "dismiss without login")
	r = k.do(req{Method: http.MethodPost, Path: "/firmware", Body: bundleForm(t, k.csrf, true, body), Client: anon})
	wantRedirect(t, r, "/login", "POST /firmware without login")
	wantRedirect(t, k.do(req{Path: "/firmware", Client: anon}), "/login", "GET /firmware without login")
	wantOps(t, fw.dev)
}

func TestFirmwareCSRF(t *testing.T) {
	fw := newFWRig(t)
	k := ready(t, withFirmware(fw.u))
	body := fw.sign.Bundle(t, "9.9.0", fwTarget)
	cases := []struct {
		name string
		path string
		body rawBody
	}{
		{"API with the cookie and no token", "/api/v1/firmware", octets(body)},
		{"form without token", "/firmware", bundleForm(t, "", true, body)},
		{"form with a wrong token", "/firmware", bundleForm(t, "wrong-"+k.csrf, true, body)},
		{"form with the token after the bundle", "/firmware", bundleForm(t, k.csrf, false, body)},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := k.do(req{Method: http.MethodPost, Path: c.path, Body: c.body})
			wantStatus(t, r, http.StatusForbidden, c.name)
			wantOps(t, fw.dev)
			if n := k.auditCount("csrf-refused", false); n != i+1 {
				t.Fatalf("%d csrf-refused audit events, want %d", n, i+1)
			}
		})
	}
	r := k.do(req{Method: http.MethodPost, Path: "/firmware", Body: bundleForm(t, k.csrf, true, body)})
	loc := wantRedirect(t, r, "/firmware?ok=", "the form with its token")
	if msg, _ := url.QueryUnescape(loc); !strings.Contains(msg, "Version 9.9.0 is installed") {
		t.Fatalf("redirect to %s", loc)
	}
	fw.dev.WaitReboot(t)
	wantOps(t, fw.dev, "root", "boot", "mbr", "switch", "reboot")
	wantHTML(t, k.get("/firmware"), http.StatusOK, "GET /firmware after the install", `id="rebooting"`, "installed")
}

func TestFirmwarePage(t *testing.T) {
	fw := newFWRig(t)
	k := ready(t, withFirmware(fw.u))
	page := wantHTML(t, k.get("/firmware"), http.StatusOK, "GET /firmware", `id="running-version">`+testVersion+`<`,
		`id="running-target">amd64<`, "<code>"+fw.sign.KeyID()+"</code>", `enctype="multipart/form-data"`, `name="bundle"`,
		"Install and reboot", "No update was installed")
	wantCSRFInputs(t, page, k.csrf, "GET /firmware")
	if !strings.Contains(page, `<a href="/firmware" class="active">`) {
		t.Error("the Firmware navigation entry is not active")
	}
	if strings.Contains(page, `id="rollback"`) {
		t.Fatal("a rollback banner without a rollback")
	}

	// A refused bundle comes back with the reason.
	page = wantHTML(t, k.do(req{Method: http.MethodPost, Path: "/firmware", Body: bundleForm(t, k.csrf, true, fw.sign.Bundle(t, "9.9.0", "rpi"))}),
		http.StatusUnprocessableEntity, "a wrong-target bundle", `id="error"`, "bundle is for rpi, this box is amd64", `id="last-result"`)
	wantOps(t, fw.dev)

	// bootguard's rollback shows until dismissed.
	ev := map[string]any{"time": "2025-03-02T08:15:00Z", "fromVersion": "9.9.0", "fromRoot": 3, "toRoot": 2,
		"toVersion": testVersion, "reason": "healthz did not answer 200"}
	data, _ := json.Marshal(ev)
	if err := os.WriteFile(fw.rollback, data, 0o644); err != nil {
		t.Fatal(err)
	}
	page = wantHTML(t, k.get("/firmware"), http.StatusOK, "GET /firmware with a rollback", `id="rollback"`, "Version 9.9.0 did not come up healthy",
		"healthz did not answer 200", `action="/firmware/rollback/dismiss"`)
	wantCSRFInputs(t, page, k.csrf, "GET /firmware with a rollback")
	var st firmware.Status
	k.get("/api/v1/firmware").JSON(t, &st)
	if st.Rollback == nil || st.Rollback.FromVersion != "9.9.0" {
		t.Fatalf("API rollback %+v", st.Rollback)
	}
	wantRedirect(t, k.form("/firmware/rollback/dismiss", nil), "/firmware?ok=", "dismiss")
	if _, err := os.Stat(fw.rollback); !os.IsNotExist(err) {
		t.Fatalf("the rollback file is still there: %v", err)
	}
	if page := k.get("/firmware").String(); strings.Contains(page, `id="rollback"`) {
		t.Fatal("the rollback banner shows after dismiss")
	}
	if n := k.auditCount("firmware-dismiss-rollback", true); n != 1 {
		t.Fatalf("%d dismiss audit events", n)
	}
	// The API twin.
	os.WriteFile(fw.rollback, data, 0o644)
	r := k.send(http.MethodPost, "/api/v1/firmware/rollback/dismiss", nil)
	wantStatus(t, r, http.StatusOK, "API dismiss")
	var after firmware.Status
	r.JSON(t, &after)
	if after.Rollback != nil {
		t.Fatalf("rollback after the API dismiss: %s", r.Body)
	}
}

func TestHealthzNamesFailedServices(t *testing.T) {
	var mu sync.Mutex
	components := []webui.Component{{Name: "portal", State: "running"}, {Name: "sbc", State: "running"}, {Name: "cloudlinkd", State: "not built yet"}}
	set := func(c ...webui.Component) {
		mu.Lock()
		defer mu.Unlock()
		components = c
	}
	status := func(context.Context) webui.Status {
		mu.Lock()
		defer mu.Unlock()
		return webui.Status{Version: testVersion, Components: components, MachineID: "secret-machine-id"}
	}
	k := newKit(t, func(o *webui.Options) { o.Status = status })
	anon := k.newClient(false)
	r := k.do(req{Path: "/healthz", Client: anon})
	wantStatus(t, r, http.StatusOK, "healthz with every service running")
	var ok map[string]string
	r.JSON(t, &ok)
	if !reflect.DeepEqual(ok, map[string]string{"status": "ok", "version": testVersion}) {
		t.Fatalf("healthz: %s", r.Body)
	}

	set(webui.Component{Name: "portal", State: "running"}, webui.Component{Name: "sbc", State: "failed", Detail: "listen udp 10.0.0.1:5060: address in use"})
	r = k.do(req{Path: "/healthz", Client: anon})
	wantStatus(t, r, http.StatusServiceUnavailable, "healthz with a failed service")
	var bad struct {
		Status  string
		Version string
		Failing []struct{ Name, State string }
	}
	r.JSON(t, &bad)
	if bad.Status != "unhealthy" || bad.Version != testVersion || len(bad.Failing) != 1 || bad.Failing[0].Name != "sbc" || bad.Failing[0].State != "failed" {
		t.Fatalf("healthz: %s", r.Body)
	}
	if strings.Contains(r.String(), "10.0.0.1") || strings.Contains(r.String(), "secret-machine-id") {
		t.Fatalf("healthz shows details: %s", r.Body)
	}
	set(webui.Component{Name: "portal", State: "running"}, webui.Component{Name: "sbc", State: "stopped"})
	wantStatus(t, k.do(req{Path: "/healthz", Client: anon}), http.StatusServiceUnavailable, "healthz with a stopped service")
	// Running but without its configuration applied: it still serves.
	set(webui.Component{Name: "portal", State: "running"}, webui.Component{Name: "sbc", State: "degraded", Detail: "bind: address already in use"})
	r = k.do(req{Path: "/healthz", Client: anon})
	wantStatus(t, r, http.StatusOK, "healthz with a degraded service")
	if !strings.Contains(r.String(), `"degraded"`) || !strings.Contains(r.String(), `"sbc"`) || strings.Contains(r.String(), "address already") {
		t.Fatalf("healthz with a degraded service: %s", r.Body)
	}
}

// An older build is refused with 422 unless allowOlder=true is asked for.
func TestFirmwareAPIAllowOlder(t *testing.T) {
	fw := newFWRig(t, func(o *firmware.Options) { o.Release.BuildTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) })
	k := ready(t, withFirmware(fw.u))
	r := k.send(http.MethodPost, "/api/v1/firmware", octets(fw.sign.Bundle(t, "0.9.0", fwTarget)))
	wantStatus(t, r, http.StatusUnprocessableEntity, "POST an older firmware")
	if !strings.Contains(string(r.Body), "older firmware") {
		t.Fatalf("refusal: %s", r.Body)
	}
	wantOps(t, fw.dev)
	r = k.send(http.MethodPost, "/api/v1/firmware?allowOlder=true", octets(fw.sign.Bundle(t, "0.9.0", fwTarget)))
	wantStatus(t, r, http.StatusAccepted, "POST an older firmware with allowOlder=true")
	fw.dev.WaitReboot(t)
	wantOps(t, fw.dev, "root", "boot", "mbr", "switch", "reboot")
}

// The page says when bootguard has confirmed the running version, and
// while it has not, why installs wait (instead of the form).
func TestFirmwarePageTrial(t *testing.T) {
	fw := newFWRig(t)
	k := ready(t, withFirmware(fw.u))
	wantHTML(t, k.get("/firmware"), http.StatusOK, "GET /firmware", `id="trial"`, "confirmed", `id="install-form"`)
	state := filepath.Join(filepath.Dir(fw.rollback), "state.json")
	if err := os.WriteFile(state, []byte(`{"goodRoot":3,"goodVersion":"0.1.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	page := wantHTML(t, k.get("/firmware"), http.StatusOK, "GET /firmware on trial", "on trial", `id="on-trial"`, "partition 3 holds the version it falls back to")
	if strings.Contains(page, `id="install-form"`) {
		t.Error("the install form is shown while the running version is on trial")
	}
}
