package webui_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/psigate/psigate/sbc"
)

// byID selects the element with an id that is not a plain CSS name, such
// as a configuration path.
func byID(id string) chromedp.CSS { return chromedp.CSS(`[id="` + id + `"]`) }

func TestBrowserMediaPages(t *testing.T) {
	needChromium(t)
	k := ready(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	bctx := newBrowser(t, ctx)
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	screenshot := func(name string) {
		t.Helper()
		shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		dir := t.TempDir()
		if keep := os.Getenv("PSIGATE_SCREENSHOT_DIR"); keep != "" {
			dir = keep
		}
		if err := os.WriteFile(filepath.Join(dir, name), shot, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	run("log in", chromedp.Navigate(k.ts.URL+"/login"), chromedp.WaitVisible(chromedp.ID("login")),
		chromedp.SendKeys(chromedp.ID("password"), goodPassword), chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("system")))
	run("open the Media page", chromedp.Click(chromedp.CSS(`a[href="/media"]`)), chromedp.WaitVisible(chromedp.ID("profiles")))
	run("edit Zoom", chromedp.Click(chromedp.CSS(`a[href="/media/profiles/Zoom"]`)), chromedp.WaitVisible(chromedp.ID("profile-form")))

	// An invalid value comes back with the reason next to its input.
	pt := "sbc.mediaProfiles[1].telephoneEventPayloadType"
	errSel := chromedp.CSS(`[id="field-` + pt + `"] .ferr`)
	run("save a bad payload type", chromedp.SetValue(byID(pt), "200"), chromedp.Click(chromedp.ID("save-profile")), chromedp.WaitVisible(errSel))
	msg, err := chromedp.Run(bctx, chromedp.Text(errSel))
	if err != nil || !strings.Contains(msg, "200 out of range 96-127") {
		t.Fatalf("error next to the payload type: %q, %v", msg, err)
	}
	screenshot("media-profile-error.png")
	if got := k.candidate().SBC.MediaProfiles[1].TelephoneEventPayloadType; got != 101 {
		t.Fatalf("the refused form stored payload type %d", got)
	}
	run("save a good payload type", chromedp.SetValue(byID(pt), "102"), chromedp.Click(chromedp.ID("save-profile")), chromedp.WaitVisible(chromedp.ID("flash")))
	if got := k.candidate().SBC.MediaProfiles[1].TelephoneEventPayloadType; got != 102 {
		t.Fatalf("payload type %d after the form, want 102", got)
	}

	// Enter in the blank User-Agent row saves the rows (the form's first
	// button is a hidden save), rather than pressing a row's button.
	ua := "sbc.userAgentProfiles[1].userAgent"
	run("add a User-Agent row with Enter", chromedp.SetValue(byID("sbc.userAgentProfiles[1].mediaProfile"), "default"),
		chromedp.SendKeys(byID(ua), "Yealink"+kb.Enter), chromedp.WaitVisible(byID("sbc.userAgentProfiles[2].userAgent")))
	want := []sbc.UserAgentProfile{{UserAgent: "ZoomPbxPhone", MediaProfile: "Zoom"}, {UserAgent: "Yealink", MediaProfile: "default"}}
	if got := k.candidate().SBC.UserAgentProfiles; !reflect.DeepEqual(got, want) {
		t.Fatalf("user agents after Enter: %+v", got)
	}
	screenshot("media.png")
	if n := k.auditCount("csrf-refused", false); n != 0 {
		t.Errorf("%d CSRF refusals for the browser's own forms", n)
	}
}
