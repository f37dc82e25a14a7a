package sbc

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/psigate/psigate/sbc/b2bua"
)

// send sends a request inside the client's dialog and returns the final
// response.
func (r *callRig) send(dc *sipgo.DialogClientSession, method sip.RequestMethod, body []byte, ct string, hdrs ...sip.Header) *sip.Response {
	r.t.Helper()
	req := sip.NewRequest(method, dc.InviteResponse.Contact().Address)
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	if len(body) > 0 {
		req.SetBody(body)
		h := sip.ContentTypeHeader(ct)
		req.AppendHeader(&h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := dc.Do(ctx, req)
	if err != nil {
		r.t.Fatalf("%s in the dialog: %v", method, err)
	}
	return res
}

// offer is the client's plain RTP offer in a direction.
func (r *callRig) offer(dir string) []byte {
	return []byte("v=0\r\no=zoom 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio " + strconv.Itoa(r.rtp.LocalAddr().(*net.UDPAddr).Port) + " RTP/AVP 0 8\r\na=" + dir + "\r\n")
}

func next(t *testing.T, ch chan *sip.Request, what string) *sip.Request {
	t.Helper()
	select {
	case req := <-ch:
		return req
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s", what)
		return nil
	}
}

func hasAttr(sdp []byte, a string) bool {
	return bytes.Contains(sdp, []byte("a="+a+"\r\n"))
}

// TestHoldAndResume: the client's re-INVITEs put the call on hold and
// take it off; each reaches the PBX in the PBX's own dialog (its Call-ID,
// psigate's Contact) with the direction, and the PBX's answer comes back
// translated with the matching direction.
func TestHoldAndResume(t *testing.T) {
	pbx := startPBXPhone(t)
	r := newCallRig(t, pbx)
	dc, code := r.call()
	if code != 200 {
		t.Fatalf("call: %d", code)
	}
	first := pbx.invite(t)
	for _, step := range []struct{ dir, want string }{{"sendonly", "recvonly"}, {"sendrecv", "sendrecv"}} {
		res := r.send(dc, sip.INVITE, r.offer(step.dir), "application/sdp")
		if res.StatusCode != 200 || !hasAttr(res.Body(), step.want) {
			t.Fatalf("re-INVITE %s: %d\n%s", step.dir, res.StatusCode, res.Body())
		}
		if !bytes.Contains(res.Body(), []byte("RTP/SAVP")) && !bytes.Contains(res.Body(), []byte("RTP/AVP")) {
			t.Fatalf("no audio in the answer:\n%s", res.Body())
		}
		got := next(t, pbx.inDialog, "re-INVITE at the PBX")
		if !got.IsInvite() || got.CallID().Value() != first.CallID().Value() || got.CallID().Value() == dc.InviteRequest.CallID().Value() {
			t.Fatalf("the PBX's re-INVITE is not in its dialog:\n%s", got)
		}
		if !hasAttr(got.Body(), step.dir) {
			t.Errorf("the PBX was offered:\n%s\nwant a=%s", got.Body(), step.dir)
		}
		if err := dc.WriteRequest(sip.NewRequest(sip.ACK, dc.InviteResponse.Contact().Address)); err != nil {
			t.Fatal(err)
		}
	}
	hangUp(t, r, dc)
	rec := nextRecord(t, r)
	if rec.Result != b2bua.Answered || rec.Reason != b2bua.ReasonCallerBye || rec.Code != 200 || rec.Duration() <= 0 {
		t.Errorf("record %+v", rec)
	}
}

func hangUp(t *testing.T, r *callRig, dc *sipgo.DialogClientSession) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := dc.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return r.svc.calls.Load().Active() == 0 })
}

func nextRecord(t *testing.T, r *callRig) b2bua.Record {
	t.Helper()
	select {
	case rec := <-r.records:
		return rec
	case <-time.After(10 * time.Second):
		t.Fatal("no call detail record")
		return b2bua.Record{}
	}
}

