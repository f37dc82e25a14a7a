package webui_test

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/psigate/psigate/sbc"
)

const (
	sipP = "sbc.sipServer"
	subP = "sbc.remoteSubscribers"
)

// sipServerValues is the SIP server form filled in with s, with the blank
// node rows and the blank group the page offers.
func sipServerValues(s sbc.SIPServer) url.Values {
	v := url.Values{
		sipP + ".commSystemType":             {string(s.CommSystemType)},
		sipP + ".keepalive.intervalSeconds":  {strconv.Itoa(s.Keepalive.IntervalSeconds)},
		sipP + ".keepalive.failureThreshold": {strconv.Itoa(s.Keepalive.FailureThreshold)},
	}
	for i := 0; i <= len(s.NodeGroups); i++ {
		g := sbc.NodeGroup{StickWithNode: true} // the blank group
		if i < len(s.NodeGroups) {
			g = s.NodeGroups[i]
		}
		gp := fmt.Sprintf("%s.nodeGroups[%d]", sipP, i)
		v.Set(gp+".name", g.Name)
		if g.StickWithNode {
			v.Set(gp+".stickWithNode", "1")
		}
		for j := 0; j < len(g.Nodes)+2; j++ {
			np := fmt.Sprintf("%s.nodes[%d]", gp, j)
			n, prio, port := sbc.Node{Transport: sbc.TransportTLS}, "", ""
			if j < len(g.Nodes) {
				n, prio, port = g.Nodes[j], strconv.Itoa(g.Nodes[j].Priority), strconv.Itoa(g.Nodes[j].Port)
			}
			v.Set(np+".name", n.Name)
			v.Set(np+".priority", prio)
			v.Set(np+".address", n.Address)
			v.Set(np+".transport", string(n.Transport))
			v.Set(np+".port", port)
		}
	}
	return v
}

// subscribersValues is the remote subscribers form filled in with r.
func subscribersValues(r sbc.RemoteSubscribers) url.Values {
	t := r.RegisterThrottling
	v := url.Values{}
	for path, n := range map[string]int{
		".registerThrottling.udpSeconds": t.UDPSeconds, ".registerThrottling.streamSeconds": t.StreamSeconds,
		".registerThrottling.maxThresholdSeconds": t.MaxThresholdSeconds, ".maxExpirySeconds": r.MaxExpirySeconds,
		".minIntervalSeconds": r.MinIntervalSeconds, ".quarantine.durationSeconds": r.Quarantine.DurationSeconds,
		".inviteNoAnswerTimeoutMs": r.InviteNoAnswerTimeoutMs, ".inviteNoReplyTimeoutMs": r.InviteNoReplyTimeoutMs,
	} {
		v.Set(subP+path, strconv.Itoa(n))
	}
	for path, on := range map[string]bool{
		".enabled": r.Enabled, ".registerThrottling.enabled": t.Enabled,
		".registerThrottling.streamEnabled": t.StreamEnabled, ".quarantine.enabled": r.Quarantine.Enabled,
	} {
		if on {
			v.Set(subP+path, "1")
		}
	}
	return v
}

var (
	formTag   = regexp.MustCompile(`(?s)<form method="post" action="([^"]+)".*?</form>`)
	inputTag  = regexp.MustCompile(`<input [^>]*>`)
	attr      = regexp.MustCompile(`(\w+)="([^"]*)"`)
	selectTag = regexp.MustCompile(`(?s)<select name="([^"]+)".*?</select>`)
	selected  = regexp.MustCompile(`<option value="([^"]*)" selected>`)
)

// shownForm is what a browser submits for the page's form with that
// action when no button with a name is pressed.
func shownForm(t *testing.T, page, action string) url.Values {
	t.Helper()
	for _, m := range formTag.FindAllStringSubmatch(page, -1) {
		if m[1] != action {
			continue
		}
		v := url.Values{}
		for _, in := range inputTag.FindAllString(m[0], -1) {
			a := map[string]string{}
			for _, kv := range attr.FindAllStringSubmatch(in, -1) {
				a[kv[1]] = html.UnescapeString(kv[2])
			}
			if a["type"] != "checkbox" || strings.Contains(in, " checked") {
				v.Add(a["name"], a["value"])
			}
		}
		for _, sel := range selectTag.FindAllStringSubmatch(m[0], -1) {
			if o := selected.FindStringSubmatch(sel[0]); o != nil {
				v.Add(html.UnescapeString(sel[1]), html.UnescapeString(o[1]))
			}
		}
		return v
	}
	t.Fatalf("no form with action %s in the page:\n%s", action, page)
	return nil
}

