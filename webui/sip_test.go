package webui_test

import (
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/psigate/psigate/sbc"
)

// os4k is a clustered OpenScape 4000 as in seed 9.2: group "OS4K" with
// a TLS and a TCP node, and a standby group.
func os4k() sbc.SIPServer {
	return sbc.SIPServer{
		CommSystemType: sbc.CommClustered,
		NodeGroups: []sbc.NodeGroup{
			{Name: "OS4K", StickWithNode: true, Nodes: []sbc.Node{
				{Name: "node1", Priority: 1, Address: "10.180.0.10", Transport: sbc.TransportTLS, Port: 5061},
				{Name: "node2", Priority: 2, Address: "os4k-b.example.com", Transport: sbc.TransportTCP, Port: 5060},
			}},
			{Name: "Standby", Nodes: []sbc.Node{
				{Name: "sb1", Priority: 5, Address: "10.180.1.10", Transport: sbc.TransportTLS, Port: 5061},
			}},
		},
		Keepalive: sbc.Keepalive{IntervalSeconds: 20, FailureThreshold: 4},
	}
}

// wantSIPServer fails unless the candidate's SIP server section is want.
func (k *kit) wantSIPServer(want sbc.SIPServer, what string) {
	k.t.Helper()
	if got := k.candidate().SBC.SIPServer; !reflect.DeepEqual(got, want) {
		k.t.Fatalf("%s: candidate sipServer\n%+v\nwant\n%+v", what, got, want)
	}
}

// wantSubscribers fails unless the candidate's remote subscribers are want.
func (k *kit) wantSubscribers(want sbc.RemoteSubscribers, what string) {
	k.t.Helper()
	if got := k.candidate().SBC.RemoteSubscribers; !reflect.DeepEqual(got, want) {
		k.t.Fatalf("%s: candidate remoteSubscribers\n%+v\nwant\n%+v", what, got, want)
	}
}

func TestSIPServerAPIRoundTrip(t *testing.T) {
	k := ready(t)
	var got sbc.SIPServer
	r := k.get("/api/v1/sip/server")
	wantStatus(t, r, http.StatusOK, "GET sip server")
	r.JSON(t, &got)
	if !reflect.DeepEqual(got, sbc.DefaultSIPServer()) {
		t.Fatalf("GET answered %+v, want the defaults", got)
	}
	if want := `"nodeGroups": []`; !strings.Contains(r.String(), want) {
		t.Fatalf("GET answer lacks %s:\n%s", want, r.Body)
	}

	s := os4k()
	r = k.send(http.MethodPut, "/api/v1/sip/server", s)
	wantStatus(t, r, http.StatusOK, "PUT os4k")
	got = sbc.SIPServer{}
	r.JSON(t, &got)
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("PUT answered %+v", got)
	}
	k.wantSIPServer(s, "after PUT")
	got = sbc.SIPServer{}
	k.get("/api/v1/sip/server").JSON(t, &got)
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("GET after PUT answered %+v", got)
	}

	// Standalone: one group with one node. Absent lists become [].
	one := sbc.SIPServer{CommSystemType: sbc.CommStandalone, NodeGroups: s.NodeGroups[1:], Keepalive: s.Keepalive}
	wantStatus(t, k.send(http.MethodPut, "/api/v1/sip/server", one), http.StatusOK, "PUT standalone")
	k.wantSIPServer(one, "after standalone")
	wantStatus(t, k.send(http.MethodPut, "/api/v1/sip/server", map[string]any{"commSystemType": "clustered", "keepalive": map[string]int{"intervalSeconds": 30, "failureThreshold": 3}}),
		http.StatusOK, "PUT without nodeGroups")
	k.wantSIPServer(sbc.DefaultSIPServer(), "after PUT without nodeGroups")
	if k.running().Number != 1 {
		t.Fatal("SIP server edits applied the candidate")
	}
	if n := k.auditCount("candidate", true); n != 3 {
		t.Fatalf("%d saved candidate edits audited, want 3", n)
	}
	wantStatus(t, k.do(req{Path: "/api/v1/sip/server", Client: k.newClient(false)}), http.StatusUnauthorized, "GET sip server without a session")
}