// TestRequestsInsideACall: INFO (DTMF relay), MESSAGE, OPTIONS and
// UPDATE from the client reach the PBX in its dialog with their bodies,
// and only the headers the PBX needs; the PBX's NOTIFY reaches the
// client in the client's dialog. Out of order and unknown dialogs are
// refused.
func TestRequestsInsideACall(t *testing.T) {
	pbx := startPBXPhone(t)
	r := newCallRig(t, pbx)
	dc, code := r.call()
	if code != 200 {
		t.Fatalf("call: %d", code)
	}
	coreCallID := pbx.invite(t).CallID().Value()
	dtmf := []byte("Signal=5\r\nDuration=160\r\n")
	for _, m := range []struct {
		method sip.RequestMethod
		body   []byte
		ct     string
	}{{sip.INFO, dtmf, "application/dtmf-relay"}, {sip.MESSAGE, []byte("hello"), "text/plain"}, {sip.OPTIONS, nil, ""}, {sip.UPDATE, nil, ""}} {
		res := r.send(dc, m.method, m.body, m.ct, sip.NewHeader("Subject", "kept"), sip.NewHeader("X-Client-Secret", "dropped"))
		if res.StatusCode != 200 {
			t.Errorf("%s: %d", m.method, res.StatusCode)
		}
		got := next(t, pbx.inDialog, string(m.method)+" at the PBX")
		if got.Method != m.method || got.CallID().Value() != coreCallID || !bytes.Equal(got.Body(), m.body) {
			t.Errorf("%s reached the PBX as:\n%s", m.method, got)
		}
		if m.ct != "" && (got.ContentType() == nil || got.ContentType().Value() != m.ct) {
			t.Errorf("%s: Content-Type %v", m.method, got.ContentType())
		}
		if got.GetHeader("Subject") == nil || got.GetHeader("X-Client-Secret") != nil {
			t.Errorf("%s: headers not filtered:\n%s", m.method, got)
		}
		if strings.Contains(got.String(), "127.0.0.99") || strings.Contains(got.String(), strconv.Itoa(r.clientSIP)) {
			t.Errorf("%s names the client:\n%s", m.method, got)
		}
	}

	// The PBX's NOTIFY inside its dialog reaches the client in its own.
	pbxDialog := pbx.invite(t)
	notify := sip.NewRequest(sip.NOTIFY, *pbxDialog.Contact().Address.Clone())
	notify.SetTransport("TCP")
	notify.AppendHeader(&sip.FromHeader{Address: pbxDialog.To().Address, Params: sip.HeaderParams{{K: "tag", V: r.pbxTag(t, dc)}}})
	notify.AppendHeader(&sip.ToHeader{Address: pbxDialog.From().Address, Params: pbxDialog.From().Params.Clone()})
	notify.AppendHeader(sip.NewHeader("Call-ID", coreCallID))
	notify.AppendHeader(&sip.CSeqHeader{SeqNo: 10, MethodName: sip.NOTIFY})
	notify.AppendHeader(sip.NewHeader("Event", "refer"))
	notify.AppendHeader(sip.NewHeader("Subscription-State", "terminated;reason=noresource"))
	notify.AppendHeader(sip.NewHeader("Contact", "<sip:127.0.0.1:1;transport=tcp>"))
	notify.SetBody([]byte("SIP/2.0 200 OK\r\n"))
	fragType := sip.ContentTypeHeader("message/sipfrag")
	notify.AppendHeader(&fragType)
	res := pbxDo(t, pbx, notify)
	if res.StatusCode != 200 {
		t.Fatalf("NOTIFY: %d", res.StatusCode)
	}
	got := next(t, r.inDialog, "NOTIFY at the client")
	if got.CallID().Value() != dc.InviteRequest.CallID().Value() || string(got.Body()) != "SIP/2.0 200 OK\r\n" || got.GetHeader("Event") == nil {
		t.Errorf("NOTIFY reached the client as:\n%s", got)
	}
	if strings.Contains(got.String(), pbx.addr) {
		t.Errorf("the client's NOTIFY names the PBX:\n%s", got)
	}

	// The same CSeq again is out of order: 500.
	notify.RemoveHeader("Via")
	if res := pbxDo(t, pbx, notify); res.StatusCode != 500 {
		t.Errorf("NOTIFY out of order: %d, want 500", res.StatusCode)
	}
	hangUp(t, r, dc)
	// A BYE for the ended call: 481.
	bye := sip.NewRequest(sip.BYE, *pbxDialog.Contact().Address.Clone())
	bye.SetTransport("TCP")
	for _, h := range []string{"From", "To", "Call-ID"} {
		bye.AppendHeader(sip.HeaderClone(notify.GetHeader(h)))
	}
	bye.AppendHeader(&sip.CSeqHeader{SeqNo: 11, MethodName: sip.BYE})
	if res := pbxDo(t, pbx, bye); res.StatusCode != 481 {
		t.Errorf("BYE after the call: %d, want 481", res.StatusCode)
	}
}

// pbxTag is the PBX's tag in its dialog with psigate: the To tag of its
// answer, as psigate's ACK carries it.
func (r *callRig) pbxTag(t *testing.T, dc *sipgo.DialogClientSession) string {
	t.Helper()
	for _, req := range r.pbx.requests() {
		if tag, _ := req.To().Params.Get("tag"); req.IsAck() && tag != "" {
			return tag
		}
	}
	t.Fatal("the PBX got no ACK")
	return ""
}

// pbxDo sends a request from the PBX stand-in to the SBC's core realm.
func pbxDo(t *testing.T, pbx *pbxPhone, req *sip.Request) *sip.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := pbx.cl.Do(ctx, req)
	if err != nil {
		t.Fatalf("%s from the PBX: %v", req.Method, err)
	}
	return res
}

