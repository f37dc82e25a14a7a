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

func TestBrowserSIPPages(t *testing.T) {
	needChromium(t)
	k := ready(t)
	k.putSIPServer(os4k())
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
	errorAt := func(path, want string) {
		t.Helper()
		sel := chromedp.CSS(`[id="field-` + path + `"] .ferr`)
		run("wait for the error at "+path, chromedp.WaitVisible(sel))
		if msg, err := chromedp.Run(bctx, chromedp.Text(sel)); err != nil || !strings.Contains(msg, want) {
			t.Fatalf("error next to %s: %q, %v; want %q", path, msg, err, want)
		}
	}

	run("log in", chromedp.Navigate(k.ts.URL+"/login"), chromedp.WaitVisible(chromedp.ID("login")),
		chromedp.SendKeys(chromedp.ID("password"), goodPassword), chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("system")))
	run("open the SIP page", chromedp.Click(chromedp.CSS(`a[href="/sip/server"]`)), chromedp.WaitVisible(chromedp.ID("sip-server-form")))

	// An invalid port comes back with the reason next to its input.
	port := "sbc.sipServer.nodeGroups[0].nodes[1].port"
	run("save port 0", chromedp.SetValue(byID(port), "0"), chromedp.Click(chromedp.ID("save-sip-server")))
	errorAt(port, "port 0 out of range 1-65535")
	screenshot("sip-server-error.png")
	k.wantSIPServer(os4k(), "after the refused form")

	// Enter in a blank node row saves the form (its first button is a
	// hidden save), rather than pressing a row's delete button.
	blank := "sbc.sipServer.nodeGroups[0].nodes[2]"
	run("add a node with Enter", chromedp.SetValue(byID(port), "5060"),
		chromedp.SetValue(byID(blank+".name"), "node3"), chromedp.SetValue(byID(blank+".priority"), "3"),
		chromedp.SetValue(byID(blank+".address"), "10.180.0.12"), chromedp.SetValue(byID(blank+".transport"), "tcp"),
		chromedp.SendKeys(byID(blank+".port"), "5060"+kb.Enter), chromedp.WaitVisible(chromedp.ID("flash")))
	want := os4k()
	want.NodeGroups[0].Nodes = append(want.NodeGroups[0].Nodes, sbc.Node{Name: "node3", Priority: 3, Address: "10.180.0.12", Transport: sbc.TransportTCP, Port: 5060})
	k.wantSIPServer(want, "after Enter")
	screenshot("sip-server.png")

	// From a page without the flash, so that waiting for it waits for the
	// answer to the click.
	run("reload", chromedp.Navigate(k.ts.URL+"/sip/server"), chromedp.WaitVisible(chromedp.ID("sip-server-form")))
	run("delete node1", chromedp.Click(chromedp.CSS(`button[name="delete"][value="sbc.sipServer.nodeGroups[0].nodes[0]"]`)),
		chromedp.WaitVisible(chromedp.ID("flash")))
	want.NodeGroups[0].Nodes = want.NodeGroups[0].Nodes[1:]
	k.wantSIPServer(want, "after deleting node1")

	expiry := "sbc.remoteSubscribers.maxExpirySeconds"
	run("open the remote subscribers", chromedp.Click(chromedp.CSS(`a[href="/sip/subscribers-settings"]`)),
		chromedp.WaitVisible(chromedp.ID("subscribers-form")))
	run("save a short expiry", chromedp.SetValue(byID(expiry), "59"), chromedp.Click(chromedp.ID("save-subscribers")))
	errorAt(expiry, "59 out of range 60-")
	screenshot("sip-subscribers-error.png")
	if got := k.candidate().SBC.RemoteSubscribers; !reflect.DeepEqual(got, sbc.DefaultRemoteSubscribers()) {
		t.Fatalf("the refused form stored %+v", got)
	}
	if n := k.auditCount("csrf-refused", false); n != 0 {
		t.Errorf("%d CSRF refusals for the browser's own forms", n)
	}
}