func TestSIPServerAPIRefusals(t *testing.T) {
	k := ready(t)
	k.putSIPServer(os4k())
	before := k.candidate()
	edit := func(f func(*sbc.SIPServer)) sbc.SIPServer {
		s := os4k()
		f(&s)
		return s
	}
	const n = "sbc.sipServer.nodeGroups[0].nodes"
	cases := []struct {
		what   string
		body   any
		status int
		path   string
	}{
		{"port 0", edit(func(s *sbc.SIPServer) { s.NodeGroups[0].Nodes[1].Port = 0 }), 422, n + "[1].port"},
		{"transport sctp", edit(func(s *sbc.SIPServer) { s.NodeGroups[0].Nodes[0].Transport = "sctp" }), 422, n + "[0].transport"},
		{"duplicate node names", edit(func(s *sbc.SIPServer) { s.NodeGroups[0].Nodes[1].Name = "NODE1" }), 422, n + "[1].name"},
		{"standalone with two nodes", edit(func(s *sbc.SIPServer) { s.CommSystemType, s.NodeGroups = sbc.CommStandalone, s.NodeGroups[:1] }), 422, "sbc.sipServer.nodeGroups"},
		{"keepalive interval 1", edit(func(s *sbc.SIPServer) { s.Keepalive.IntervalSeconds = 1 }), 422, "sbc.sipServer.keepalive.intervalSeconds"},
		{"keepalive threshold 11", edit(func(s *sbc.SIPServer) { s.Keepalive.FailureThreshold = 11 }), 422, "sbc.sipServer.keepalive.failureThreshold"},
		{"duplicate group names", edit(func(s *sbc.SIPServer) { s.NodeGroups[1].Name = "os4k" }), 422, "sbc.sipServer.nodeGroups[1].name"},
		{"group without nodes", edit(func(s *sbc.SIPServer) { s.NodeGroups[1].Nodes = nil }), 422, "sbc.sipServer.nodeGroups[1].nodes"},
		{"bad address", edit(func(s *sbc.SIPServer) { s.NodeGroups[1].Nodes[0].Address = "10.180.1.300" }), 422, "sbc.sipServer.nodeGroups[1].nodes[0].address"},
		{"priority 0", edit(func(s *sbc.SIPServer) { s.NodeGroups[1].Nodes[0].Priority = 0 }), 422, "sbc.sipServer.nodeGroups[1].nodes[0].priority"},
		{"unknown comm system type", edit(func(s *sbc.SIPServer) { s.CommSystemType = "cluster" }), 422, "sbc.sipServer.commSystemType"},
		{"port as a string", map[string]any{"commSystemType": "clustered", "nodeGroups": []any{
			map[string]any{"name": "OS4K", "nodes": []any{map[string]any{"name": "a", "port": 5060}, map[string]any{"name": "b", "port": "5061"}}},
		}}, 422, n + "[1].port"},
		{"stick as a string", map[string]any{"nodeGroups": []any{map[string]any{"name": "A"}, map[string]any{"name": "B", "stickWithNode": "yes"}}},
			422, "sbc.sipServer.nodeGroups[1].stickWithNode"},
		{"node not an object", map[string]any{"nodeGroups": []any{map[string]any{"name": "A", "nodes": []any{7}}}}, 422, n + "[0]"},
		{"unknown field", map[string]any{"commSystemType": "clustered", "nodes": []any{}}, 400, ""},
		{"not JSON", "{", 400, ""},
	}
	for _, c := range cases {
		wantRefusal(t, k.send(http.MethodPut, "/api/v1/sip/server", c.body), c.status, c.path, c.what)
	}
	sameConfig(t, "candidate after refused SIP server edits", k.candidate(), before)
	if n := k.auditCount("candidate", false); n != 11 {
		t.Fatalf("%d refused candidate edits audited, want 11 (one per invalid configuration)", n)
	}
}

// putSIPServer stores s through the API and expects 200.
func (k *kit) putSIPServer(s sbc.SIPServer) {
	k.t.Helper()
	wantStatus(k.t, k.send(http.MethodPut, "/api/v1/sip/server", s), http.StatusOK, "PUT sip server")
}

func TestRemoteSubscribersAPIRoundTrip(t *testing.T) {
	k := ready(t)
	var got sbc.RemoteSubscribers
	r := k.get("/api/v1/sip/remote-subscribers")
	wantStatus(t, r, http.StatusOK, "GET remote subscribers")
	r.JSON(t, &got)
	if !reflect.DeepEqual(got, sbc.DefaultRemoteSubscribers()) {
		t.Fatalf("GET answered %+v, want the defaults", got)
	}
	rs := sbc.DefaultRemoteSubscribers()
	rs.RegisterThrottling.StreamEnabled, rs.RegisterThrottling.StreamSeconds = false, 120
	rs.MinIntervalSeconds, rs.Quarantine = 600, sbc.Quarantine{Enabled: true, DurationSeconds: 900}
	rs.InviteNoReplyTimeoutMs = 4000
	r = k.send(http.MethodPut, "/api/v1/sip/remote-subscribers", rs)
	wantStatus(t, r, http.StatusOK, "PUT remote subscribers")
	got = sbc.RemoteSubscribers{}
	r.JSON(t, &got)
	if !reflect.DeepEqual(got, rs) {
		t.Fatalf("PUT answered %+v", got)
	}
	k.wantSubscribers(rs, "after PUT")
	got = sbc.RemoteSubscribers{}
	k.get("/api/v1/sip/remote-subscribers").JSON(t, &got)
	if !reflect.DeepEqual(got, rs) {
		t.Fatalf("GET after PUT answered %+v", got)
	}
	if k.running().Number != 1 {
		t.Fatal("remote subscriber edits applied the candidate")
	}
}