// pageHas fails unless page contains every marker.
func pageHas(t *testing.T, page, what string, markers ...string) {
	t.Helper()
	for _, m := range markers {
		if !strings.Contains(page, m) {
			t.Fatalf("%s: page lacks %q; page:\n%s", what, m, page)
		}
	}
}

func TestSIPServerPage(t *testing.T) {
	k := ready(t)
	page := wantHTML(t, k.get("/sip/server"), http.StatusOK, "GET /sip/server",
		`<a href="/sip/server" class="active">SIP</a>`, `href="/sip/subscribers-settings"`, `action="/sip/server"`,
		"Comm System Type", `<option value="clustered" selected>Clustered</option>`, `<option value="standalone">Standalone</option>`,
		`id="sbc.sipServer.keepalive.intervalSeconds" value="30"`, `id="sbc.sipServer.keepalive.failureThreshold" value="3"`,
		"Clustered Node Servers", "New group", "Group name", "Stick with CommServer", "Node name", "Priority", "IP Address or FQDN",
		"Transport", "Port", `id="sbc.sipServer.nodeGroups[0].name" value=""`, `id="sbc.sipServer.nodeGroups[0].stickWithNode" checked`,
		`<option value="tls" selected>TLS</option>`, "Empty rows are", "The candidate equals the running configuration.")
	wantCSRFInputs(t, page, k.csrf, "GET /sip/server")
	if n := strings.Count(page, `aria-label="Node name"`); n != 2 {
		t.Fatalf("%d node rows on the default page, want 2 blank ones", n)
	}

	k.putSIPServer(os4k())
	page = wantHTML(t, k.get("/sip/server"), http.StatusOK, "GET /sip/server with node groups",
		"Group 1", "Group 2", "New group", `id="sbc.sipServer.nodeGroups[0].name" value="OS4K"`, `id="sbc.sipServer.nodeGroups[1].stickWithNode">`,
		`id="sbc.sipServer.nodeGroups[0].nodes[1].address" value="os4k-b.example.com"`, `id="sbc.sipServer.nodeGroups[0].nodes[1].port" value="5060"`,
		`<option value="tcp" selected>TCP</option>`, `id="sbc.sipServer.nodeGroups[1].nodes[0].priority" value="5"`,
		`name="delete" value="sbc.sipServer.nodeGroups[0].nodes[1]"`, `name="delete" value="sbc.sipServer.nodeGroups[1]"`,
		`id="sbc.sipServer.nodeGroups[2].name" value=""`, "pending difference")
	if n := strings.Count(page, `aria-label="Node name"`); n != 3+3*2 {
		t.Fatalf("%d node rows, want 3 and 2 blank ones per group", n)
	}
	if n := strings.Count(page, "Delete node"); n != 3 {
		t.Fatalf("%d node delete buttons, want 3 (none on blank rows)", n)
	}

	// The page as shown posts back to the same configuration.
	before := k.candidate()
	wantRedirect(t, k.form("/sip/server", shownForm(t, page, "/sip/server")), "/sip/server?ok=", "post the page as shown")
	sameConfig(t, "candidate after posting the page as shown", k.candidate(), before)
}