// TestBlindAndAttendedTransfer: the client's REFER reaches the PBX with
// the Refer-To in the PBX's terms: the host is the domain the PBX leg
// uses, not psigate's address; a Replaces naming the client's other call
// names that call's PBX dialog instead.
func TestBlindAndAttendedTransfer(t *testing.T) {
	pbx := startPBXPhone(t)
	r := newCallRig(t, pbx)
	first, code := r.call()
	if code != 200 {
		t.Fatalf("first call: %d", code)
	}
	second, code := r.call()
	if code != 200 {
		t.Fatalf("second call: %d", code)
	}
	res := r.send(first, sip.REFER, nil, "", sip.NewHeader("Refer-To", "<sip:2003@"+r.access+";transport=udp>"), sip.NewHeader("Referred-By", "<sip:1001@pbx.example.com>"))
	if res.StatusCode != 202 {
		t.Fatalf("blind REFER: %d", res.StatusCode)
	}
	got := next(t, pbx.inDialog, "REFER at the PBX")
	if rt := got.GetHeader("Refer-To"); rt == nil || rt.Value() != "<sip:2003@pbx.example.com>" {
		t.Errorf("blind transfer: Refer-To %v, want <sip:2003@pbx.example.com>", rt)
	}
	if got.GetHeader("Referred-By") == nil {
		t.Errorf("Referred-By dropped:\n%s", got)
	}
	// The transferee's NOTIFY names the REFER by its CSeq in the PBX's
	// dialog; the client gets it named by the CSeq of its own REFER.
	clientRefer := first.CSEQ()
	pbxDialog := pbx.invite(t)
	notify := sip.NewRequest(sip.NOTIFY, *pbxDialog.Contact().Address.Clone())
	notify.SetTransport("TCP")
	notify.AppendHeader(&sip.FromHeader{Address: pbxDialog.To().Address, Params: sip.HeaderParams{{K: "tag", V: r.pbxTag(t, first)}}})
	notify.AppendHeader(&sip.ToHeader{Address: pbxDialog.From().Address, Params: pbxDialog.From().Params.Clone()})
	notify.AppendHeader(sip.NewHeader("Call-ID", pbxDialog.CallID().Value()))
	notify.AppendHeader(&sip.CSeqHeader{SeqNo: 20, MethodName: sip.NOTIFY})
	notify.AppendHeader(sip.NewHeader("Event", "refer;id="+strconv.Itoa(int(got.CSeq().SeqNo))))
	notify.AppendHeader(sip.NewHeader("Subscription-State", "active;expires=60"))
	notify.AppendHeader(sip.NewHeader("Contact", "<sip:127.0.0.1:1;transport=tcp>"))
	notify.SetBody([]byte("SIP/2.0 100 Trying\r\n"))
	frag := sip.ContentTypeHeader("message/sipfrag")
	notify.AppendHeader(&frag)
	if res := pbxDo(t, pbx, notify); res.StatusCode != 200 {
		t.Fatalf("NOTIFY: %d", res.StatusCode)
	}
	n := next(t, r.inDialog, "NOTIFY at the client")
	if ev := n.GetHeader("Event"); ev == nil || ev.Value() != "refer;id="+strconv.Itoa(int(clientRefer)) {
		t.Errorf("the client's NOTIFY has Event %v, want refer;id=%d", ev, clientRefer)
	}

	// Attended: transfer the first call's PBX party to the second's.
	secondCore := ""
	for _, req := range pbx.requests() {
		if req.IsInvite() && req.CallID().Value() != pbx.invite(t).CallID().Value() {
			secondCore = req.CallID().Value()
		}
	}
	callID := second.InviteRequest.CallID().Value()
	fromTag, _ := second.InviteRequest.From().Params.Get("tag")
	toTag, _ := second.InviteResponse.To().Params.Get("tag")
	replaces := url.QueryEscape(callID + ";to-tag=" + toTag + ";from-tag=" + fromTag)
	res = r.send(first, sip.REFER, nil, "", sip.NewHeader("Refer-To", "<sip:2004@pbx.example.com?Replaces="+replaces+">"))
	if res.StatusCode != 202 {
		t.Fatalf("attended REFER: %d", res.StatusCode)
	}
	got = next(t, pbx.inDialog, "attended REFER at the PBX")
	rt := got.GetHeader("Refer-To").Value()
	var u sip.Uri
	params := sip.NewParams()
	if _, err := sip.ParseAddressValue(rt, &u, &params); err != nil {
		t.Fatalf("Refer-To %q: %v", rt, err)
	}
	v, _ := u.Headers.Get("Replaces")
	mapped, _ := url.QueryUnescape(v)
	if !strings.HasPrefix(mapped, secondCore+";") || strings.Contains(mapped, callID) {
		t.Errorf("Replaces %q, want the second call's PBX dialog %s", mapped, secondCore)
	}
	for _, dc := range []*sipgo.DialogClientSession{first, second} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := dc.Bye(ctx); err != nil {
			t.Error(err)
		}
		cancel()
	}
	waitFor(t, func() bool { return r.svc.calls.Load().Active() == 0 })
}