func TestRemoteSubscribersAPIRefusals(t *testing.T) {
	k := ready(t)
	before := k.candidate()
	edit := func(f func(*sbc.RemoteSubscribers)) sbc.RemoteSubscribers {
		r := sbc.DefaultRemoteSubscribers()
		f(&r)
		return r
	}
	const R = "sbc.remoteSubscribers"
	cases := []struct {
		what   string
		body   any
		status int
		path   string
	}{
		{"maxExpirySeconds 59", edit(func(r *sbc.RemoteSubscribers) { r.MaxExpirySeconds = 59 }), 422, R + ".maxExpirySeconds"},
		{"minIntervalSeconds above maxExpirySeconds", edit(func(r *sbc.RemoteSubscribers) { r.MaxExpirySeconds, r.MinIntervalSeconds = 600, 900 }), 422, R + ".minIntervalSeconds"},
		{"threshold below the UDP timer", edit(func(r *sbc.RemoteSubscribers) {
			r.RegisterThrottling.UDPSeconds, r.RegisterThrottling.MaxThresholdSeconds = 120, 100
		}), 422, R + ".registerThrottling.maxThresholdSeconds"},
		{"stream timer 5", edit(func(r *sbc.RemoteSubscribers) { r.RegisterThrottling.StreamSeconds = 5 }), 422, R + ".registerThrottling.streamSeconds"},
		{"quarantine 0", edit(func(r *sbc.RemoteSubscribers) { r.Quarantine.DurationSeconds = 0 }), 422, R + ".quarantine.durationSeconds"},
		{"no reply 100", edit(func(r *sbc.RemoteSubscribers) { r.InviteNoReplyTimeoutMs = 100 }), 422, R + ".inviteNoReplyTimeoutMs"},
		{"wrong type", map[string]any{"registerThrottling": map[string]any{"udpSeconds": "60"}}, 422, R + ".registerThrottling.udpSeconds"},
		{"unknown field", map[string]any{"enabled": true, "portMappingTTL": 2}, 400, ""},
		{"a list", []any{}, 400, ""},
	}
	for _, c := range cases {
		wantRefusal(t, k.send(http.MethodPut, "/api/v1/sip/remote-subscribers", c.body), c.status, c.path, c.what)
	}
	sameConfig(t, "candidate after refused remote subscriber edits", k.candidate(), before)
}

func TestSIPAPICSRF(t *testing.T) {
	k := ready(t)
	before := k.candidate()
	calls := []struct {
		path string
		body any
	}{
		{"/api/v1/sip/server", os4k()},
		{"/api/v1/sip/remote-subscribers", sbc.DefaultRemoteSubscribers()},
	}
	for _, c := range calls {
		// The kit's client sends the session cookie.
		r := k.do(req{Method: http.MethodPut, Path: c.path, Body: c.body})
		wantStatus(t, r, http.StatusForbidden, "PUT "+c.path+" with the cookie and no CSRF token")
		r = k.do(req{Method: http.MethodPut, Path: c.path, Body: c.body, Header: map[string]string{"X-CSRF-Token": "wrong"}})
		wantStatus(t, r, http.StatusForbidden, "PUT "+c.path+" with a wrong CSRF token")
		r = k.do(req{Method: http.MethodPut, Path: c.path, Body: c.body, Client: k.newClient(false)})
		wantStatus(t, r, http.StatusUnauthorized, "PUT "+c.path+" without a session")
	}
	sameConfig(t, "candidate after CSRF refusals", k.candidate(), before)
	if n := k.auditCount("csrf-refused", false); n != 2*len(calls) {
		t.Fatalf("%d csrf-refused events, want %d", n, 2*len(calls))
	}
	// A Bearer token needs no CSRF token.
	r := k.do(req{Method: http.MethodPut, Path: "/api/v1/sip/server", Body: os4k(), Header: k.bearer(), Client: k.newClient(false)})
	wantStatus(t, r, http.StatusOK, "PUT sip server with a Bearer token")
	k.wantSIPServer(os4k(), "after the Bearer PUT")
}
