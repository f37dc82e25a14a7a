package sbc

// End-to-end calls with real peers: client A is a baresip registered
// through the SBC over TLS with mandatory SDES SRTP (the Zoom client);
// users B and C (C only in the tests that need a third party) are
// baresips registered directly at Kamailio, the PBX, over UDP with plain
// RTP (phones on the PBX). Kamailio connects calls between its users; it
// trusts the SBC's core address (a PBX trusts its trunks by address) and
// challenges B and C.
//
// Each side plays its own tone from a WAV file (A 1000 Hz, B 600 Hz, C
// 800 Hz) and records what it receives (baresip's sndfile module writes
// the decoded audio); a call passes when each side recorded the other's
// tone.

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/psigate/psigate/sbc/registrar"
	"github.com/psigate/psigate/sbc/sbctest"
)

// Ports of these tests, below the kernel's ephemeral range (32768 and up)
// and apart from the other tests' media ports (the media interop test's
// 17000-19999, the SIPp call tests' 26000-27999, the call and torture
// tests' 35000 and up): baresip A's RTP 20000-20199, B's 20200-20399,
// C's 20400-20599, the SBC's access media 21000-21499 and core media
// 21500-21999. tshark captures 20000-21999.
const (
	callPortsLow, callPortsHigh    = 20000, 21999
	rtpPortsA, rtpPortsB           = "20000-20199", "20200-20399"
	rtpPortsC                      = "20400-20599"
	accessMediaMin, accessMediaMax = 21000, 21499
	coreMediaMin, coreMediaMax     = 21500, 21999
)

const (
	userA, passA = "3001", "pw-3001-call"
	userB, passB = "3002", "pw-3002-call"
	userC, passC = "3003", "pw-3003-call"
	toneA, toneB = 1000.0, 600.0 // Hz
	toneC        = 800.0         // Hz

	// hostB and hostC are B's and C's loopback addresses: Kamailio
	// tells the SBC (on 127.0.0.1, trusted) from its phones by address.
	hostB, hostC = "127.0.0.5", "127.0.0.6"

	// heardAtLeast is how much of the other side's tone each recording
	// and each captured RTP stream must hold.
	heardAtLeast = time.Second
)

// TestBaresipCallThroughSBC: A calls B through the SBC and Kamailio; B
// answers; each hears the other's tone; A hangs up and B's call ends.
// tshark on loopback shows SDES SRTP on the access leg (A <-> the SBC's
// access media port: each packet carries an authentication tag, the
// payload is not the tone in G.711 but decrypts, under the keys of the
// SDP, to the sender's tone) and plain RTP on the core leg (the SBC's core
// media port <-> B: G.711 carrying the tones). Nothing of the core side
// (Kamailio's or B's addresses and ports, the core Call-ID) appears in
// the SIP messages on the access side, nor anything of A's on the core
// side; the ACK and the BYE to the PBX follow Kamailio's Record-Route.
func TestBaresipCallThroughSBC(t *testing.T) {
	tshark := sbctest.FindPeer(t, "tshark", "tshark")
	r := startBaresipCallRig(t)
	capture := startRTPCapture(t, tshark)

	r.a.command(t, "dial", "sip:"+userB+"@"+sbctest.KamailioRealm)
	r.b.await(t, "CALL_INCOMING", 10*time.Second)
	r.b.command(t, "accept", "")
	r.a.await(t, "CALL_ESTABLISHED", 10*time.Second)
	r.b.await(t, "CALL_ESTABLISHED", 5*time.Second)
	r.a.waitRecording(t, 2*time.Second)
	r.b.waitRecording(t, 2*time.Second)

	r.a.command(t, "hangup", "")
	r.a.await(t, "CALL_CLOSED", 5*time.Second)
	r.b.await(t, "CALL_CLOSED", 5*time.Second)
	capture.stop(t)
	r.waitNoCalls(t)

	r.a.checkHeard(t, toneB)
	r.b.checkHeard(t, toneA)

	access, core := r.a.callMedia(t), r.b.callMedia(t)
	t.Logf("access leg: A %s, SBC %s (%s); core leg: SBC %s, B %s", access.offer.addr, access.answer.addr, access.answer.crypto.Suite, core.offer.addr, core.answer.addr)
	checkCapturedMedia(t, capture, access, core)

	coreCall := r.coreCallID(t)
	r.checkTopology(t, coreCall, access, core)
	r.checkRouteSet(t, coreCall, "ACK", "BYE")
}