// TestReinviteGlare: while a re-INVITE is in flight, another offer in
// the same call gets 491 Request Pending (RFC 3261 section 14.2).
func TestReinviteGlare(t *testing.T) {
	pbx := startPBXPhone(t)
	pbx.holdReinvite = make(chan struct{})
	r := newCallRig(t, pbx)
	dc, code := r.call()
	if code != 200 {
		t.Fatalf("call: %d", code)
	}
	done := make(chan *sip.Response, 1)
	go func() { done <- r.send(dc, sip.INVITE, r.offer("sendonly"), "application/sdp") }()
	next(t, pbx.inDialog, "re-INVITE at the PBX")
	if res := r.send(dc, sip.UPDATE, r.offer("sendrecv"), "application/sdp"); res.StatusCode != 491 {
		t.Errorf("UPDATE during a re-INVITE: %d, want 491", res.StatusCode)
	}
	close(pbx.holdReinvite)
	if res := <-done; res.StatusCode != 200 {
		t.Errorf("the held re-INVITE: %d", res.StatusCode)
	}
	hangUp(t, r, dc)
}

// TestLateOffer: an INVITE without SDP reaches the PBX without SDP; the
// PBX's offer in its 200 reaches the client translated (SRTP for the
// Zoom client), and the client's answer in its ACK reaches the PBX as
// plain RTP in the PBX's ACK.
func TestLateOffer(t *testing.T) {
	pbx := startPBXPhone(t)
	r := newCallRig(t, pbx)
	req := r.newInvite("2002", "late")
	req.AppendHeader(sip.NewHeader("User-Agent", "ZoomPbxPhone 6.0"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dc, err := r.client.WriteInvite(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := dc.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatalf("late offer call: %v", err)
	}
	if len(pbx.invite(t).Body()) != 0 {
		t.Errorf("the PBX's INVITE has a body:\n%s", pbx.invite(t).Body())
	}
	offer := dc.InviteResponse.Body()
	if !bytes.Contains(offer, []byte("RTP/SAVP")) || !bytes.Contains(offer, []byte("a=crypto:")) {
		t.Fatalf("the client was offered:\n%s", offer)
	}
	ack := sip.NewRequest(sip.ACK, dc.InviteResponse.Contact().Address)
	ack.SetBody(clientAnswer(offer, r.rtp.LocalAddr().(*net.UDPAddr).Port))
	ack.AppendHeader(sdpType())
	if err := dc.WriteAck(ctx, ack); err != nil {
		t.Fatal(err)
	}
	var pbxAck *sip.Request
	waitFor(t, func() bool {
		for _, req := range pbx.requests() {
			if req.IsAck() {
				pbxAck = req
				return true
			}
		}
		return false
	})
	if !bytes.Contains(pbxAck.Body(), []byte("RTP/AVP")) || bytes.Contains(pbxAck.Body(), []byte("crypto")) {
		t.Errorf("the PBX's ACK carries:\n%s", pbxAck.Body())
	}
	hangUp(t, r, dc)
}

// TestSessionTimerExpires: the PBX's 200 sets a session interval that
// nobody refreshes; psigate ends the call on both legs when it passes and
// records why.
func TestSessionTimerExpires(t *testing.T) {
	pbx := startPBXPhone(t)
	pbx.answerHeaders = []sip.Header{sip.NewHeader("Session-Expires", "1;refresher=uac"), sip.NewHeader("Require", "timer"), sip.NewHeader("X-Internal-Node", "os4k-a")}
	r := newCallRig(t, pbx)
	dc, code := r.call()
	if code != 200 {
		t.Fatalf("call: %d", code)
	}
	if h := dc.InviteResponse.GetHeader("Session-Expires"); h == nil || h.Value() != "1;refresher=uac" {
		t.Errorf("the client's 200 has Session-Expires %v", h)
	}
	if dc.InviteResponse.GetHeader("X-Internal-Node") != nil {
		t.Errorf("a PBX header the client does not need crossed:\n%s", dc.InviteResponse)
	}
	select {
	case <-r.byes:
	case <-time.After(10 * time.Second):
		t.Fatal("the client got no BYE when the session interval passed")
	}
	select {
	case <-pbx.byes:
	case <-time.After(5 * time.Second):
		t.Fatal("the PBX got no BYE when the session interval passed")
	}
	if rec := nextRecord(t, r); rec.Reason != b2bua.ReasonSession {
		t.Errorf("record %+v, want reason %q", rec, b2bua.ReasonSession)
	}
}

// TestEmergencyCallWithLocation: an INVITE with a multipart body (SDP
// and a PIDF-LO location, RFC 6442) reaches the PBX with the location
// part and the Geolocation headers unchanged and the SDP translated.
func TestEmergencyCallWithLocation(t *testing.T) {
	pbx := startPBXPhone(t)
	r := newCallRig(t, pbx)
	pidf := "<?xml version=\"1.0\"?>\r\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"pres:1001@pbx.example.com\"><tuple id=\"t1\"><status/></tuple></presence>\r\n"
	sdpOffer := "v=0\r\no=zoom 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio " + strconv.Itoa(r.rtp.LocalAddr().(*net.UDPAddr).Port) + " RTP/AVP 0 8\r\na=sendrecv\r\n"
	body := "--b1\r\nContent-Type: application/sdp\r\n\r\n" + sdpOffer + "\r\n--b1\r\nContent-Type: application/pidf+xml\r\nContent-ID: <loc@pbx.example.com>\r\n\r\n" + pidf + "\r\n--b1--\r\n"
	req := r.newInvite("911", "e1")
	req.AppendHeader(sip.NewHeader("Geolocation", "<cid:loc@pbx.example.com>"))
	req.AppendHeader(sip.NewHeader("Geolocation-Routing", "yes"))
	ct := sip.ContentTypeHeader("multipart/mixed;boundary=b1")
	req.AppendHeader(&ct)
	req.SetBody([]byte(body))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dc, err := r.client.WriteInvite(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := dc.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatalf("emergency call: %v", err)
	}
	if err := dc.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	got := pbx.invite(t)
	if got.GetHeader("Geolocation") == nil || got.GetHeader("Geolocation").Value() != "<cid:loc@pbx.example.com>" || got.GetHeader("Geolocation-Routing") == nil {
		t.Errorf("Geolocation headers not kept:\n%s", got)
	}
	if ct := got.ContentType(); ct == nil || ct.Value() != "multipart/mixed;boundary=b1" {
		t.Errorf("Content-Type %v", ct)
	}
	want := "\r\n--b1\r\nContent-Type: application/pidf+xml\r\nContent-ID: <loc@pbx.example.com>\r\n\r\n" + pidf + "\r\n--b1--\r\n"
	if !bytes.HasSuffix(got.Body(), []byte(want)) || bytes.Contains(got.Body(), []byte(sdpOffer)) || !bytes.Contains(got.Body(), []byte("m=audio")) {
		t.Errorf("the PBX's body:\n%s", got.Body())
	}
	hangUp(t, r, dc)
}

// TestCallRecords: every call ends with a record: refused, cancelled,
// answered and hung up by either side.
func TestCallRecords(t *testing.T) {
	busy := startPBXPhone(t)
	busy.busy = true
	r := newCallRig(t, busy)
	if _, code := r.call(); code != 486 {
		t.Fatalf("busy: %d", code)
	}
	if rec := nextRecord(t, r); rec.Result != b2bua.Refused || rec.Code != 486 || rec.Reason != "486 Busy Here" || !rec.Answered.IsZero() || rec.CallID == "" {
		t.Errorf("refused call: %+v", rec)
	}
	pbx := startPBXPhone(t)
	pbx.hangup = true
	r = newCallRig(t, pbx)
	if _, code := r.call(); code != 200 {
		t.Fatalf("call: %d", code)
	}
	rec := nextRecord(t, r)
	if rec.Result != b2bua.Answered || rec.Reason != b2bua.ReasonCalleeBye || rec.Answered.IsZero() || rec.Codecs[1] == "" || rec.To != "sip:2002@pbx.example.com" {
		t.Errorf("call the PBX hung up: %+v", rec)
	}
}

// newInvite is an INVITE from the rig's client (user 1001, From tag
// tag) to user at the access realm over UDP, without body or other
// headers.
func (r *callRig) newInvite(user, tag string) *sip.Request {
	host, port, _ := net.SplitHostPort(r.access)
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: user, Host: host, Port: atoiTest(port)})
	req.SetTransport("UDP")
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "1001", Host: "pbx.example.com"}, Params: sip.HeaderParams{{K: "tag", V: tag}}})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: "pbx.example.com"}})
	return req
}

