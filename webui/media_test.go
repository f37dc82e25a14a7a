package webui_test

import (
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"testing"

	"github.com/psigate/psigate/appliance/config"
	"github.com/psigate/psigate/netcfg"
	"github.com/psigate/psigate/sbc"
	"github.com/psigate/psigate/sbc/media"
)

// mediaAnswer is GET /api/v1/media.
type mediaAnswer struct {
	Profiles          []media.Profile        `json:"profiles"`
	UserAgentProfiles []sbc.UserAgentProfile `json:"userAgentProfiles"`
	CoreMediaProfile  string                 `json:"coreMediaProfile"`
	MediaPorts        []struct {
		Realm    string `json:"realm"`
		Min, Max int
	} `json:"mediaPorts"`
}

// redSky is a media profile for an E911 provider (seed 10.3.1).
func redSky() media.Profile {
	return media.Profile{
		Name: "RedSky", Protocol: media.ProtocolBestEffort, RTCPMode: media.RTCPTerminate,
		SDES:                 media.SDES{Enabled: true, Suites: []string{media.SuiteAEADAES128GCM, media.SuiteAES128SHA1_80}},
		Codecs:               []media.Codec{{Name: "G711U", Priority: 1, PacketizationMs: 20}, {Name: "G729", Priority: 2}},
		EnforcePacketization: true, KeepSendonlyOnNAT: true, TelephoneEventPayloadType: 96,
		BusyTone: media.BusyToneNorthAmerica, BusyToneSeconds: 3,
	}
}

// withEmergency is c with an E911 provider that uses the profile.
func withEmergency(c config.Config, profile string) config.Config {
	c.SBC.Emergency.RemoteEndpoint = &sbc.RemoteEndpoint{
		Name: "RedSky", Address: "e911.example.com", Port: 5061, Transport: sbc.TransportTLS,
		MediaProfile: profile, AccessRealm: "Main-Access-IPv4", CoreRealm: "Main-Core-IPv4",
	}
	return c
}

// wantProfile fails unless the candidate's profile i is want.
func (k *kit) wantProfile(i int, want media.Profile, what string) {
	k.t.Helper()
	got := k.candidate().SBC.MediaProfiles
	if i >= len(got) || !reflect.DeepEqual(got[i], want) {
		k.t.Fatalf("%s: candidate profiles %+v, want [%d] = %+v", what, got, i, want)
	}
}

func TestMediaAPIGet(t *testing.T) {
	k := ready(t)
	var m mediaAnswer
	r := k.get("/api/v1/media")
	wantStatus(t, r, http.StatusOK, "GET media")
	r.JSON(t, &m)
	if !reflect.DeepEqual(m.Profiles, media.DefaultProfiles()) {
		t.Fatalf("profiles %+v", m.Profiles)
	}
	if !reflect.DeepEqual(m.UserAgentProfiles, []sbc.UserAgentProfile{{UserAgent: "ZoomPbxPhone", MediaProfile: "Zoom"}}) || m.CoreMediaProfile != "default" {
		t.Fatalf("userAgentProfiles %+v, coreMediaProfile %q", m.UserAgentProfiles, m.CoreMediaProfile)
	}
	if len(m.MediaPorts) != 2 || m.MediaPorts[0].Realm != "Main-Core-IPv4" || m.MediaPorts[0].Min != 20000 || m.MediaPorts[1].Max != 29999 {
		t.Fatalf("mediaPorts %+v", m.MediaPorts)
	}
	wantStatus(t, k.do(req{Path: "/api/v1/media", Client: k.newClient(false)}), http.StatusUnauthorized, "GET media without a session")
}

