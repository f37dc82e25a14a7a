package sbc

// End-to-end tests of what happens inside and around a call, with the
// rig of baresip_call_test.go (A through the SBC over TLS with SRTP, B
// and C on Kamailio): hold and resume by re-INVITE from either side, the
// busy tone the SBC plays when the PBX refuses a call as busy, and a blind
// transfer by REFER.
//
// baresip 1.0.0 drops its recorder (sndfile) from the receiving audio
// pipeline when a re-INVITE such as hold's updates the call's audio
// stream (its audio_debug then shows "aubridge <--- PCMA", no sndfile,
// and the recording stops growing while RTP still arrives): what the
// phones hear after hold and resume is checked on the wire instead, in
// tshark's capture of the call's RTP.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/sdp/v3"
	"github.com/psigate/psigate/sbc/media"
	"github.com/psigate/psigate/sbc/media/sdes"
	"github.com/psigate/psigate/sbc/sbctest"
)

const (
	// holdFor is how long a call stays on hold; the capture must show
	// no media towards either phone meanwhile.
	holdFor = 1500 * time.Millisecond
	// resumedFor is how much media the SBC relays each way after the
	// resume before A hangs up; each of the four streams must carry
	// heardAtLeast of its tone in it.
	resumedFor = 2 * time.Second
	// settle is left out at the start of each window: packets already on
	// their way when the exchange completed.
	settle = 300 * time.Millisecond
)

// TestBaresipHoldAndResume: during a call between A and B, one side puts
// the call on hold (baresip's hold: a re-INVITE with a=sendonly) and
// resumes it (a re-INVITE with a=sendrecv). Each re-INVITE crosses the
// SBC into the other leg's dialog with the direction the other side must
// see, and the answer comes back with the matching direction:
//
//   - A holds: B is offered sendonly and answers recvonly; A gets
//     recvonly from the SBC.
//   - B holds: B gets recvonly from the SBC; A, a Zoom client behind
//     NAT, is offered sendrecv instead of sendonly (the Zoom profile's
//     "keep sendonly attribute on NAT" is off, so the client plays the
//     music on hold it gets), and the SRTP keys stay as they were.
//
// While the call is held the SBC sends no media to either phone, not even
// what A keeps sending when it was told sendrecv; once resumed, all four
// streams (SRTP both ways on the access leg, RTP on the core leg) carry
// the two tones again.
func TestBaresipHoldAndResume(t *testing.T) {
	for _, holder := range []string{"A", "B"} {
		t.Run(holder+"Holds", func(t *testing.T) {
			tshark := sbctest.FindPeer(t, "tshark", "tshark")
			r := startBaresipCallRig(t)
			capture := startRTPCapture(t, tshark)
			r.connect(t)
			h, o := r.a, r.b
			if holder == "B" {
				h, o = r.b, r.a
			}

			h.command(t, "hold", "")
			r.awaitReoffer(t, h, o)
			held := time.Now()
			time.Sleep(holdFor) // the hold lasts: the window checked for silence
			resume := time.Now()
			h.command(t, "resume", "")
			r.awaitReoffer(t, h, o)
			resumed := time.Now()
			r.waitRelayed(t, resumedFor)
			end := time.Now()
			r.a.command(t, "hangup", "")
			r.a.await(t, "CALL_CLOSED", 5*time.Second)
			r.b.await(t, "CALL_CLOSED", 5*time.Second)
			capture.stop(t)
			r.waitNoCalls(t)

			want := map[string][]reinvite{
				// What each phone's trace shows: the re-INVITE sent or
				// received, its offer's direction, its answer's.
				"A": {{true, "sendonly", "recvonly"}, {true, "sendrecv", "sendrecv"}},
				"B": {{false, "sendonly", "recvonly"}, {false, "sendrecv", "sendrecv"}},
			}
			if holder == "B" {
				want = map[string][]reinvite{
					"A": {{false, "sendrecv", "sendrecv"}, {false, "sendrecv", "sendrecv"}},
					"B": {{true, "sendonly", "recvonly"}, {true, "sendrecv", "sendrecv"}},
				}
			}
			r.a.checkReinvites(t, want["A"])
			r.b.checkReinvites(t, want["B"])
			coreCall := r.coreCallID(t)
			r.checkCoreReinvites(t, coreCall, holder)

			access, core := r.a.callMedia(t), r.b.callMedia(t)
			r.checkAccessKeys(t, access)
			f := capture.callFlows(t, access, core)
			checkHeldAndResumed(t, f, access, holder, held.Add(settle), resume, resumed.Add(settle), end)
			r.checkTopology(t, coreCall, access, core)
		})
	}
}

