package webui_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

func TestBrowserFirmwareUpload(t *testing.T) {
	needChromium(t)
	fw := newFWRig(t)
	k := ready(t, withFirmware(fw.u))
	dir := t.TempDir()
	wrong, good := filepath.Join(dir, "wrong-target.bundle"), filepath.Join(dir, "good.bundle")
	os.WriteFile(wrong, fw.sign.Bundle(t, "9.9.0", "rpi"), 0o600)
	os.WriteFile(good, fw.sign.Bundle(t, "9.9.0", fwTarget), 0o600)

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	bctx := newBrowser(t, ctx)
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(id string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID(id)))
		if err != nil {
			t.Fatalf("text of #%s: %v", id, err)
		}
		return s
	}

	run("log in", chromedp.Navigate(k.ts.URL+"/login"), chromedp.WaitVisible(chromedp.ID("login")),
		chromedp.SendKeys(chromedp.ID("password"), goodPassword), chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("system")))
	run("open the Firmware page", chromedp.Click(chromedp.CSS(`a[href="/firmware"]`)), chromedp.WaitVisible(chromedp.ID("install-form")))
	if v := text("running-version"); v != testVersion {
		t.Fatalf("running version %q", v)
	}

	run("upload a bundle for another target", chromedp.SetUploadFiles(chromedp.ID("bundle-file"), []string{wrong}),
		chromedp.Click(chromedp.ID("install-bundle")), chromedp.WaitVisible(chromedp.ID("error")))
	if msg := text("error"); !strings.Contains(msg, "bundle is for rpi, this box is amd64") {
		t.Fatalf("error banner %q", msg)
	}
	wantOps(t, fw.dev)

	run("upload a good bundle", chromedp.SetUploadFiles(chromedp.ID("bundle-file"), []string{good}),
		chromedp.Click(chromedp.ID("install-bundle")), chromedp.WaitVisible(chromedp.ID("flash")))
	if msg := text("flash"); !strings.Contains(msg, "Version 9.9.0 is installed") {
		t.Fatalf("flash %q", msg)
	}
	fw.dev.WaitReboot(t)
	wantOps(t, fw.dev, "root", "boot", "mbr", "switch", "reboot")

	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shots := t.TempDir()
	if keep := os.Getenv("PSIGATE_SCREENSHOT_DIR"); keep != "" {
		shots = keep
	}
	if err := os.WriteFile(filepath.Join(shots, "firmware.png"), shot, 0o600); err != nil {
		t.Fatal(err)
	}
	if n := k.auditCount("csrf-refused", false); n != 0 {
		t.Errorf("%d CSRF refusals for the browser's own forms", n)
	}
}