func TestMediaAPIProfileLifecycle(t *testing.T) {
	k := ready(t)
	p := redSky()
	r := k.send(http.MethodPut, "/api/v1/media/profiles/RedSky", p)
	wantStatus(t, r, http.StatusOK, "create RedSky")
	var got media.Profile
	r.JSON(t, &got)
	if !reflect.DeepEqual(got, p) {
		t.Fatalf("PUT answered %+v", got)
	}
	k.wantProfile(2, p, "after create")

	// Replace; the name may be left out of the body.
	p.Codecs = append(p.Codecs, media.Codec{Name: "OPUS", Priority: 3, PacketizationMs: 40})
	p.Name = ""
	wantStatus(t, k.send(http.MethodPut, "/api/v1/media/profiles/RedSky", p), http.StatusOK, "replace RedSky")
	p.Name = "RedSky"
	k.wantProfile(2, p, "after replace")
	if n := len(k.candidate().SBC.MediaProfiles); n != 3 {
		t.Fatalf("%d profiles after replace, want 3", n)
	}

	// Rename: every reference follows, including the E911 endpoint's.
	k.putCandidate(withEmergency(k.candidate(), "RedSky"))
	uas := []sbc.UserAgentProfile{{UserAgent: "ZoomPbxPhone", MediaProfile: "Zoom"}, {UserAgent: "E911", MediaProfile: "RedSky"}}
	wantStatus(t, k.send(http.MethodPut, "/api/v1/media/user-agents", uas), http.StatusOK, "user agents")
	p.Name = "Red Sky/E911"
	wantStatus(t, k.send(http.MethodPut, "/api/v1/media/profiles/RedSky", p), http.StatusOK, "rename RedSky")
	c := k.candidate()
	k.wantProfile(2, p, "after rename")
	if c.SBC.UserAgentProfiles[1].MediaProfile != p.Name || c.SBC.Emergency.RemoteEndpoint.MediaProfile != p.Name || c.SBC.UserAgentProfiles[0].MediaProfile != "Zoom" {
		t.Fatalf("references after rename: %+v, emergency %q", c.SBC.UserAgentProfiles, c.SBC.Emergency.RemoteEndpoint.MediaProfile)
	}
	def := media.DefaultProfiles()[0]
	def.Name = "PBX"
	wantStatus(t, k.send(http.MethodPut, "/api/v1/media/profiles/default", def), http.StatusOK, "rename default")
	if core := k.candidate().SBC.CoreMediaProfile; core != "PBX" {
		t.Fatalf("coreMediaProfile %q after renaming default", core)
	}

	// Delete: refused while used (naming each user), then allowed.
	escaped := "/api/v1/media/profiles/" + url.PathEscape(p.Name)
	before := k.candidate()
	e := wantFieldError(t, k.send(http.MethodDelete, escaped, nil), "sbc.emergency.remoteEndpoint.mediaProfile", "delete a used profile")
	if !slices.Contains(e.paths(), "sbc.userAgentProfiles[1].mediaProfile") {
		t.Fatalf("delete refusal names %q", e.paths())
	}
	wantFieldError(t, k.send(http.MethodDelete, "/api/v1/media/profiles/PBX", nil), "sbc.coreMediaProfile", "delete the core profile")
	sameConfig(t, "candidate after refused deletes", k.candidate(), before)
	wantStatus(t, k.send(http.MethodPut, "/api/v1/media/user-agents", uas[:1]), http.StatusOK, "drop the E911 user agent")
	k.putCandidate(withEmergency(k.candidate(), "Zoom"))
	wantStatus(t, k.send(http.MethodDelete, escaped, nil), http.StatusNoContent, "delete an unused profile")
	if names := profileNames(k.candidate()); !slices.Equal(names, []string{"PBX", "Zoom"}) {
		t.Fatalf("profiles after delete %q", names)
	}
	wantStatus(t, k.send(http.MethodDelete, escaped, nil), http.StatusNotFound, "delete a missing profile")
	r = k.send(http.MethodPut, "/api/v1/media/profiles/Nope", redSky())
	wantStatus(t, r, http.StatusNotFound, "rename a missing profile")
	if k.running().Number != 1 {
		t.Fatal("media edits applied the candidate")
	}
}

func profileNames(c config.Config) []string {
	var out []string
	for _, p := range c.SBC.MediaProfiles {
		out = append(out, p.Name)
	}
	return out
}