// connect makes the call from A to B, answered, with media both ways.
func (r *baresipCallRig) connect(t *testing.T) {
	t.Helper()
	r.a.command(t, "dial", "sip:"+userB+"@"+sbctest.KamailioRealm)
	r.b.await(t, "CALL_INCOMING", 10*time.Second)
	r.b.command(t, "accept", "")
	r.a.await(t, "CALL_ESTABLISHED", 10*time.Second)
	r.b.await(t, "CALL_ESTABLISHED", 5*time.Second)
	r.a.waitRecording(t, time.Second)
	r.b.waitRecording(t, time.Second)
}

// waitRelayed waits until the SBC has sent d more of 20 ms packets to
// each phone, 10 seconds at most.
func (r *baresipCallRig) waitRelayed(t *testing.T, d time.Duration) {
	t.Helper()
	sent := func() (a, b uint64) {
		calls := r.s.Calls()
		if len(calls) != 1 {
			t.Fatalf("the SBC holds %d calls, want 1", len(calls))
		}
		return calls[0].Stats[0].PacketsOut, calls[0].Stats[1].PacketsOut
	}
	a0, b0 := sent()
	want := uint64(d / (20 * time.Millisecond))
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, b := sent()
		if a-a0 >= want && b-b0 >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the SBC sent A %d and B %d packets in 10s, want %d each", a-a0, b-b0, want)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// awaitReoffer waits until the offerer's re-INVITE has reached the other
// phone and the answer has come back.
func (r *baresipCallRig) awaitReoffer(t *testing.T, offerer, other *baresipPhone) {
	t.Helper()
	other.awaitParam(t, "CALL_REMOTE_SDP", "offer", 5*time.Second)
	offerer.awaitParam(t, "CALL_REMOTE_SDP", "answer", 5*time.Second)
}

// awaitParam waits for the next event of type typ with param, passing
// over the others as await does.
func (p *baresipPhone) awaitParam(t *testing.T, typ, param string, timeout time.Duration) baresipMsg {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := p.await(t, typ, time.Until(deadline))
		if m.Param == param {
			return m
		}
	}
}

// checkHeldAndResumed checks the call's four streams: nothing from the
// SBC to either phone from held until resume, and each stream carrying
// its tone from resumed until end. When B holds, A (told sendrecv) goes
// on sending meanwhile, and the SBC keeps it from B.
func checkHeldAndResumed(t *testing.T, f callFlows, access callMedia, holder string, held, resume, resumed, end time.Time) {
	t.Helper()
	streams := []struct {
		name string
		pkts []capturedRTP
		key  *sdes.Crypto // nil for plain RTP
		tone float64
		// whileHeld: whether it carries packets while the call is held.
		whileHeld bool
	}{
		{"A -> SBC", f.aToSBC, &access.offer.crypto, toneA, holder == "B"},
		{"SBC -> A", f.sbcToA, &access.answer.crypto, toneB, false},
		{"SBC -> B", f.sbcToB, nil, toneA, false},
		{"B -> SBC", f.bToSBC, nil, toneB, false},
	}
	for _, s := range streams {
		audio, bad := decodeStream(t, s.pkts, s.key)
		if bad > 0 {
			t.Errorf("%s: %d of %d packets are not 20 ms of A-law or do not authenticate", s.name, bad, len(s.pkts))
		}
		_, n := between(audio, held, resume)
		t.Logf("%s: %d packets while held", s.name, n)
		switch {
		case s.whileHeld && n == 0:
			t.Errorf("%s: no packets while the call was held, want A's tone (A was offered sendrecv)", s.name)
		case !s.whileHeld && n > 0:
			t.Errorf("%s: %d packets while the call was held, want none", s.name, n)
		}
		x, n := between(audio, resumed, end)
		rep := analyseTone(x, toneRate)
		t.Logf("%s after the resume: %d packets, %v", s.name, n, rep)
		if err := rep.hasTone(s.tone, heardAtLeast); err != nil {
			t.Errorf("%s after the resume: %v", s.name, err)
		}
	}
}