// TestBaresipCallFromPBX: B calls A, the PBX calls the client through the
// SBC; A answers with SRTP; each hears the other's tone; the hang-up of
// either side ends the other's call (B's BYE reaches A through Kamailio
// and the SBC; A's BYE reaches B along Kamailio's Record-Route, from the
// SBC's dialog as the callee). Neither side's SIP shows the other's
// addresses, as in TestBaresipCallThroughSBC.
func TestBaresipCallFromPBX(t *testing.T) {
	for _, hangsUp := range []string{"B", "A"} {
		t.Run(hangsUp+"HangsUp", func(t *testing.T) {
			r := startBaresipCallRig(t)
			r.b.command(t, "dial", "sip:"+userA+"@"+sbctest.KamailioRealm)
			r.a.await(t, "CALL_INCOMING", 10*time.Second)
			r.a.command(t, "accept", "")
			r.b.await(t, "CALL_ESTABLISHED", 10*time.Second)
			r.a.await(t, "CALL_ESTABLISHED", 5*time.Second)
			r.a.waitRecording(t, 2*time.Second)
			r.b.waitRecording(t, 2*time.Second)

			first, other := r.b, r.a
			if hangsUp == "A" {
				first, other = r.a, r.b
			}
			first.command(t, "hangup", "")
			first.await(t, "CALL_CLOSED", 5*time.Second)
			closed := other.await(t, "CALL_CLOSED", 5*time.Second)
			t.Logf("%s's call closed: %s", other.name, closed.Param)
			r.waitNoCalls(t)

			r.a.checkHeard(t, toneB)
			r.b.checkHeard(t, toneA)
			access, core := r.a.callMedia(t), r.b.callMedia(t)
			if access.offer.proto != "RTP/SAVP" || access.answer.proto != "RTP/SAVP" {
				t.Errorf("access leg SDP: the SBC offered %s, A answered %s; want RTP/SAVP both", access.offer.proto, access.answer.proto)
			}
			coreCall := r.coreCallID(t)
			r.checkTopology(t, coreCall, access, core)
			if hangsUp == "A" {
				r.checkRouteSet(t, coreCall, "BYE")
			}
		})
	}
}

// TestBaresipCallCancelled: A calls B and hangs up while B rings: the
// CANCEL crosses the SBC and Kamailio, B stops ringing, A's call ends
// with 487 and the SBC holds no call.
func TestBaresipCallCancelled(t *testing.T) {
	r := startBaresipCallRig(t)
	r.a.command(t, "dial", "sip:"+userB+"@"+sbctest.KamailioRealm)
	r.b.await(t, "CALL_INCOMING", 10*time.Second)
	r.a.await(t, "CALL_RINGING", 5*time.Second)
	r.a.command(t, "hangup", "")
	closed := r.b.await(t, "CALL_CLOSED", 5*time.Second)
	t.Logf("B stopped ringing: %s", closed.Param)
	r.a.await(t, "CALL_CLOSED", 5*time.Second)
	r.waitNoCalls(t)

	coreCall := r.coreCallID(t)
	var methods []string
	for _, req := range r.k.Requests(t) {
		if req.CallID == coreCall {
			methods = append(methods, req.Method)
		}
	}
	if !slices.Contains(methods, "CANCEL") {
		t.Errorf("Kamailio got %v from the SBC for the call, want a CANCEL", methods)
	}
	if got := r.a.finalResponse(t); got != 487 {
		t.Errorf("A's INVITE ended with %d, want 487 Request Terminated", got)
	}
}

// TestBaresipCallRejected: A calls B, who rejects the call while it rings
// (baresip answers 486): the 486 reaches A through Kamailio and the SBC,
// and the SBC holds no call.
func TestBaresipCallRejected(t *testing.T) {
	r := startBaresipCallRig(t)
	r.a.command(t, "dial", "sip:"+userB+"@"+sbctest.KamailioRealm)
	r.b.await(t, "CALL_INCOMING", 10*time.Second)
	r.b.command(t, "hangup", "")
	closed := r.a.await(t, "CALL_CLOSED", 5*time.Second)
	if !strings.HasPrefix(closed.Param, "486") {
		t.Errorf("A's call closed with %q, want B's 486", closed.Param)
	}
	if got := r.a.finalResponse(t); got != 486 {
		t.Errorf("A's INVITE ended with %d, want 486", got)
	}
	r.waitNoCalls(t)
}

// baresipCallRig is Kamailio with users A, B and C, the SBC in front of
// it, and the baresips of A and B, both registered; C's when a test
// starts it.
type baresipCallRig struct {
	k                 *sbctest.Kamailio
	s                 *Service
	tlsPort, corePort int
	a, b, c           *baresipPhone
	bin, modules      string
}