func TestMediaAPIProfileRefusals(t *testing.T) {
	k := ready(t)
	before := k.candidate()
	edit := func(f func(*media.Profile)) media.Profile {
		p := redSky()
		f(&p)
		return p
	}
	cases := []struct {
		what, name string
		body       any
		status     int
		path       string
	}{
		{"unknown codec", "RedSky", edit(func(p *media.Profile) { p.Codecs[1].Name = "G7299" }), 422, "sbc.mediaProfiles[2].codecs[1].name"},
		{"payload type", "RedSky", edit(func(p *media.Profile) { p.TelephoneEventPayloadType = 200 }), 422, "sbc.mediaProfiles[2].telephoneEventPayloadType"},
		{"SRTP without SDES", "RedSky", edit(func(p *media.Profile) { p.Protocol, p.SDES.Enabled = media.ProtocolSRTP, false }), 422, "sbc.mediaProfiles[2].sdes.enabled"},
		{"packetization", "RedSky", edit(func(p *media.Profile) { p.Codecs[0].PacketizationMs = 25 }), 422, "sbc.mediaProfiles[2].codecs[0].packetizationMs"},
		{"duplicate codec", "RedSky", edit(func(p *media.Profile) { p.Codecs[1].Name = "G711U" }), 422, "sbc.mediaProfiles[2].codecs[1].name"},
		{"duplicate name on create", "zoom", edit(func(p *media.Profile) { p.Name = "zoom" }), 422, "sbc.mediaProfiles[2].name"},
		{"duplicate name on rename", "default", edit(func(p *media.Profile) { p.Name = "Zoom" }), 422, "sbc.mediaProfiles[0].name"},
		{"wrong type", "Zoom", map[string]any{"name": "Zoom", "telephoneEventPayloadType": "101"}, 422, "sbc.mediaProfiles[1].telephoneEventPayloadType"},
		{"unknown field", "Zoom", map[string]any{"name": "Zoom", "colour": "red"}, 400, ""},
		{"not JSON", "Zoom", "{", 400, ""},
	}
	for _, c := range cases {
		wantRefusal(t, k.send(http.MethodPut, "/api/v1/media/profiles/"+c.name, c.body), c.status, c.path, c.what)
	}
	sameConfig(t, "candidate after refused profiles", k.candidate(), before)
	if n := k.auditCount("candidate", false); n < 7 {
		t.Fatalf("%d refused candidate edits audited, want at least 7", n)
	}
}