// reinvite is a re-INVITE as a phone's SIP trace shows it: whether the
// phone sent it, and the direction of its offer and of the 2xx's answer.
type reinvite struct {
	sent          bool
	offer, answer string
}

func (r reinvite) String() string {
	dir := "received"
	if r.sent {
		dir = "sent"
	}
	return fmt.Sprintf("%s %s/%s", dir, r.offer, r.answer)
}

// reinvites lists the re-INVITEs (INVITEs with a To tag) in the phone's
// trace in order. The phone sent those that leave from the address its
// REGISTER left from.
func (p *baresipPhone) reinvites(t *testing.T) []reinvite {
	t.Helper()
	var list []reinvite
	trace := baresipTrace(p.proc.output())
	local := ""
	for _, m := range trace {
		if req, ok := m.msg.(*sip.Request); ok && req.Method == sip.REGISTER {
			local = m.from
			break
		}
	}
	for i, m := range trace {
		req, ok := m.msg.(*sip.Request)
		if !ok || req.Method != sip.INVITE || !req.To().Params.Has("tag") {
			continue
		}
		ri := reinvite{sent: m.from == local, offer: sdpDirection(req.Body())}
		for _, n := range trace[i+1:] {
			res, ok := n.msg.(*sip.Response)
			if ok && res.IsSuccess() && res.CallID().Value() == req.CallID().Value() && res.CSeq().SeqNo == req.CSeq().SeqNo && res.CSeq().MethodName == sip.INVITE {
				ri.answer = sdpDirection(res.Body())
				break
			}
		}
		list = append(list, ri)
	}
	return list
}

// checkReinvites checks the phone's re-INVITEs against want.
func (p *baresipPhone) checkReinvites(t *testing.T, want []reinvite) {
	t.Helper()
	got := p.reinvites(t)
	t.Logf("%s's re-INVITEs: %v", p.name, got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s's re-INVITEs (offer/answer directions): %v, want %v", p.name, got, want)
	}
}

// sdpDirection is the direction of an SDP body's first audio stream
// (RFC 3264 section 5.1: the media's attribute, else the session's, else
// sendrecv); "none" without a body, "bad SDP" when it does not parse.
func sdpDirection(body []byte) string {
	if len(body) == 0 {
		return "none"
	}
	var d sdp.SessionDescription
	if err := d.Unmarshal(body); err != nil || len(d.MediaDescriptions) == 0 {
		return "bad SDP"
	}
	for _, attrs := range [][]sdp.Attribute{d.MediaDescriptions[0].Attributes, d.Attributes} {
		for _, a := range attrs {
			switch a.Key {
			case "sendrecv", "sendonly", "recvonly", "inactive":
				return a.Key
			}
		}
	}
	return "sendrecv"
}

// checkCoreReinvites checks the re-INVITEs Kamailio relayed in the core
// leg's dialog: from the SBC (TCP) when A holds, from B (UDP) when B
// does; hold, then resume.
func (r *baresipCallRig) checkCoreReinvites(t *testing.T, coreCall, holder string) {
	t.Helper()
	from := "tcp" // the SBC's core leg
	if holder == "B" {
		from = "udp"
	}
	var got []string
	for _, req := range r.k.Requests(t) {
		if req.CallID != coreCall || req.Method != "INVITE" || req.Msg == nil || !req.Msg.To().Params.Has("tag") {
			continue
		}
		got = append(got, req.Transport+" "+sdpDirection(req.Msg.Body()))
	}
	want := []string{from + " sendonly", from + " sendrecv"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Kamailio relayed re-INVITEs %v in the core leg's dialog, want %v", got, want)
	}
}

