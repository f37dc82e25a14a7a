package webui_test

import (
	"html"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/psigate/psigate/netcfg"
	"github.com/psigate/psigate/sbc"
	"github.com/psigate/psigate/sbc/media"
)

// fieldHTML is the part of page from the element with id "field-<path>"
// (the wrapper of the input at that configuration path) to the next
// such wrapper, unescaped.
func fieldHTML(t *testing.T, page, path string) string {
	t.Helper()
	start := strings.Index(page, `id="field-`+path+`"`)
	if start < 0 {
		t.Fatalf("no element with id field-%s in the page:\n%s", path, page)
	}
	rest := page[start+1:]
	end := strings.Index(rest, `id="field-`)
	if end < 0 {
		end = len(rest)
	}
	return html.UnescapeString(page[start : start+1+end])
}

// wantFieldMessage fails unless the wrapper of the input at path holds
// that input and, after it, an error containing msg.
func wantFieldMessage(t *testing.T, page, path, msg string) {
	t.Helper()
	sec := fieldHTML(t, page, path)
	in := strings.Index(sec, `id="`+path+`"`)
	at := strings.Index(sec, `<span class="ferr">`)
	if in < 0 || at < in || !strings.Contains(sec[at:], msg) {
		t.Fatalf("field %s does not show %q after its input:\n%s", path, msg, sec)
	}
}

// profileValues is the profile form filled in with p, plus the blank
// codec rows the page offers.
func profileValues(p media.Profile) url.Values {
	v := url.Values{
		"name": {p.Name}, "protocol": {string(p.Protocol)}, "rtcpMode": {string(p.RTCPMode)},
		"telephoneEventPayloadType": {strconv.Itoa(p.TelephoneEventPayloadType)}, "suite": p.SDES.Suites,
		"busyTone": {p.BusyTone},
	}
	if p.BusyToneSeconds != 0 {
		v.Set("busyToneSeconds", strconv.Itoa(p.BusyToneSeconds))
	}
	for name, on := range map[string]bool{
		"sdesEnabled": p.SDES.Enabled, "allowUnconfiguredCodecs": p.AllowUnconfiguredCodecs,
		"enforceCodecPriority": p.EnforceCodecPriority, "enforcePacketization": p.EnforcePacketization,
		"keepSendonlyOnNAT": p.KeepSendonlyOnNAT, "transcoding": p.Transcoding,
	} {
		if on {
			v.Set(name, "1")
		}
	}
	for _, c := range p.Codecs {
		v.Add("codecName", c.Name)
		v.Add("codecPriority", strconv.Itoa(c.Priority))
		v.Add("codecPtime", strconv.Itoa(c.PacketizationMs))
	}
	for i := range 3 {
		v.Add("codecName", "")
		v.Add("codecPriority", strconv.Itoa(10+i))
		v.Add("codecPtime", "0")
	}
	return v
}