// startBaresipCallRig starts the rig; each edit changes the SBC's
// desired state before it is applied, after the rig's own.
func startBaresipCallRig(t *testing.T, edits ...func(*Desired)) *baresipCallRig {
	t.Helper()
	bin := sbctest.FindPeer(t, "baresip", "baresip-core")
	modules := sbctest.BaresipModules(t, "account.so", "g711.so", "srtp.so", "aufile.so", "aubridge.so", "sndfile.so", "menu.so", "ctrl_tcp.so")
	lo := netip.MustParseAddr("127.0.0.1")
	k := sbctest.StartKamailio(t, sbctest.KamailioOptions{
		Users:   map[string]string{userA: passA, userB: passB, userC: passC},
		Calls:   true,
		Trusted: []netip.Addr{lo}, // the SBC's core realm
	})
	tc := sbctest.NewCertificate(t)
	rig := func(d *Desired) {
		d.Realms[0].MediaMin, d.Realms[0].MediaMax = accessMediaMin, accessMediaMax
		d.Realms[1].MediaMin, d.Realms[1].MediaMax = coreMediaMin, coreMediaMax
		// baresip stands in for the Zoom client: SRTP only.
		d.Config.UserAgentProfiles = append(d.Config.UserAgentProfiles, UserAgentProfile{UserAgent: "baresip", MediaProfile: "Zoom"})
	}
	s, tlsPort, corePort := startTLSService(t, k.Addr, tc.TLS, append([]func(*Desired){rig}, edits...)...)
	r := &baresipCallRig{k: k, s: s, tlsPort: tlsPort, corePort: corePort, bin: bin, modules: modules}

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, tc.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	r.a = startBaresipPhone(t, "A", bin, modules, lo, caFile, rtpPortsA, toneA,
		fmt.Sprintf(`<sip:%s@%s;transport=tls>;auth_pass=%s;outbound="sip:127.0.0.1:%d;transport=tls";mediaenc=srtp-mand%s`,
			userA, sbctest.KamailioRealm, passA, tlsPort, phoneAccountParams))
	r.b = r.startPhoneOnPBX(t, "B", userB, passB, hostB, rtpPortsB, toneB)
	r.waitRegistered(t, userB, hostB)
	return r
}

// phoneAccountParams are the account parameters every baresip of the rig
// shares: a long registration, no MWI subscription, calls answered by
// the test, A-law only.
const phoneAccountParams = ";regint=600;mwi=no;answermode=manual;audio_codecs=PCMA"

// startPhoneOnPBX starts a baresip for user on host, registered directly
// at Kamailio over UDP with plain RTP (a phone on the PBX).
func (r *baresipCallRig) startPhoneOnPBX(t *testing.T, name, user, pass, host, rtpPorts string, tone float64) *baresipPhone {
	t.Helper()
	return startBaresipPhone(t, name, r.bin, r.modules, netip.MustParseAddr(host), "", rtpPorts, tone,
		fmt.Sprintf(`<sip:%s@%s>;auth_pass=%s;outbound="sip:%s"%s`, user, sbctest.KamailioRealm, pass, r.k.Addr, phoneAccountParams))
}

// startC starts C's baresip, a second phone on the PBX, and waits until
// it is registered.
func (r *baresipCallRig) startC(t *testing.T) {
	t.Helper()
	r.c = r.startPhoneOnPBX(t, "C", userC, passC, hostC, rtpPortsC, toneC)
	r.waitRegistered(t, userC, hostC)
}