// checkAccessKeys checks that every SDP on the access leg after the first
// exchange keeps RTP/SAVP and the keys of the first: A's and the SBC's.
func (r *baresipCallRig) checkAccessKeys(t *testing.T, access callMedia) {
	t.Helper()
	master := func(c sdes.Crypto) string { return string(c.Key) + string(c.Salt) }
	keys := map[string]bool{master(access.offer.crypto): true, master(access.answer.crypto): true}
	for _, m := range baresipTrace(r.a.proc.output()) {
		if m.msg == nil || len(m.msg.Body()) == 0 || m.msg.CallID() == nil || m.msg.CallID().Value() != access.callID {
			continue
		}
		e, err := parseMediaEnd(m.msg.Body(), -1)
		if err != nil || e.proto != "RTP/SAVP" || !keys[master(e.crypto)] {
			t.Errorf("access leg SDP with %s (%v), want RTP/SAVP with the call's keys:\n%s", e.proto, err, m.msg.Body())
		}
	}
}

// TestBaresipBusyTone: B is busy and rejects A's call (baresip answers
// 486). With the busy tone on in A's media profile (Zoom's, "cept", 2 s),
// the SBC answers A's INVITE with a 183 and SDP (SRTP, as A's profile
// wants), plays A the 425 Hz busy tone in its 0.5 s on, 0.5 s off cadence
// for 2 s, then relays the 486. With the busy tone off (the default), A
// gets the 486 at once and no media.
func TestBaresipBusyTone(t *testing.T) {
	for _, tc := range []struct{ name, tone string }{{"CEPT", media.BusyToneCEPT}, {"Off", ""}} {
		t.Run(tc.name, func(t *testing.T) {
			const seconds = 2
			r := startBaresipCallRig(t, func(d *Desired) {
				if tc.tone != "" {
					p := d.Config.MediaProfile("Zoom")
					p.BusyTone, p.BusyToneSeconds = tc.tone, seconds
				}
			})
			r.a.command(t, "dial", "sip:"+userB+"@"+sbctest.KamailioRealm)
			r.b.await(t, "CALL_INCOMING", 10*time.Second)
			r.b.command(t, "hangup", "")
			rejected := time.Now()
			closed := r.a.await(t, "CALL_CLOSED", 10*time.Second)
			took := time.Since(rejected)
			r.waitNoCalls(t)
			t.Logf("A's call closed %v after B rejected it: %s; A's events: %s", took.Round(time.Millisecond), closed.Param, r.a.events())

			if !strings.HasPrefix(closed.Param, "486") {
				t.Errorf("A's call closed with %q, want B's 486", closed.Param)
			}
			if got := r.a.finalResponse(t); got != 486 {
				t.Errorf("A's INVITE ended with %d, want 486", got)
			}
			early := r.a.responses(t, 183)
			if tc.tone == "" {
				if len(early) > 0 || took > time.Second || len(r.a.recordings()) > 0 {
					t.Errorf("busy tone off: A got %d 183s, the 486 %v after B's, recordings %v; want the 486 at once and no media", len(early), took, r.a.recordings())
				}
				return
			}
			if len(early) != 1 {
				t.Fatalf("A got %d 183s, want one with the SBC's SDP", len(early))
			}
			if e, err := parseMediaEnd(early[0].Body(), -1); err != nil || e.proto != "RTP/SAVP" {
				t.Errorf("the 183's SDP: %s (%v), want RTP/SAVP with a key:\n%s", e.proto, err, early[0].Body())
			}
			t.Logf("the 183's SDP: %s", sdpDirection(early[0].Body()))
			if took < seconds*time.Second-200*time.Millisecond || took > seconds*time.Second+2*time.Second {
				t.Errorf("the 486 reached A %v after B's, want about %ds (the busy tone) later", took, seconds)
			}
			rep, ok := r.a.heard(t)
			if !ok {
				return
			}
			t.Logf("A heard: %v in %v recorded", rep, time.Duration(r.a.recorded(t))*time.Second/toneRate)
			// Half of the cadence is tone: about 1 s of the 2 s.
			if err := rep.hasTone(425, 700*time.Millisecond); err != nil {
				t.Errorf("A did not hear the busy tone: %v", err)
			}
			if rep.Heard > 1400*time.Millisecond {
				t.Errorf("A heard %v of sound, want the busy tone's cadence: half of %ds on", rep.Heard, seconds)
			}
		})
	}
}