// callCollect places the rig's client call and returns the status codes
// it got, provisional and final.
func (r *callRig) callCollect() []int {
	r.t.Helper()
	req := r.newInvite("2002", sip.GenerateTagN(8))
	req.AppendHeader(sdpType())
	req.SetBody(r.offer("sendrecv"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dc, err := r.client.WriteInvite(ctx, req)
	if err != nil {
		r.t.Fatal(err)
	}
	var codes []int
	err = dc.WaitAnswer(ctx, sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
		codes = append(codes, res.StatusCode)
		if res.StatusCode == 183 && !bytes.Contains(res.Body(), []byte("m=audio")) {
			r.t.Errorf("183 without SDP:\n%s", res)
		}
		return nil
	}})
	if err == nil {
		r.t.Fatal("the call was answered")
	}
	return codes
}

// rtpPackets counts the RTP packets reaching the client's media socket
// until stop is closed.
func (r *callRig) rtpPackets(stop chan struct{}) chan int {
	n := make(chan int, 1)
	go func() {
		count := 0
		buf := make([]byte, 1500)
		for {
			select {
			case <-stop:
				n <- count
				return
			default:
			}
			_ = r.rtp.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if k, err := r.rtp.Read(buf); err == nil && k > 12 && buf[0]>>6 == 2 && (buf[1]&0x7f == 0 || buf[1]&0x7f == 8) {
				count++
			}
		}
	}()
	return n
}