func TestMediaPage(t *testing.T) {
	k := ready(t)
	page := wantHTML(t, k.get("/media"), http.StatusOK, "GET /media",
		`<a href="/media" class="active">Media</a>`, `<strong class="profile-name">default</strong>`, `<strong class="profile-name">Zoom</strong>`,
		"AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32", "1. G722 (auto)<br>2. G711A (auto)", "SRTP only", "RTP only",
		`href="/media/profiles/Zoom"`, `action="/media/profiles/Zoom/delete"`, `href="/media/profiles/new"`, `id="add-profile"`,
		`value="ZoomPbxPhone"`, `<option value="Zoom" selected>Zoom</option>`, `action="/media/user-agents"`, `name="coreMediaProfile"`,
		`action="/media/ports"`, `value="20000"`, `value="29999"`, `href="/config"`, "The candidate equals the running configuration.")
	wantCSRFInputs(t, page, k.csrf, "GET /media")

	page = wantHTML(t, k.get("/media/profiles/Zoom"), http.StatusOK, "GET the Zoom profile",
		`action="/media/profiles/Zoom"`, `id="sbc.mediaProfiles[1].name" value="Zoom"`, `<option value="srtp" selected>SRTP only</option>`,
		`<option value="bypass" selected>Bypass</option>`, `id="suite-AES_CM_128_HMAC_SHA1_80" checked`, `id="suite-AEAD_AES_128_GCM">`,
		`<option value="G722" selected>G722</option>`, `id="sbc.mediaProfiles[1].enforceCodecPriority" checked`,
		`id="sbc.mediaProfiles[1].codecs[4].priority" value="5"`, `<option value="0" selected>Auto</option>`, "Rows without a codec are")
	wantCSRFInputs(t, page, k.csrf, "GET the Zoom profile")
	if n := strings.Count(page, `name="codecName"`); n != 4+3 {
		t.Fatalf("%d codec rows for Zoom, want 4 and 3 blank ones", n)
	}
	page = wantHTML(t, k.get("/media/profiles/new"), http.StatusOK, "GET the new profile form",
		`action="/media/profiles"`, `id="sbc.mediaProfiles[2].name" value=""`, `value="101"`, `<option value="rtp" selected>RTP only</option>`)
	if n := strings.Count(page, `name="codecName"`); n != 3 {
		t.Fatalf("%d codec rows for a new profile, want 3", n)
	}
	wantHTML(t, k.get("/media/profiles/Nope"), http.StatusNotFound, "GET a missing profile", `id="error"`, "no media profile named &#34;Nope&#34;")

	// A profile named "new" is reached with ?edit=1; names are escaped.
	for _, name := range []string{"new", "Red Sky/E911"} {
		p := redSky()
		p.Name = name
		wantStatus(t, k.send(http.MethodPut, "/api/v1/media/profiles/"+url.PathEscape(name), p), http.StatusOK, "create "+name)
	}
	wantHTML(t, k.get("/media"), http.StatusOK, "GET /media with more profiles", `href="/media/profiles/new?edit=1"`,
		`href="/media/profiles/Red%20Sky%2FE911"`, `action="/media/profiles/Red%20Sky%2FE911/delete"`, "2 pending differences from running.")
	wantHTML(t, k.get("/media/profiles/new?edit=1"), http.StatusOK, "GET the profile named new", `value="new"`, `action="/media/profiles/new"`)
	wantHTML(t, k.get("/media/profiles/Red%20Sky%2FE911"), http.StatusOK, "GET an escaped profile", `value="Red Sky/E911"`)
}

func TestMediaProfileFormInvalid(t *testing.T) {
	k := ready(t)
	before := k.candidate()
	v := profileValues(redSky())
	v["codecName"][1] = "G7299"
	v.Set("telephoneEventPayloadType", "200")
	v.Set("protocol", "srtp")
	v.Del("sdesEnabled")
	page := wantHTML(t, k.form("/media/profiles", v), http.StatusUnprocessableEntity, "invalid new profile",
		`id="error"`, "Nothing was saved.", `action="/media/profiles"`, `value="RedSky"`, `value="200"`, `<option value="G7299" selected>G7299 (unknown)</option>`)
	wantCSRFInputs(t, page, k.csrf, "invalid new profile")
	wantFieldMessage(t, page, "sbc.mediaProfiles[2].codecs[1].name", `unknown codec "G7299"`)
	wantFieldMessage(t, page, "sbc.mediaProfiles[2].telephoneEventPayloadType", "200 out of range 96-127")
	wantFieldMessage(t, page, "sbc.mediaProfiles[2].sdes.enabled", `protocol "srtp" needs SDES keying`)
	if strings.Contains(page, `<ul class="fields">`) {
		t.Fatal("errors placed at their fields are listed at the top too")
	}

	v = profileValues(media.DefaultProfiles()[1])
	v["codecPriority"][0] = ""
	v.Set("name", "default")
	page = wantHTML(t, k.form("/media/profiles/Zoom", v), http.StatusUnprocessableEntity, "invalid Zoom update", `action="/media/profiles/Zoom"`)
	wantFieldMessage(t, page, "sbc.mediaProfiles[1].codecs[0].priority", "required")

	v["codecPriority"] = []string{"1", "1", "3", "4", "10", "11", "12"}
	page = wantHTML(t, k.form("/media/profiles/Zoom", v), http.StatusUnprocessableEntity, "Zoom renamed to default")
	wantFieldMessage(t, page, "sbc.mediaProfiles[1].name", `duplicate "default" (also at sbc.mediaProfiles[0])`)
	v.Set("name", "Zoom")
	page = wantHTML(t, k.form("/media/profiles/Zoom", v), http.StatusUnprocessableEntity, "Zoom with a repeated priority")
	wantFieldMessage(t, page, "sbc.mediaProfiles[1].codecs[1].priority", `duplicate "1"`)
	sameConfig(t, "candidate after invalid profile forms", k.candidate(), before)
	wantHTML(t, k.form("/media/profiles/Nope", profileValues(redSky())), http.StatusNotFound, "update of a missing profile", `id="error"`)
	wantStatus(t, k.form("/media/profiles", url.Values{"csrf": {"wrong"}, "name": {"X"}}), http.StatusForbidden, "profile form with a wrong token")
	sameConfig(t, "candidate after refused profile forms", k.candidate(), before)
}