// responses lists the responses with status code to INVITEs in the
// phone's trace.
func (p *baresipPhone) responses(t *testing.T, code int) []*sip.Response {
	t.Helper()
	var list []*sip.Response
	for _, m := range baresipTrace(p.proc.output()) {
		res, ok := m.msg.(*sip.Response)
		if ok && res.StatusCode == code && res.CSeq() != nil && res.CSeq().MethodName == sip.INVITE {
			list = append(list, res)
		}
	}
	return list
}

// TestBaresipBlindTransfer: A calls B, B answers; A transfers B to C
// (baresip's transfer: a REFER whose Refer-To names C at the SBC, as A
// knows it). The REFER reaches B through the SBC and Kamailio with the
// Refer-To in the PBX's terms (C's user at the PBX's domain, nothing of
// the SBC's address or transport); B answers 202 and calls C through
// Kamailio; C answers; B's NOTIFYs (message/sipfrag) reach A in A's
// subscription (RFC 3515 section 2.4.6: the Event id is the CSeq of the
// REFER as A sent it), and A ends its call on the 200 OK, as the
// transferor does; B and C hear each other.
func TestBaresipBlindTransfer(t *testing.T) {
	r := startBaresipCallRig(t)
	r.startC(t)
	r.connect(t)
	first := r.b.callMedia(t).callID

	referTo := fmt.Sprintf("sip:%s@127.0.0.1:%d;transport=tls", userC, r.tlsPort)
	r.a.command(t, "transfer", referTo)
	r.c.await(t, "CALL_INCOMING", 10*time.Second)
	r.c.command(t, "accept", "")
	r.c.await(t, "CALL_ESTABLISHED", 5*time.Second)
	second := r.b.await(t, "CALL_ESTABLISHED", 5*time.Second)
	closedA := r.a.await(t, "CALL_CLOSED", 5*time.Second)
	r.waitNoCalls(t)
	r.b.waitRecording(t, 1500*time.Millisecond)
	r.c.waitRecording(t, 1500*time.Millisecond)
	r.c.command(t, "hangup", "")
	r.c.await(t, "CALL_CLOSED", 5*time.Second)
	r.b.awaitCall(t, "CALL_CLOSED", second.CallID, 5*time.Second)

	if second.CallID == first {
		t.Errorf("B's call to C has the Call-ID of its call with A, %s", first)
	}
	if n := len(r.b.recordings()); n != 2 {
		t.Errorf("B recorded %d calls, want 2: A's and C's", n)
	}
	r.b.checkHeard(t, toneC) // the latest: the call to C
	r.c.checkHeard(t, toneB)

	coreCall := r.coreCallID(t)
	r.checkRefer(t, coreCall)
	r.checkReferNotifies(t, coreCall)
	r.checkTransferCall(t)
	r.checkTransferorHangsUp(t, coreCall, closedA)
	access, core := r.a.callMedia(t), r.b.callMedia(t)
	r.checkTopology(t, coreCall, access, core)
}