// TestBusyTone: with the profile's busy tone on, the PBX's 486 reaches
// the client after a 183 and a second of busy tone in G.711; with it off
// (the default), the 486 comes at once and no media.
func TestBusyTone(t *testing.T) {
	for _, on := range []bool{true, false} {
		pbx := startPBXPhone(t)
		pbx.busy = true
		r := newCallRig(t, pbx, func(c *Config) {
			for i := range c.MediaProfiles {
				if c.MediaProfiles[i].Name == "default" && on {
					c.MediaProfiles[i].BusyTone, c.MediaProfiles[i].BusyToneSeconds = "cept", 1
				}
			}
		})
		stop := make(chan struct{})
		packets := r.rtpPackets(stop)
		start := time.Now()
		codes := r.callCollect()
		took := time.Since(start)
		close(stop)
		n := <-packets
		final := codes[len(codes)-1]
		switch {
		case final != 486:
			t.Errorf("busy tone %v: responses %v, want 486 last", on, codes)
		case on && (!slicesContains(codes, 183) || n < 30 || took < time.Second):
			t.Errorf("busy tone on: responses %v, %d tone packets in %v", codes, n, took)
		case !on && (slicesContains(codes, 183) || n != 0):
			t.Errorf("busy tone off: responses %v, %d packets", codes, n)
		}
		if rec := nextRecord(t, r); rec.Result != b2bua.Refused || rec.Code != 486 {
			t.Errorf("busy tone %v: record %+v", on, rec)
		}
		waitFor(t, func() bool { return r.svc.engine.Load().Active() == 0 })
	}
}

// TestShutdownEndsCalls: a stopping service ends its calls with BYE on
// both legs and records them.
func TestShutdownEndsCalls(t *testing.T) {
	pbx := startPBXPhone(t)
	r := newCallRig(t, pbx)
	if _, code := r.call(); code != 200 {
		t.Fatalf("call: %d", code)
	}
	r.svc.calls.Load().Close()
	for _, ch := range []chan struct{}{r.byes, pbx.byes} {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatal("a leg got no BYE at shutdown")
		}
	}
	if rec := nextRecord(t, r); rec.Reason != b2bua.ReasonShutdown {
		t.Errorf("record %+v", rec)
	}
	if n := r.svc.calls.Load().Active(); n != 0 {
		t.Errorf("%d calls after shutdown", n)
	}
}

// TestReliableProvisional: the PBX's reliable 183 (RFC 3262) gets psigate's
// PRACK in the PBX's early dialog, with the RAck of the 183; the call then
// goes on, its ACK keeps the INVITE's CSeq and the BYE comes after the
// PRACK's.
func TestReliableProvisional(t *testing.T) {
	pbx := startPBXPhone(t)
	pbx.reliable = true
	r := newCallRig(t, pbx)
	dc, code := r.call()
	if code != 200 {
		t.Fatalf("call: %d", code)
	}
	inv := pbx.invite(t)
	if !strings.Contains(strings.Join(headerValues(inv, "Supported"), ","), "100rel") {
		t.Errorf("the PBX's INVITE does not offer 100rel:\n%s", inv)
	}
	hangUp(t, r, dc)
	var prack, ack, bye *sip.Request
	for _, req := range pbx.requests() {
		switch req.Method {
		case sip.PRACK:
			prack = req
		case sip.ACK:
			ack = req
		case sip.BYE:
			bye = req
		}
	}
	if prack == nil || ack == nil || bye == nil {
		t.Fatalf("PRACK %v, ACK %v, BYE %v", prack != nil, ack != nil, bye != nil)
	}
	invSeq := inv.CSeq().SeqNo
	if rack := prack.GetHeader("RAck"); rack == nil || rack.Value() != "1 "+strconv.Itoa(int(invSeq))+" INVITE" || prack.CallID().Value() != inv.CallID().Value() || !prack.To().Params.Has("tag") {
		t.Errorf("PRACK:\n%s", prack)
	}
	if prack.CSeq().SeqNo <= invSeq || ack.CSeq().SeqNo != invSeq || bye.CSeq().SeqNo <= prack.CSeq().SeqNo {
		t.Errorf("CSeq: INVITE %d, PRACK %d, ACK %d, BYE %d", invSeq, prack.CSeq().SeqNo, ack.CSeq().SeqNo, bye.CSeq().SeqNo)
	}
}

// TestHeaderAllowListConfigured: the configured lists replace the
// defaults: a header listed crosses, one no longer listed does not.
func TestHeaderAllowListConfigured(t *testing.T) {
	pbx := startPBXPhone(t)
	r := newCallRig(t, pbx, func(c *Config) { c.Calls.HeadersToCore = []string{"X-Client-Secret"} })
	dc, code := r.call()
	if code != 200 {
		t.Fatalf("call: %d", code)
	}
	r.send(dc, sip.INFO, []byte("Signal=1\r\n"), "application/dtmf-relay", sip.NewHeader("Subject", "dropped now"), sip.NewHeader("X-Client-Secret", "listed"))
	got := next(t, pbx.inDialog, "INFO at the PBX")
	if got.GetHeader("X-Client-Secret") == nil || got.GetHeader("Subject") != nil {
		t.Errorf("INFO at the PBX:\n%s", got)
	}
	hangUp(t, r, dc)
}