func TestSIPServerFormSave(t *testing.T) {
	k := ready(t)
	want := os4k()
	loc := wantRedirect(t, k.form("/sip/server", sipServerValues(want)), "/sip/server?ok=", "save os4k")
	k.wantSIPServer(want, "after the form")
	wantHTML(t, k.get(loc), http.StatusOK, "after the form", `id="flash"`, "SIP server settings saved in the candidate.",
		"Apply it on the Configuration page.", `value="OS4K"`)

	// A node in a blank row of group 2, typed with spaces; a blank row
	// before it is dropped.
	v := sipServerValues(want)
	g := sipP + ".nodeGroups[1].nodes[2]"
	v.Set(g+".name", " sb2 ")
	v.Set(g+".priority", "6")
	v.Set(g+".address", " 10.180.1.11 ")
	v.Set(g+".transport", "tcp")
	v.Set(g+".port", " 5060")
	wantRedirect(t, k.form("/sip/server", v), "/sip/server?ok=", "add a node")
	want.NodeGroups[1].Nodes = append(want.NodeGroups[1].Nodes, sbc.Node{Name: "sb2", Priority: 6, Address: "10.180.1.11", Transport: sbc.TransportTCP, Port: 5060})
	k.wantSIPServer(want, "after adding a node")

	// A new group through the blank group; stick unchecked.
	v = sipServerValues(want)
	ng := sipP + ".nodeGroups[2]"
	v.Set(ng+".name", "DR")
	v.Del(ng + ".stickWithNode")
	v.Set(ng+".nodes[1].name", "dr1")
	v.Set(ng+".nodes[1].priority", "1")
	v.Set(ng+".nodes[1].address", "dr.example.com")
	v.Set(ng+".nodes[1].port", "5061")
	wantRedirect(t, k.form("/sip/server", v), "/sip/server?ok=", "add a group")
	want.NodeGroups = append(want.NodeGroups, sbc.NodeGroup{Name: "DR", Nodes: []sbc.Node{{Name: "dr1", Priority: 1, Address: "dr.example.com", Transport: sbc.TransportTLS, Port: 5061}}})
	k.wantSIPServer(want, "after adding a group")

	// Delete buttons: a node, then a group; the rest keep their values.
	v = sipServerValues(want)
	v.Set("delete", sipP+".nodeGroups[0].nodes[0]")
	wantRedirect(t, k.form("/sip/server", v), "/sip/server?ok=", "delete a node")
	want.NodeGroups[0].Nodes = want.NodeGroups[0].Nodes[1:]
	k.wantSIPServer(want, "after deleting a node")
	v = sipServerValues(want)
	v.Set("delete", sipP+".nodeGroups[1]")
	v.Set(sipP+".keepalive.intervalSeconds", "60")
	wantRedirect(t, k.form("/sip/server", v), "/sip/server?ok=", "delete a group")
	want.NodeGroups = append(want.NodeGroups[:1], want.NodeGroups[2])
	want.Keepalive.IntervalSeconds = 60
	k.wantSIPServer(want, "after deleting a group")

	// Standalone with its one node.
	one := sbc.SIPServer{CommSystemType: sbc.CommStandalone, NodeGroups: want.NodeGroups[1:], Keepalive: want.Keepalive}
	wantRedirect(t, k.form("/sip/server", sipServerValues(one)), "/sip/server?ok=", "standalone")
	k.wantSIPServer(one, "after standalone")
	if k.running().Number != 1 {
		t.Fatal("a SIP server form applied the candidate")
	}
}