// awaitCall waits for the next event of type typ about the call callID,
// passing over the others as await does.
func (p *baresipPhone) awaitCall(t *testing.T, typ, callID string, timeout time.Duration) baresipMsg {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := p.await(t, typ, time.Until(deadline))
		if m.CallID == callID {
			return m
		}
	}
}

// checkTransferorHangsUp checks how the call between A and B ended: A
// closed it on the NOTIFY's 200 OK (baresip's "Call transfered") and its
// BYE reached B through the SBC; B's transfer did not fail.
func (r *baresipCallRig) checkTransferorHangsUp(t *testing.T, coreCall string, closedA baresipMsg) {
	t.Helper()
	if closedA.Param != "Call transfered" {
		t.Errorf("A's call closed with %q, want baresip's \"Call transfered\" (A hangs up on the NOTIFY with SIP/2.0 200 OK)", closedA.Param)
	}
	for _, req := range r.k.Requests(t) {
		if req.Method == "BYE" && req.CallID == coreCall && req.Transport != "tcp" {
			t.Errorf("B sent the BYE of its call with A (from %s), want A's BYE through the SBC", req.Source)
		}
	}
	for _, m := range r.b.seen {
		if m.Type == "TRANSFER_FAILED" {
			t.Errorf("B's transfer failed: %s", m.Param)
		}
	}
}

// checkRefer checks the REFER at each hop: A sent Refer-To naming the
// SBC; Kamailio got the SBC's REFER in the core leg's dialog, and B got
// it, with the Refer-To <sip:C@the PBX's domain>; A got the 202.
func (r *baresipCallRig) checkRefer(t *testing.T, coreCall string) {
	t.Helper()
	want := "<sip:" + userC + "@" + sbctest.KamailioRealm + ">"
	var atPBX []string
	for _, req := range r.k.Requests(t) {
		if req.Method != "REFER" {
			continue
		}
		referTo := rawHeader(req.Raw, "Refer-To")
		atPBX = append(atPBX, fmt.Sprintf("from %s in %s: Refer-To %s", req.Transport, req.CallID, referTo))
		if req.CallID != coreCall || req.Transport != "tcp" || referTo != want {
			t.Errorf("Kamailio got a REFER from %s in %s with Refer-To %s; want the SBC's (tcp) in the core leg's dialog %s with %s", req.Transport, req.CallID, referTo, coreCall, want)
		}
	}
	if len(atPBX) != 1 {
		t.Errorf("Kamailio got %d REFERs, want one: %q", len(atPBX), atPBX)
	}
	var atB []string
	for _, req := range r.b.requests(t, sip.REFER) {
		atB = append(atB, rawHeader(req.raw, "Refer-To"))
	}
	if len(atB) != 1 || atB[0] != want {
		t.Errorf("B got REFERs with Refer-To %q, want one with %s", atB, want)
	}
	sent := r.a.requests(t, sip.REFER)
	if len(sent) != 1 {
		t.Fatalf("A's trace shows %d REFERs, want one", len(sent))
	}
	t.Logf("Refer-To: A sent %s, B got %q", rawHeader(sent[0].raw, "Refer-To"), atB)
	if got := r.a.statusOf(t, sent[0]); got != 202 {
		t.Errorf("A's REFER was answered %d, want 202 Accepted", got)
	}
}