// TestMediaTimeoutEndsCall: a call whose media never starts ends after
// the configured time with BYE on both legs, recorded as a media timeout.
func TestMediaTimeoutEndsCall(t *testing.T) {
	pbx := startPBXPhone(t)
	r := newCallRig(t, pbx, func(c *Config) { c.Calls.MediaStartSeconds = 1 })
	if _, code := r.call(); code != 200 {
		t.Fatalf("call: %d", code)
	}
	for _, ch := range []chan struct{}{r.byes, pbx.byes} {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatal("a leg got no BYE for the silent call")
		}
	}
	rec := nextRecord(t, r)
	if rec.Result != b2bua.Answered || rec.Reason != b2bua.ReasonMediaTimeout {
		t.Errorf("record %+v", rec)
	}
	bye := func() *sip.Request {
		for _, req := range pbx.requests() {
			if req.Method == sip.BYE {
				return req
			}
		}
		return nil
	}()
	if bye == nil || bye.GetHeader("Reason") == nil || !strings.Contains(bye.GetHeader("Reason").Value(), "media timeout") {
		t.Errorf("the PBX's BYE has no Reason:\n%v", bye)
	}
}

// TestReliableProvisionalToClient: a client that supports 100rel gets the
// PBX's 183 reliably from psigate (Require: 100rel, an RSeq of its own),
// again until it sends its PRACK, which psigate answers; the 200 comes
// only after that PRACK, as the 183 carried SDP.
func TestReliableProvisionalToClient(t *testing.T) {
	pbx := startPBXPhone(t)
	pbx.reliable = true
	r := newCallRig(t, pbx)
	req := r.newInvite("2002", "rel")
	req.AppendHeader(sip.NewHeader("Supported", "100rel"))
	req.AppendHeader(sdpType())
	req.SetBody(r.offer("sendrecv"))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	dc, err := r.client.WriteInvite(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var reliable []*sip.Response
	var prackRes chan *sip.Response
	var prackSent atomic.Int64 // when the PRACK went
	err = dc.WaitAnswer(ctx, sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
		if res.StatusCode != 183 || !strings.Contains(strings.Join(responseValues(res, "Require"), ","), "100rel") || res.GetHeader("RSeq") == nil {
			return nil
		}
		reliable = append(reliable, res.Clone())
		if prackRes != nil {
			return nil
		}
		prackRes = make(chan *sip.Response, 1)
		go func() {
			time.Sleep(700 * time.Millisecond) // long enough for a retransmission
			prack := sip.NewRequest(sip.PRACK, res.Contact().Address)
			prack.AppendHeader(&sip.FromHeader{Address: req.From().Address, Params: req.From().Params.Clone()})
			prack.AppendHeader(&sip.ToHeader{Address: res.To().Address, Params: res.To().Params.Clone()})
			prack.AppendHeader(sip.NewHeader("Call-ID", req.CallID().Value()))
			prack.AppendHeader(&sip.CSeqHeader{SeqNo: req.CSeq().SeqNo + 1, MethodName: sip.PRACK})
			prack.AppendHeader(sip.NewHeader("RAck", res.GetHeader("RSeq").Value()+" "+strconv.Itoa(int(req.CSeq().SeqNo))+" INVITE"))
			prack.SetDestination(r.access)
			prackSent.Store(time.Now().UnixNano())
			res, err := r.cl.Do(ctx, prack)
			if err != nil {
				t.Errorf("PRACK: %v", err)
			}
			prackRes <- res
		}()
		return nil
	}})
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	answeredAt := time.Now().UnixNano()
	if err := dc.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if sent := prackSent.Load(); sent == 0 || sent > answeredAt {
		t.Error("the 200 came before the PRACK of the 183 with SDP")
	}
	if len(reliable) < 2 {
		t.Errorf("%d reliable 183s before the PRACK, want it retransmitted", len(reliable))
	}
	if res := <-prackRes; res == nil || res.StatusCode != 200 {
		t.Errorf("PRACK answered %v", res)
	}
	if first, last := reliable[0].GetHeader("RSeq").Value(), reliable[len(reliable)-1].GetHeader("RSeq").Value(); first != last {
		t.Errorf("RSeq %s, then %s in a retransmission", first, last)
	}
	hangUp(t, r, dc)
}

func responseValues(m *sip.Response, name string) []string {
	var v []string
	for _, h := range m.GetHeaders(name) {
		v = append(v, h.Value())
	}
	return v
}

