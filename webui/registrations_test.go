package webui_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/psigate/psigate/webui"
)

// sipFake stands in for the SBC's status: two subscribers, two nodes.
type sipFake struct{}

func (sipFake) Registrations() []webui.Registration {
	now := time.Now()
	return []webui.Registration{
		{AOR: "sip:1002@pbx.example.com", UserAgent: "ZoomPbxPhone 6.1", Transport: "TLS", Source: "203.0.113.9:50123", Since: now, Expires: now.Add(time.Minute), Node: "node1"},
		{AOR: "sip:1001@pbx.example.com", UserAgent: "Yealink T46", Transport: "UDP", Source: "198.51.100.4:5060", Since: now, Expires: now.Add(time.Minute), Node: "node2"},
	}
}

func (sipFake) Nodes() []webui.NodeStatus {
	return []webui.NodeStatus{
		{Group: "OS4K", Name: "node1", Address: "10.180.0.10:5060", Transport: "TCP", Priority: 1, Up: true},
		{Group: "OS4K", Name: "node2", Address: "10.180.0.11:5060", Transport: "TCP", Priority: 2, Failures: 3, LastError: "timeout"},
	}
}

func (sipFake) Calls() []webui.ActiveCall {
	return []webui.ActiveCall{{From: "sip:1001@pbx.example.com", To: "sip:2002@pbx.example.com", Direction: "client to PBX",
		CallerAgent: "ZoomPbxPhone 6.1", Started: time.Now(), Codecs: [2]string{"G722", "G722"}, SRTP: [2]bool{true, false},
		PacketsIn: [2]uint64{500, 498}, PacketsOut: [2]uint64{498, 500}}}
}

func withSIP(s webui.SIPStatus) kitOption { return func(o *webui.Options) { o.SIP = s } }

func TestRegistrationsAPIAndSearch(t *testing.T) {
	k := newKit(t, withSIP(sipFake{}))
	k.setup(goodPassword)
	k.login(goodPassword)
	r := k.get("/api/v1/sip/registrations")
	wantStatus(t, r, http.StatusOK, "registrations")
	var regs []webui.Registration
	if err := json.Unmarshal(r.Body, &regs); err != nil {
		t.Fatal(err)
	}
	if len(regs) != 2 || regs[0].AOR != "sip:1001@pbx.example.com" {
		t.Fatalf("registrations %+v, want both, sorted by AOR", regs)
	}
	for q, want := range map[string]int{"zoom": 1, "198.51.100": 1, "pbx.example.com": 2, "nobody": 0} {
		r := k.get("/api/v1/sip/registrations?q=" + q)
		var got []webui.Registration
		if err := json.Unmarshal(r.Body, &got); err != nil || len(got) != want {
			t.Errorf("search %q: %d results, want %d (%v)", q, len(got), want, err)
		}
	}
	r = k.get("/api/v1/sip/nodes")
	var nodes []webui.NodeStatus
	if err := json.Unmarshal(r.Body, &nodes); err != nil || len(nodes) != 2 || nodes[1].Up || nodes[1].LastError != "timeout" {
		t.Fatalf("nodes %+v %v", nodes, err)
	}
}

func TestRegistrationsPage(t *testing.T) {
	k := newKit(t, withSIP(sipFake{}))
	k.setup(goodPassword)
	k.login(goodPassword)
	page := wantHTML(t, k.get("/sip/registrations?q=zoom"), http.StatusOK, "registrations page",
		"sip:1002@pbx.example.com", "ZoomPbxPhone 6.1", "203.0.113.9:50123", `value="zoom"`, "node2", "down", "Registered subscribers (2)")
	if strings.Contains(page, "Yealink") {
		t.Error("the search did not filter")
	}
}

func TestRegistrationsWithoutSBC(t *testing.T) {
	k := newKit(t)
	k.setup(goodPassword)
	k.login(goodPassword)
	wantHTML(t, k.get("/sip/registrations"), http.StatusOK, "page", "No subscriber is registered.", "No PBX node is configured")
	r := k.get("/api/v1/sip/registrations")
	if strings.TrimSpace(r.String()) != "[]" {
		t.Fatalf("registrations without the SBC: %s", r.String())
	}
	if r := k.do(req{Method: "GET", Path: "/api/v1/sip/registrations", Client: k.newClient(false)}); r.Status != http.StatusUnauthorized {
		t.Fatalf("without login: %d", r.Status)
	}
}

func TestActiveCalls(t *testing.T) {
	k := newKit(t, withSIP(sipFake{}))
	k.setup(goodPassword)
	k.login(goodPassword)
	r := k.get("/api/v1/sip/calls")
	wantStatus(t, r, http.StatusOK, "calls")
	var calls []webui.ActiveCall
	if err := json.Unmarshal(r.Body, &calls); err != nil || len(calls) != 1 || calls[0].Codecs[0] != "G722" || !calls[0].SRTP[0] || calls[0].SRTP[1] {
		t.Fatalf("calls %+v %v", calls, err)
	}
	wantHTML(t, k.get("/sip/calls"), http.StatusOK, "calls page", "sip:2002@pbx.example.com", "ZoomPbxPhone 6.1", "G722 / G722", "yes / no", "500 / 498")
	k2 := newKit(t)
	k2.setup(goodPassword)
	k2.login(goodPassword)
	wantHTML(t, k2.get("/sip/calls"), http.StatusOK, "calls page without SBC", "No call in progress.")
}