func TestSIPServerFormInvalid(t *testing.T) {
	k := ready(t)
	k.putSIPServer(os4k())
	before := k.candidate()
	post := func(what string, edit func(v url.Values)) string {
		t.Helper()
		v := sipServerValues(os4k())
		edit(v)
		page := wantHTML(t, k.form("/sip/server", v), http.StatusUnprocessableEntity, what,
			`id="error"`, "Nothing was saved. Correct the fields marked below.", `action="/sip/server"`)
		wantCSRFInputs(t, page, k.csrf, what)
		if strings.Contains(page, `<ul class="fields">`) {
			t.Fatalf("%s: errors placed at their fields are listed at the top too", what)
		}
		return page
	}
	n0 := sipP + ".nodeGroups[0].nodes"
	page := post("port 0", func(v url.Values) { v.Set(n0+"[1].port", "0") })
	wantFieldMessage(t, page, n0+"[1].port", "port 0 out of range 1-65535")
	pageHas(t, page, "port 0", `id="sbc.sipServer.nodeGroups[0].nodes[1].address" value="os4k-b.example.com"`)

	page = post("transport sctp", func(v url.Values) { v.Set(n0+"[0].transport", "sctp") })
	wantFieldMessage(t, page, n0+"[0].transport", `"sctp" is not one of udp, tcp, tls`)
	pageHas(t, page, "transport sctp", `<option value="sctp" selected>sctp (unknown)</option>`)
	page = post("duplicate node names", func(v url.Values) { v.Set(n0+"[1].name", "NODE1") })
	wantFieldMessage(t, page, n0+"[1].name", `duplicate "NODE1"`)
	page = post("standalone with two nodes", func(v url.Values) {
		v.Set(sipP+".commSystemType", "standalone")
		v.Set("delete", sipP+".nodeGroups[1]")
	})
	if sec := fieldHTML(t, page, sipP+".nodeGroups"); !strings.Contains(sec, `<span class="ferr">a standalone system has one node, found 2 in 1 groups</span>`) {
		t.Fatalf("the node groups do not show the standalone error:\n%s", sec)
	}
	page = post("keepalive interval 1", func(v url.Values) { v.Set(sipP+".keepalive.intervalSeconds", "1") })
	wantFieldMessage(t, page, sipP+".keepalive.intervalSeconds", "1 out of range 5-600")
	page = post("group without a name", func(v url.Values) { v.Set(sipP+".nodeGroups[1].name", "") })
	wantFieldMessage(t, page, sipP+".nodeGroups[1].name", "required")

	// Not numbers are shown as typed. A blank row before a refused one is
	// dropped, so the error is at the path the row would have had.
	page = post("not numbers", func(v url.Values) {
		for _, m := range []string{".name", ".priority", ".address", ".port"} {
			v.Set(n0+"[0]"+m, "")
		}
		v.Set(n0+"[1].port", "50x")
		v.Set(n0+"[1].priority", " ")
	})
	wantFieldMessage(t, page, n0+"[0].port", `"50x" is not a number`)
	wantFieldMessage(t, page, n0+"[0].priority", "required")
	pageHas(t, page, "not numbers", `id="sbc.sipServer.nodeGroups[0].nodes[0].port" value="50x"`, `id="sbc.sipServer.nodeGroups[0].nodes[0].priority" value=""`,
		`id="sbc.sipServer.nodeGroups[0].nodes[0].name" value="node2"`)
	sameConfig(t, "candidate after invalid SIP server forms", k.candidate(), before)

	wantStatus(t, k.form("/sip/server", url.Values{"csrf": {"wrong"}, sipP + ".commSystemType": {"clustered"}}), http.StatusForbidden, "form with a wrong token")
	wantStatus(t, k.form("/sip/server", url.Values{"delete": {"x"}}), http.StatusBadRequest, "form without the comm system type")
	sameConfig(t, "candidate after refused SIP server forms", k.candidate(), before)
}

func TestSubscribersPage(t *testing.T) {
	k := ready(t)
	R := subP
	page := wantHTML(t, k.get("/sip/subscribers-settings"), http.StatusOK, "GET /sip/subscribers-settings",
		`<a href="/sip/server" class="active">SIP</a>`, `href="/sip/server"`, `action="/sip/subscribers-settings"`,
		"Enable Remote Subscribers", "Enable register throttling", "Timer value towards subscriber - UDP (sec)",
		"Enable register throttling for TLS", "Timer value towards subscriber TCP/TLS (sec)", "Maximum throttling timer threshold (sec)",
		"Maximum registration expiry time (sec)", "Minimum registration interval (sec)", "Quarantine registration rate violators",
		"Quarantine duration (sec)", "INVITE No Answer timeout (msec)", "INVITE No Reply timeout (msec)",
		`id="`+R+`.enabled" checked`, `id="`+R+`.registerThrottling.streamEnabled" checked`, `id="`+R+`.quarantine.enabled">`,
		`id="`+R+`.maxExpirySeconds" value="2678400"`, `id="`+R+`.inviteNoAnswerTimeoutMs" value="360000"`,
		`<p class="banner warn" id="warn-`+R+`.maxExpirySeconds">`, "with a lower value, registrations of Zoom mobile clients are rejected")
	wantCSRFInputs(t, page, k.csrf, "GET /sip/subscribers-settings")
	before := k.candidate()
	wantRedirect(t, k.form("/sip/subscribers-settings", shownForm(t, page, "/sip/subscribers-settings")), "/sip/subscribers-settings?ok=", "post as shown")
	sameConfig(t, "candidate after posting the page as shown", k.candidate(), before)

	// Save: boxes left unchecked turn off.
	want := sbc.DefaultRemoteSubscribers()
	want.Enabled, want.RegisterThrottling.StreamEnabled = false, false
	want.MaxExpirySeconds, want.MinIntervalSeconds = 86400, 900
	want.Quarantine = sbc.Quarantine{Enabled: true, DurationSeconds: 1200}
	loc := wantRedirect(t, k.form("/sip/subscribers-settings", subscribersValues(want)), "/sip/subscribers-settings?ok=", "save")
	k.wantSubscribers(want, "after the form")
	wantHTML(t, k.get(loc), http.StatusOK, "after the form", `id="flash"`, "Remote subscriber settings saved in the candidate.",
		`id="`+R+`.maxExpirySeconds" value="86400"`, `<p class="banner err" id="warn-`+R+`.maxExpirySeconds">The value is lower than`)
}