// waitRegistered waits until A's registration holds at both the SBC and
// Kamailio, and user's (a phone on the PBX) at Kamailio from host.
func (r *baresipCallRig) waitRegistered(t *testing.T, user, host string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, _, _, why := baresipRegistered(t, r.s, r.k, r.a.proc, "sip:"+userA+"@"+sbctest.KamailioRealm, userA, r.corePort)
		if why == "" {
			why = "Kamailio has no binding for " + user + " from " + host
			for _, l := range r.k.Locations(t) {
				if l.AOR == user && strings.HasPrefix(l.Received, "sip:"+host+":") {
					why = ""
				}
			}
		}
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not registered within 20s: %s\nSBC bindings: %+v\nKamailio: %+v", why, r.s.Bindings(), r.k.Locations(t))
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

// waitNoCalls waits until the SBC holds no call.
func (r *baresipCallRig) waitNoCalls(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(r.s.Calls()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the SBC still holds %d calls 5s after both sides ended theirs: %+v", len(r.s.Calls()), r.s.Calls())
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// coreCallID is the Call-ID of the call's core leg: the INVITE the SBC
// sent Kamailio, or the one Kamailio relayed from B to the SBC (the SBC's
// INVITE is trusted, B's is challenged first).
func (r *baresipCallRig) coreCallID(t *testing.T) string {
	t.Helper()
	for _, req := range r.k.Requests(t) {
		if req.Method == "INVITE" {
			return req.CallID
		}
	}
	t.Fatal("Kamailio got no INVITE")
	return ""
}

// checkRouteSet checks that the SBC sent Kamailio each of methods within
// the core leg's dialog with a Route header naming Kamailio: it followed
// the Record-Route of the dialog's INVITE (RFC 3261 section 12.2.1.1).
func (r *baresipCallRig) checkRouteSet(t *testing.T, callID string, methods ...string) {
	t.Helper()
	got := map[string]bool{}
	var seen []string
	for _, req := range r.k.Requests(t) {
		if req.CallID != callID || req.Transport != "tcp" || req.Msg == nil {
			continue // B reaches Kamailio over UDP, the SBC over TCP
		}
		route := req.Msg.GetHeader("Route")
		seen = append(seen, fmt.Sprintf("%s (Route %v)", req.Method, route))
		if route != nil && strings.Contains(route.Value(), r.k.Addr.String()) {
			got[req.Method] = true
		}
	}
	for _, m := range methods {
		if !got[m] {
			t.Errorf("the SBC sent Kamailio no %s with a Route to %s; it sent %v", m, r.k.Addr, seen)
		}
	}
}

// checkTopology checks that the SIP messages A exchanged with the SBC
// (A's trace) name nothing of the core side, and those of the core leg
// (what Kamailio got from the SBC, what B exchanged) nothing of A's.
func (r *baresipCallRig) checkTopology(t *testing.T, coreCall string, access, core callMedia) {
	t.Helper()
	locB := r.location(t, userB)
	sipB, err := netip.ParseAddrPort(strings.TrimPrefix(strings.Split(locB.Received, ";")[0], "sip:"))
	if err != nil {
		t.Fatalf("B's received address %q: %v", locB.Received, err)
	}
	coreSide := []leak{
		{"B's address", regexp.QuoteMeta(hostB)},
		{"Kamailio's port", portPattern(r.k.Addr.Port())},
		{"the SBC's core SIP port", portPattern(uint16(r.corePort))},
		{"B's SIP port", portPattern(sipB.Port())},
		{"a core-leg media port", portPattern(core.offer.addr.Port())},
		{"a core-leg media port", portPattern(core.answer.addr.Port())},
		{"the core leg's Call-ID", regexp.QuoteMeta(coreCall)},
	}
	for _, m := range baresipTrace(r.a.proc.output()) {
		for _, l := range coreSide {
			if l.re().MatchString(m.raw) {
				t.Errorf("topology: a SIP message on the access side (%s %s -> %s) has %s:\n%s", m.transport, m.from, m.to, l.what, m.raw)
			}
		}
	}

	bindingA := r.binding(t, userA)
	sourceA, err := netip.ParseAddrPort(bindingA.Flow.Source)
	if err != nil {
		t.Fatalf("A's flow source %q: %v", bindingA.Flow.Source, err)
	}
	accessSide := []leak{
		{"A's Call-ID", regexp.QuoteMeta(access.callID)},
		{"A's SIP port", portPattern(sourceA.Port())},
		{"the SBC's TLS port", portPattern(uint16(r.tlsPort))},
		{"an access-leg media port", portPattern(access.offer.addr.Port())},
		{"an access-leg media port", portPattern(access.answer.addr.Port())},
		{"a Via of the TLS leg", `(?i)SIP/2\.0/TLS`},
		{"SDES keys", `(?i)a=crypto`},
	}
	var coreMsgs []string
	for _, req := range r.k.Requests(t) {
		if req.CallID == coreCall && req.Transport == "tcp" {
			coreMsgs = append(coreMsgs, req.Raw)
		}
	}
	for _, m := range baresipTrace(r.b.proc.output()) {
		coreMsgs = append(coreMsgs, m.raw)
	}
	for _, raw := range coreMsgs {
		for _, l := range accessSide {
			if l.re().MatchString(raw) {
				t.Errorf("topology: a SIP message on the core side has %s:\n%s", l.what, raw)
			}
		}
	}
}

// leak is something that must not cross the SBC, as a regular expression.
type leak struct{ what, pattern string }

func (l leak) re() *regexp.Regexp { return regexp.MustCompile(l.pattern) }

// portPattern finds a port in SIP: after a host (":5060"), in a Via's
// rport, in SDP's m= and a=rtcp: lines.
func portPattern(port uint16) string {
	return fmt.Sprintf(`(?:[0-9\]]:|rport=|m=audio |a=rtcp:)%d\b`, port)
}

func (r *baresipCallRig) location(t *testing.T, user string) sbctest.Location {
	t.Helper()
	for _, l := range r.k.Locations(t) {
		if l.AOR == user {
			return l
		}
	}
	t.Fatalf("Kamailio has no binding for %s", user)
	return sbctest.Location{}
}

func (r *baresipCallRig) binding(t *testing.T, user string) registrar.Binding {
	t.Helper()
	for _, b := range r.s.Bindings() {
		if b.AOR == "sip:"+user+"@"+sbctest.KamailioRealm {
			return b
		}
	}
	t.Fatalf("the SBC has no binding for %s", user)
	return registrar.Binding{}
}