func TestMediaAPIUserAgentsCoreAndPorts(t *testing.T) {
	k := ready(t)
	uas := []sbc.UserAgentProfile{{UserAgent: "Yealink", MediaProfile: "default"}, {UserAgent: "ZoomPbxPhone", MediaProfile: "Zoom"}}
	r := k.send(http.MethodPut, "/api/v1/media/user-agents", uas)
	wantStatus(t, r, http.StatusOK, "user agents")
	var m mediaAnswer
	r.JSON(t, &m)
	if !reflect.DeepEqual(m.UserAgentProfiles, uas) || !reflect.DeepEqual(k.candidate().SBC.UserAgentProfiles, uas) {
		t.Fatalf("user agents answered %+v, stored %+v", m.UserAgentProfiles, k.candidate().SBC.UserAgentProfiles)
	}
	wantStatus(t, k.send(http.MethodPut, "/api/v1/media/core-profile", map[string]string{"mediaProfile": "Zoom"}), http.StatusOK, "core profile")
	if core := k.candidate().SBC.CoreMediaProfile; core != "Zoom" {
		t.Fatalf("coreMediaProfile %q", core)
	}
	ports := []map[string]any{{"realm": "Main-Access-IPv4", "min": 30000, "max": 30999}}
	wantStatus(t, k.send(http.MethodPut, "/api/v1/media/ports", ports), http.StatusOK, "ports")
	realms := k.candidate().Network.Realms
	if realms[1].MediaPorts != (netcfg.PortRange{Min: 30000, Max: 30999}) || realms[0].MediaPorts != (netcfg.PortRange{Min: 20000, Max: 24999}) {
		t.Fatalf("media ports %+v, %+v", realms[0].MediaPorts, realms[1].MediaPorts)
	}

	before := k.candidate()
	port := func(realm string, min, max int) []map[string]any {
		return []map[string]any{{"realm": realm, "min": min, "max": max}}
	}
	cases := []struct {
		what, path string
		body       any
		status     int
		want       string
	}{
		{"unknown UA profile", "user-agents", []sbc.UserAgentProfile{uas[0], {UserAgent: "X", MediaProfile: "Nope"}}, 422, "sbc.userAgentProfiles[1].mediaProfile"},
		{"empty user agent", "user-agents", []sbc.UserAgentProfile{{MediaProfile: "Zoom"}}, 422, "sbc.userAgentProfiles[0].userAgent"},
		{"duplicate user agent", "user-agents", []sbc.UserAgentProfile{uas[0], uas[0]}, 422, "sbc.userAgentProfiles[1].userAgent"},
		{"unknown core profile", "core-profile", map[string]string{"mediaProfile": "Nope"}, 422, "sbc.coreMediaProfile"},
		{"empty core profile", "core-profile", map[string]string{}, 422, "sbc.coreMediaProfile"},
		{"unknown realm", "ports", port("Nowhere", 30000, 30999), 422, "mediaPorts[0].realm"},
		{"min odd", "ports", port("Main-Access-IPv4", 30001, 30999), 422, "network.realms[1].mediaPorts.min"},
		{"max below min", "ports", port("Main-Access-IPv4", 30000, 30001), 422, "network.realms[1].mediaPorts.max"},
		{"SIP port inside", "ports", port("Main-Core-IPv4", 5000, 5999), 422, "network.realms[0].sipPorts.udp"},
		{"overlap", "ports", port("Main-Access-IPv4", 24000, 26999), 422, "network.realms[1].mediaPorts"},
		{"ports not a list", "ports", map[string]any{"realm": "x"}, 400, ""},
		{"unknown field", "core-profile", map[string]string{"profile": "Zoom"}, 400, ""},
	}
	for _, c := range cases {
		wantRefusal(t, k.send(http.MethodPut, "/api/v1/media/"+c.path, c.body), c.status, c.want, c.what)
	}
	sameConfig(t, "candidate after refusals", k.candidate(), before)
}

func TestMediaAPICSRF(t *testing.T) {
	k := ready(t)
	before := k.candidate()
	calls := []struct {
		method, path string
		body         any
	}{
		{http.MethodPut, "/api/v1/media/profiles/RedSky", redSky()},
		{http.MethodDelete, "/api/v1/media/profiles/Zoom", nil},
		{http.MethodPut, "/api/v1/media/user-agents", []sbc.UserAgentProfile{}},
		{http.MethodPut, "/api/v1/media/core-profile", map[string]string{"mediaProfile": "Zoom"}},
		{http.MethodPut, "/api/v1/media/ports", []map[string]any{{"realm": "Main-Access-IPv4", "min": 30000, "max": 30999}}},
	}
	for _, c := range calls {
		// The kit's client sends the session cookie.
		r := k.do(req{Method: c.method, Path: c.path, Body: c.body})
		wantStatus(t, r, http.StatusForbidden, c.method+" "+c.path+" with the cookie and no CSRF token")
		r = k.do(req{Method: c.method, Path: c.path, Body: c.body, Header: map[string]string{"X-CSRF-Token": "wrong"}})
		wantStatus(t, r, http.StatusForbidden, c.method+" "+c.path+" with a wrong CSRF token")
	}
	sameConfig(t, "candidate after CSRF refusals", k.candidate(), before)
	if n := k.auditCount("csrf-refused", false); n != 2*len(calls) {
		t.Fatalf("%d csrf-refused events, want %d", n, 2*len(calls))
	}
	// A Bearer token needs no CSRF token.
	r := k.do(req{Method: http.MethodPut, Path: "/api/v1/media/core-profile", Body: map[string]string{"mediaProfile": "Zoom"}, Header: k.bearer(), Client: k.newClient(false)})
	wantStatus(t, r, http.StatusOK, "core profile with a Bearer token")
}