func TestSubscribersFormInvalid(t *testing.T) {
	k := ready(t)
	before := k.candidate()
	post := func(what string, edit func(v url.Values)) string {
		t.Helper()
		v := subscribersValues(sbc.DefaultRemoteSubscribers())
		edit(v)
		page := wantHTML(t, k.form("/sip/subscribers-settings", v), http.StatusUnprocessableEntity, what, `id="error"`, "Nothing was saved.")
		wantCSRFInputs(t, page, k.csrf, what)
		return page
	}
	page := post("maxExpirySeconds 59", func(v url.Values) { v.Set(subP+".maxExpirySeconds", "59") })
	wantFieldMessage(t, page, subP+".maxExpirySeconds", "59 out of range 60-")
	page = post("minIntervalSeconds above maxExpirySeconds", func(v url.Values) {
		v.Set(subP+".maxExpirySeconds", "600")
		v.Set(subP+".minIntervalSeconds", "900")
	})
	wantFieldMessage(t, page, subP+".minIntervalSeconds", "900 exceeds maxExpirySeconds 600")
	page = post("threshold below the timers", func(v url.Values) { v.Set(subP+".registerThrottling.maxThresholdSeconds", "59") })
	wantFieldMessage(t, page, subP+".registerThrottling.maxThresholdSeconds", "59 out of range 60-86400")
	page = post("not numbers", func(v url.Values) {
		v.Set(subP+".inviteNoReplyTimeoutMs", "3 s")
		v.Set(subP+".quarantine.durationSeconds", "")
	})
	wantFieldMessage(t, page, subP+".inviteNoReplyTimeoutMs", `"3 s" is not a number`)
	wantFieldMessage(t, page, subP+".quarantine.durationSeconds", "required")
	pageHas(t, page, "not numbers", `id="`+subP+`.inviteNoReplyTimeoutMs" value="3 s"`)
	sameConfig(t, "candidate after invalid forms", k.candidate(), before)
	wantStatus(t, k.form("/sip/subscribers-settings", url.Values{"csrf": {"wrong"}, subP + ".maxExpirySeconds": {"600"}}), http.StatusForbidden, "wrong token")
	wantStatus(t, k.form("/sip/subscribers-settings", url.Values{subP + ".enabled": {"1"}}), http.StatusBadRequest, "incomplete form")
	sameConfig(t, "candidate after refused forms", k.candidate(), before)
}

func TestSIPPagesNeedSessionAndToken(t *testing.T) {
	k := ready(t)
	anon := k.newClient(true)
	before := k.candidate()
	for _, p := range []string{"/sip/server", "/sip/subscribers-settings"} {
		wantRedirect(t, k.do(req{Path: p, Client: anon}), "/login", "GET "+p+" without a session")
		body := url.Values{"csrf": {k.csrf}, sipP + ".commSystemType": {"standalone"}, subP + ".maxExpirySeconds": {"60"}}
		wantRedirect(t, k.do(req{Method: http.MethodPost, Path: p, Body: body, Client: anon}), "/login", "POST "+p+" without a session")
		body.Del("csrf")
		wantStatus(t, k.do(req{Method: http.MethodPost, Path: p, Body: body}), http.StatusForbidden, "POST "+p+" without a token")
	}
	sameConfig(t, "candidate after refused forms", k.candidate(), before)
}