func TestMediaProfileFormSave(t *testing.T) {
	k := ready(t)
	loc := wantRedirect(t, k.form("/media/profiles", profileValues(redSky())), "/media?ok=", "create RedSky")
	k.wantProfile(2, redSky(), "after the create form")
	wantHTML(t, k.get(loc), http.StatusOK, "after the create form", `id="flash"`, "Profile &#34;RedSky&#34; saved in the candidate.",
		"Apply it on the Configuration page.", "1 pending difference from running.", `<strong class="profile-name">RedSky</strong>`)

	// A rename through the form moves the references.
	k.putCandidate(withEmergency(k.candidate(), "RedSky"))
	p := redSky()
	p.Name, p.RTCPMode = "Red Sky", media.RTCPBypass
	p.Codecs = p.Codecs[:1]
	wantRedirect(t, k.form("/media/profiles/RedSky", profileValues(p)), "/media?ok=", "rename RedSky")
	k.wantProfile(2, p, "after the rename form")
	if ep := k.candidate().SBC.Emergency.RemoteEndpoint; ep.MediaProfile != "Red Sky" {
		t.Fatalf("emergency media profile %q after the rename form", ep.MediaProfile)
	}
	zoom := media.DefaultProfiles()[1]
	zoom.Name = "Zoom PSI"
	wantRedirect(t, k.form("/media/profiles/Zoom", profileValues(zoom)), "/media?ok=", "rename Zoom")
	if ua := k.candidate().SBC.UserAgentProfiles[0]; ua.MediaProfile != "Zoom PSI" {
		t.Fatalf("user agent %+v after renaming Zoom", ua)
	}
	if k.running().Number != 1 {
		t.Fatal("a profile form applied the candidate")
	}
}

func TestMediaDeleteForm(t *testing.T) {
	k := ready(t)
	before := k.candidate()
	page := wantHTML(t, k.form("/media/profiles/Zoom/delete", nil), http.StatusUnprocessableEntity, "delete Zoom",
		`id="error"`, "Profile &#34;Zoom&#34; was not deleted: it is still used.")
	wantFieldMessage(t, page, "sbc.userAgentProfiles[0].mediaProfile", `uses media profile "Zoom"`)
	wantCSRFInputs(t, page, k.csrf, "delete Zoom")
	page = wantHTML(t, k.form("/media/profiles/default/delete", nil), http.StatusUnprocessableEntity, "delete default")
	wantFieldMessage(t, page, "sbc.coreMediaProfile", `uses media profile "default"`)
	wantHTML(t, k.form("/media/profiles/Nope/delete", nil), http.StatusNotFound, "delete a missing profile", `id="error"`)
	sameConfig(t, "candidate after refused deletes", k.candidate(), before)

	wantStatus(t, k.send(http.MethodPut, "/api/v1/media/profiles/RedSky", redSky()), http.StatusOK, "create RedSky")
	loc := wantRedirect(t, k.form("/media/profiles/RedSky/delete", nil), "/media?ok=", "delete RedSky")
	sameConfig(t, "candidate after delete", k.candidate(), before)
	wantHTML(t, k.get(loc), http.StatusOK, "after delete", "Profile &#34;RedSky&#34; deleted from the candidate.")
}

