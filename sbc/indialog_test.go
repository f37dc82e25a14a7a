package sbc

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"strings"
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