// checkReferNotifies checks the NOTIFYs of the transfer: B sent them in
// the core leg's dialog (Event: refer, message/sipfrag), A got each in
// its own dialog and its subscription (the Event's id is the CSeq of A's
// REFER, RFC 3515 section 2.4.6) and answered 200, the last one
// "SIP/2.0 200 OK" with the subscription terminated.
func (r *baresipCallRig) checkReferNotifies(t *testing.T, coreCall string) {
	t.Helper()
	var fromB []string
	for _, req := range r.k.Requests(t) {
		if req.Method == "NOTIFY" && req.Transport == "udp" && req.CallID == coreCall && req.Msg != nil {
			fromB = append(fromB, sipfragStatus(req.Msg)+" ("+rawHeader(req.Raw, "Event")+")")
		}
	}
	refers := r.a.requests(t, sip.REFER)
	if len(refers) == 0 {
		t.Error("A sent no REFER")
		return
	}
	wantEvent := fmt.Sprintf("refer;id=%d", refers[0].CSeq().SeqNo)
	var atA []string
	notifies := r.a.requests(t, sip.NOTIFY)
	for _, n := range notifies {
		atA = append(atA, sipfragStatus(n)+" ("+rawHeader(n.raw, "Event")+")")
		if ev := strings.ReplaceAll(rawHeader(n.raw, "Event"), " ", ""); ev != "refer" && ev != wantEvent {
			t.Errorf("A got a NOTIFY with Event %q, want %q: the id of A's REFER (CSeq %d), not the core leg's", rawHeader(n.raw, "Event"), wantEvent, refers[0].CSeq().SeqNo)
		}
		if got := r.a.statusOf(t, n); got != 200 {
			t.Errorf("A answered the NOTIFY %q with %d, want 200", sipfragStatus(n), got)
		}
	}
	t.Logf("NOTIFYs: B sent %q, A got %q", fromB, atA)
	if len(atA) == 0 || len(atA) != len(fromB) || sipfragStatus(notifies[len(notifies)-1]) != "SIP/2.0 200 OK" {
		t.Errorf("A got NOTIFYs %q for B's %q; want each of B's, the last SIP/2.0 200 OK", atA, fromB)
	} else if st := rawHeader(notifies[len(notifies)-1].raw, "Subscription-State"); !strings.HasPrefix(st, "terminated") {
		t.Errorf("the last NOTIFY at A has Subscription-State %q, want terminated", st)
	}
}

// checkTransferCall checks that B's call to C went through Kamailio: an
// INVITE from B for C's user at the PBX's domain.
func (r *baresipCallRig) checkTransferCall(t *testing.T) {
	t.Helper()
	for _, req := range r.k.Requests(t) {
		if req.Method == "INVITE" && req.Source.Addr().String() == hostB && req.Msg != nil && req.Msg.Recipient.User == userC {
			if req.Msg.Recipient.Host != sbctest.KamailioRealm {
				t.Errorf("B's INVITE for C goes to %s, want %s", req.Msg.Recipient.String(), sbctest.KamailioRealm)
			}
			return
		}
	}
	t.Errorf("Kamailio got no INVITE from B (%s) for C (%s)", hostB, userC)
}

// tracedRequest is a request in a phone's SIP trace, parsed and raw.
type tracedRequest struct {
	*sip.Request
	raw string
}

// requests lists the requests of method in the phone's trace.
func (p *baresipPhone) requests(t *testing.T, method sip.RequestMethod) []tracedRequest {
	t.Helper()
	var list []tracedRequest
	for _, m := range baresipTrace(p.proc.output()) {
		if req, ok := m.msg.(*sip.Request); ok && req.Method == method {
			list = append(list, tracedRequest{req, m.raw})
		}
	}
	return list
}

// statusOf is the final status the phone's trace shows for req's
// transaction (its Call-ID, CSeq and method), 0 without one.
func (p *baresipPhone) statusOf(t *testing.T, req tracedRequest) int {
	t.Helper()
	for _, m := range baresipTrace(p.proc.output()) {
		res, ok := m.msg.(*sip.Response)
		if ok && res.StatusCode >= 200 && res.CallID().Value() == req.CallID().Value() && res.CSeq().SeqNo == req.CSeq().SeqNo && res.CSeq().MethodName == req.Method {
			return res.StatusCode
		}
	}
	return 0
}

// rawHeader is the value of a header as a raw message has it (the first
// line with that name), "" without it.
func rawHeader(raw, name string) string {
	for line := range strings.Lines(raw) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// sipfragStatus is the status line of a NOTIFY's message/sipfrag body.
func sipfragStatus(m sip.Message) string {
	line, _, _ := strings.Cut(string(m.Body()), "\r\n")
	return strings.TrimSpace(line)
}