func TestMediaUserAgentsForm(t *testing.T) {
	k := ready(t)
	post := func(uas, profiles []string, extra ...string) resp {
		t.Helper()
		v := url.Values{"ua": uas, "uaProfile": profiles, "coreMediaProfile": {"Zoom"}}
		for i := 0; i+1 < len(extra); i += 2 {
			v.Set(extra[i], extra[i+1])
		}
		return k.form("/media/user-agents", v)
	}
	want := func(what string, list ...sbc.UserAgentProfile) {
		t.Helper()
		if got := k.candidate().SBC.UserAgentProfiles; !reflect.DeepEqual(got, list) {
			t.Fatalf("%s: user agents %+v, want %+v", what, got, list)
		}
	}
	zoom, yealink := sbc.UserAgentProfile{UserAgent: "ZoomPbxPhone", MediaProfile: "Zoom"}, sbc.UserAgentProfile{UserAgent: "Yealink", MediaProfile: "default"}
	wantRedirect(t, post([]string{"ZoomPbxPhone", " Yealink "}, []string{"Zoom", "default"}), "/media?ok=", "add a row")
	want("after adding", zoom, yealink)
	if core := k.candidate().SBC.CoreMediaProfile; core != "Zoom" {
		t.Fatalf("core media profile %q", core)
	}
	wantRedirect(t, post([]string{"ZoomPbxPhone", "Yealink", ""}, []string{"Zoom", "default", ""}, "up", "1"), "/media?ok=", "move up")
	want("after moving up", yealink, zoom)
	wantRedirect(t, post([]string{"Yealink", "ZoomPbxPhone", ""}, []string{"default", "Zoom", ""}, "delete", "0"), "/media?ok=", "delete a row")
	want("after deleting", zoom)

	before := k.candidate()
	page := wantHTML(t, post([]string{"", "X", ""}, []string{"Zoom", "Nope", ""}), http.StatusUnprocessableEntity, "invalid rows",
		`id="error"`, `<option value="Nope" selected>Nope (unknown)</option>`, `value="X"`)
	wantFieldMessage(t, page, "sbc.userAgentProfiles[0].userAgent", "required")
	wantFieldMessage(t, page, "sbc.userAgentProfiles[1].mediaProfile", `no media profile named "Nope"`)
	wantCSRFInputs(t, page, k.csrf, "invalid rows")
	wantStatus(t, k.form("/media/user-agents", url.Values{"coreMediaProfile": {"Zoom"}}), http.StatusBadRequest, "form without rows")
	sameConfig(t, "candidate after refused forms", k.candidate(), before)
}

func TestMediaPortsForm(t *testing.T) {
	k := ready(t)
	before := k.candidate()
	post := func(realms []string, mins, maxs []string) resp {
		t.Helper()
		return k.form("/media/ports", url.Values{"realm": realms, "min": mins, "max": maxs})
	}
	both := []string{"Main-Core-IPv4", "Main-Access-IPv4"}
	page := wantHTML(t, post(both, []string{"20000", "25001"}, []string{"24999", "29999"}), http.StatusUnprocessableEntity, "odd minimum", `value="25001"`)
	wantFieldMessage(t, page, "network.realms[1].mediaPorts.min", "must be even")
	page = wantHTML(t, post(both, []string{"5000", "25000"}, []string{"5999", "29999"}), http.StatusUnprocessableEntity, "SIP port inside")
	if sec := fieldHTML(t, page, "network.realms[0]"); !strings.Contains(sec, "port 5060 lies inside the media port range 5000-5999") {
		t.Fatalf("the core realm's row does not show the SIP port conflict:\n%s", sec)
	}
	page = wantHTML(t, post([]string{"Nowhere"}, []string{"30000"}, []string{"30999"}), http.StatusUnprocessableEntity, "unknown realm",
		`<li><code>mediaPorts[0].realm</code>: no realm named &#34;Nowhere&#34;</li>`)
	page = wantHTML(t, post(both, []string{"", "25000"}, []string{"24999", "x"}), http.StatusUnprocessableEntity, "not numbers")
	wantFieldMessage(t, page, "network.realms[0].mediaPorts.min", "required")
	wantFieldMessage(t, page, "network.realms[1].mediaPorts.max", `"x" is not a number`)
	sameConfig(t, "candidate after refused port forms", k.candidate(), before)

	loc := wantRedirect(t, post(both, []string{"20000", "30000"}, []string{"24999", "30999"}), "/media?ok=", "ports")
	if got := k.candidate().Network.Realms[1].MediaPorts; got != (netcfg.PortRange{Min: 30000, Max: 30999}) {
		t.Fatalf("access media ports %+v", got)
	}
	wantHTML(t, k.get(loc), http.StatusOK, "after ports", "Media ports saved in the candidate.", `value="30999"`)
}

func TestMediaPagesNeedSessionAndToken(t *testing.T) {
	k := ready(t)
	anon := k.newClient(true)
	for _, p := range []string{"/media", "/media/profiles/new", "/media/profiles/Zoom"} {
		wantRedirect(t, k.do(req{Path: p, Client: anon}), "/login", "GET "+p+" without a session")
	}
	before := k.candidate()
	for _, p := range []string{"/media/profiles", "/media/profiles/Zoom", "/media/profiles/RedSky/delete", "/media/user-agents", "/media/ports"} {
		wantRedirect(t, k.do(req{Method: http.MethodPost, Path: p, Body: url.Values{"csrf": {k.csrf}}, Client: anon}), "/login", "POST "+p+" without a session")
		wantStatus(t, k.do(req{Method: http.MethodPost, Path: p, Body: url.Values{"name": {"x"}, "ua": {""}, "realm": {""}}}), http.StatusForbidden, "POST "+p+" without a token")
	}
	sameConfig(t, "candidate after refused forms", k.candidate(), before)
}