// TestEndedBeforeTheAnswer: the PBX answers and hangs up while psigate
// still holds the client's 200 (waiting for the PRACK of a reliable 183
// with SDP that never comes): the client's INVITE gets a final error, no
// BYE reaches it in its early dialog, and the call is recorded as failed.
func TestEndedBeforeTheAnswer(t *testing.T) {
	pbx := startPBXPhone(t)
	pbx.reliable, pbx.hangup = true, true
	r := newCallRig(t, pbx)
	req := r.newInvite("2002", "noprack")
	req.AppendHeader(sip.NewHeader("Supported", "100rel")) // and never PRACKs
	req.AppendHeader(sdpType())
	req.SetBody(r.offer("sendrecv"))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	dc, err := r.client.WriteInvite(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	err = dc.WaitAnswer(ctx, sipgo.AnswerOptions{})
	var dr *sipgo.ErrDialogResponse
	if !errors.As(err, &dr) || dr.Res.StatusCode != 500 {
		t.Fatalf("the client's call ended with %v, want 500", err)
	}
	if rec := nextRecord(t, r); rec.Result != b2bua.Failed || rec.Code != 500 || rec.Reason != b2bua.ReasonCalleeBye {
		t.Errorf("record %+v", rec)
	}
	waitFor(t, func() bool { return r.svc.calls.Load().Active() == 0 && r.svc.engine.Load().Active() == 0 })
	select {
	case <-r.byes:
		t.Error("a BYE reached the client in its early dialog")
	default:
	}
}

// TestMediaTimeoutAfterEarlyMedia: a call that rang with early media for
// longer than the media start timeout still gets its own timeout once
// answered.
func TestMediaTimeoutAfterEarlyMedia(t *testing.T) {
	pbx := startPBXPhone(t)
	pbx.reliable, pbx.ringFor = true, 2500*time.Millisecond // a 183 with SDP, then a long ring
	r := newCallRig(t, pbx, func(c *Config) { c.Calls.MediaStartSeconds = 1 })
	if _, code := r.call(); code != 200 {
		t.Fatalf("call: %d", code)
	}
	for _, ch := range []chan struct{}{r.byes, pbx.byes} {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatal("the silent call was not ended after its answer")
		}
	}
	if rec := nextRecord(t, r); rec.Reason != b2bua.ReasonMediaTimeout {
		t.Errorf("record %+v", rec)
	}
}

// TestUnregisteredCallerRefused: by default only a registered subscriber
// calls, from the flow it registered on: anyone else gets 403 and the
// PBX sees nothing; once registered, the same client calls.
func TestUnregisteredCallerRefused(t *testing.T) {
	pbx := startPBXPhone(t)
	r := newCallRig(t, pbx, func(c *Config) { c.Calls.OpenToUnregistered = false })
	if _, code := r.call(); code != 403 {
		t.Fatalf("unregistered caller: %d, want 403", code)
	}
	for _, req := range pbx.requests() {
		if req.IsInvite() {
			t.Fatalf("the PBX got an INVITE from an unregistered caller:\n%s", req)
		}
	}
	if rec := nextRecord(t, r); rec.Result != b2bua.Failed || rec.Code != 403 {
		t.Errorf("record %+v", rec)
	}
	r.register()
	dc, code := r.call()
	if code != 200 {
		t.Fatalf("registered caller: %d", code)
	}
	hangUp(t, r, dc)
}

// TestReinviteWithoutOffer: a client's re-INVITE without SDP gets the
// PBX's offer (translated) in the 200, and its answer, in its ACK, reaches
// the PBX in psigate's ACK of that re-INVITE.
func TestReinviteWithoutOffer(t *testing.T) {
	pbx := startPBXPhone(t)
	r := newCallRig(t, pbx)
	dc, code := r.call()
	if code != 200 {
		t.Fatalf("call: %d", code)
	}
	res := r.send(dc, sip.INVITE, nil, "")
	if res.StatusCode != 200 || !bytes.Contains(res.Body(), []byte("m=audio")) {
		t.Fatalf("re-INVITE without SDP: %d\n%s", res.StatusCode, res.Body())
	}
	reinvite := next(t, pbx.inDialog, "re-INVITE at the PBX")
	if len(reinvite.Body()) != 0 {
		t.Errorf("the PBX's re-INVITE has a body:\n%s", reinvite.Body())
	}
	ack := sip.NewRequest(sip.ACK, dc.InviteResponse.Contact().Address)
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: dc.CSEQ(), MethodName: sip.ACK})
	ack.SetBody(pbxAnswer(res.Body(), r.rtp.LocalAddr().(*net.UDPAddr).Port)) // plain RTP: the rig's client has the default profile
	ack.AppendHeader(sdpType())
	if err := dc.WriteRequest(ack); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		for _, req := range pbx.requests() {
			if req.IsAck() && req.CSeq().SeqNo == reinvite.CSeq().SeqNo && bytes.Contains(req.Body(), []byte("m=audio")) {
				return true
			}
		}
		return false
	})
	hangUp(t, r, dc)
}
