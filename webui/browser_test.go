package webui_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// needChromium skips the test without a browser, unless the environment
// says the browser must be there.
func needChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("PSIGATE_REQUIRE_PEERS") == "1" {
			t.Fatalf("PSIGATE_REQUIRE_PEERS=1 but there is no browser: %v (install the Debian package chromium)", err)
		}
		t.Skipf("no browser at %s (install the Debian package chromium, or set PSIGATE_REQUIRE_PEERS=1 to make this a failure): %v", chromiumPath, err)
	}
}

// newBrowser starts a headless Chromium that reaches nothing but loopback
// addresses, with a fresh profile; it ends with the test.
func newBrowser(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests may run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("disable-features", "Translate,BlinkGenPropertyTrees,OptimizationHints,MediaRouter,"+
			"DialMediaRouteProvider,PasswordLeakDetection,AutofillServerCommunication,CertificateTransparencyComponentUpdater"),
		chromedp.Flag("no-proxy-server", true),
		// Host names resolve to nothing: the test server is addressed
		// by IP, and nothing else may be reached.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.IgnoreCertErrors, // the portal's self-signed certificate
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "chromium-profile")),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc() // waits for the browser process to end
	})
	return bctx
}

func TestBrowserSetupDashboardLogoutLogin(t *testing.T) {
	needChromium(t)
	k := newKit(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	bctx := newBrowser(t, ctx)

	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	location := func() string {
		t.Helper()
		loc, err := chromedp.Run(bctx, chromedp.Location())
		if err != nil {
			t.Fatalf("location: %v", err)
		}
		return loc
	}
	text := func(id string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID(id)))
		if err != nil {
			t.Fatalf("text of #%s: %v", id, err)
		}
		return s
	}

	// Before setup everything leads to the setup page.
	run("open the portal", chromedp.Navigate(k.ts.URL), chromedp.WaitVisible(chromedp.ID("set-password")))
	if loc := location(); loc != k.ts.URL+"/setup" {
		t.Fatalf("opening %s landed on %s, want /setup", k.ts.URL, loc)
	}

	// The well-known default is refused.
	run("type the default password",
		chromedp.SendKeys(chromedp.ID("password"), "Asd123!."),
		chromedp.SendKeys(chromedp.ID("confirm-password"), "Asd123!."))
	valid, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.querySelector("form").checkValidity()`))
	if err != nil {
		t.Fatalf("form validity: %v", err)
	}
	if !valid {
		// The server's policy is the one check: the browser must let the
		// default through so the admin reads why it is refused.
		t.Fatal("the browser refuses the form by itself; the server's reason would never show")
	}
	run("submit the default password", chromedp.Click(chromedp.ID("set-password")), chromedp.WaitVisible(chromedp.ID("error")))
	if msg := text("error"); !strings.Contains(msg, "well-known default") {
		t.Fatalf("error banner %q does not mention the well-known default", msg)
	}
	if u, _ := k.st.User("admin"); u.PasswordHash != "" {
		t.Fatal("the default password was stored")
	}

	// A good password logs in and shows the dashboard.
	run("set a good password",
		chromedp.SendKeys(chromedp.ID("password"), goodPassword),
		chromedp.SendKeys(chromedp.ID("confirm-password"), goodPassword),
		chromedp.Click(chromedp.ID("set-password")),
		chromedp.WaitVisible(chromedp.ID("system")),
		chromedp.WaitVisible(chromedp.ID("alarms")),
		chromedp.WaitVisible(chromedp.ID("services")))
	if loc := location(); loc != k.ts.URL+"/" {
		t.Fatalf("after setup at %s, want the dashboard", loc)
	}
	if v := text("version"); v != testVersion {
		t.Fatalf("dashboard version %q, want %q", v, testVersion)
	}
	cookies, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.cookie`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(cookies, "psigate_session") {
		t.Fatal("the session cookie is readable by scripts")
	}

	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)) // 100 = PNG
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := t.TempDir()
	if keep := os.Getenv("PSIGATE_SCREENSHOT_DIR"); keep != "" {
		dir = keep // to look at the page after the test
	}
	png := filepath.Join(dir, "dashboard.png")
	if err := os.WriteFile(png, shot, 0o600); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(png)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 1000 || !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("%s is not a PNG screenshot (%d bytes)", png, len(data))
	}
	t.Logf("dashboard screenshot: %s (%d bytes)", png, len(data))

	// Log out, and in again.
	run("log out", chromedp.Click(chromedp.CSS("form.logout button")), chromedp.WaitVisible(chromedp.ID("login")))
	if loc := location(); loc != k.ts.URL+"/login" {
		t.Fatalf("after logout at %s, want /login", loc)
	}
	run("open the dashboard logged out", chromedp.Navigate(k.ts.URL+"/config"), chromedp.WaitVisible(chromedp.ID("login")))
	run("log in",
		chromedp.SendKeys(chromedp.ID("password"), goodPassword),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("system")),
		chromedp.WaitVisible(chromedp.ID("services")))
	if loc := location(); loc != k.ts.URL+"/" {
		t.Fatalf("after login at %s, want the dashboard", loc)
	}

	if n := k.auditCount("login", true); n != 2 {
		t.Errorf("%d successful logins in the audit log, want 2", n)
	}
	if n := k.auditCount("logout", true); n != 1 {
		t.Errorf("%d logouts in the audit log, want 1", n)
	}
	if n := k.auditCount("setup", false); n != 1 {
		t.Errorf("%d refused setups in the audit log, want 1", n)
	}
	if n := k.auditCount("csrf-refused", false); n != 0 {
		t.Errorf("%d CSRF refusals for the browser's own forms", n)
	}
}
