package sbc

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// coreRequest is a request from the PBX stand-in to the SBC's core realm,
// outside any dialog, for the subscriber with the given token.
func (r *callRig) coreRequest(method sip.RequestMethod, token string) *sip.Request {
	req := sip.NewRequest(method, sip.Uri{Scheme: "sip", User: token, Host: "127.0.0.1", Port: r.core, UriParams: sip.HeaderParams{{K: "transport", V: "tcp"}}})
	req.SetTransport("TCP")
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "voicemail", Host: "pbx.example.com"}, Params: sip.HeaderParams{{K: "tag", V: sip.GenerateTagN(8)}}})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "1001", Host: "pbx.example.com"}})
	req.AppendHeader(sip.NewHeader("Contact", "<sip:voicemail@127.0.0.1:1;transport=tcp>"))
	return req
}

// TestMessageWaitingToClient: the PBX's unsolicited message-waiting
// NOTIFY and a MESSAGE, sent to the token it has as the subscriber's
// contact, reach the client on its flow, with the body, and nothing of the
// PBX; a token with no binding gets 480.
func TestMessageWaitingToClient(t *testing.T) {
	pbx := startPBXPhone(t)
	r := newCallRig(t, pbx)
	if res := pbxDo(t, pbx, r.coreRequest(sip.NOTIFY, "nobody")); res.StatusCode != 480 {
		t.Errorf("NOTIFY for no binding: %d, want 480", res.StatusCode)
	}
	r.register()
	token := r.svc.Bindings()[0].Token
	mwi := "Messages-Waiting: yes\r\nMessage-Account: sip:1001@pbx.example.com\r\nVoice-Message: 2/1\r\n"
	for _, m := range []struct {
		method      sip.RequestMethod
		ct, body    string
		extraHeader sip.Header
	}{
		{sip.NOTIFY, "application/simple-message-summary", mwi, sip.NewHeader("Event", "message-summary")},
		{sip.MESSAGE, "text/plain", "call me", sip.NewHeader("Subject", "hi")},
	} {
		req := r.coreRequest(m.method, token)
		req.AppendHeader(m.extraHeader)
		if m.method == sip.NOTIFY {
			req.AppendHeader(sip.NewHeader("Subscription-State", "active"))
		}
		ct := sip.ContentTypeHeader(m.ct)
		req.AppendHeader(&ct)
		req.SetBody([]byte(m.body))
		res := pbxDo(t, pbx, req)
		if res.StatusCode != 200 || !res.To().Params.Has("tag") {
			t.Errorf("%s: %d %s", m.method, res.StatusCode, res.To())
		}
		got := next(t, r.inDialog, string(m.method)+" at the client")
		if got.Method != m.method || string(got.Body()) != m.body || got.To().Address.User != "1001" || got.GetHeader(m.extraHeader.Name()) == nil {
			t.Errorf("%s reached the client as:\n%s", m.method, got)
		}
		if strings.Contains(got.String(), pbx.addr) || got.CallID().Value() == req.CallID().Value() {
			t.Errorf("%s at the client shows the PBX's side:\n%s", m.method, got)
		}
	}
}

// TestSubscribeMessageSummary: a client's SUBSCRIBE to its mailbox makes
// a subscription on each side; the PBX's NOTIFYs in its dialog reach the
// client in the client's; the client's refresh and unsubscribe reach the
// PBX in the PBX's; a final NOTIFY ends it.
func TestSubscribeMessageSummary(t *testing.T) {
	pbx := startPBXPhone(t)
	r := newCallRig(t, pbx)
	host, port := "127.0.0.1", atoiTest(strings.Split(r.access, ":")[1])
	sub := sip.NewRequest(sip.SUBSCRIBE, sip.Uri{Scheme: "sip", User: "1001", Host: host, Port: port})
	sub.SetTransport("UDP")
	sub.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "1001", Host: "pbx.example.com"}, Params: sip.HeaderParams{{K: "tag", V: "sub-client"}}})
	sub.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "1001", Host: "pbx.example.com"}})
	sub.AppendHeader(sip.NewHeader("Call-ID", "client-sub-1"))
	sub.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.SUBSCRIBE})
	sub.AppendHeader(sip.NewHeader("Contact", "<sip:1001@127.0.0.1:"+strconv.Itoa(r.clientSIP)+">"))
	sub.AppendHeader(sip.NewHeader("Event", "message-summary"))
	sub.AppendHeader(sip.NewHeader("Accept", "application/simple-message-summary"))
	sub.AppendHeader(sip.NewHeader("Expires", "600"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := r.cl.Do(ctx, sub)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %v %v", res, err)
	}
	sbcTag, _ := res.To().Params.Get("tag")
	if sbcTag == "" || res.Contact() == nil || res.GetHeader("Expires") == nil {
		t.Fatalf("the 200 to the SUBSCRIBE:\n%s", res)
	}
	var atPBX *sip.Request
	for _, req := range pbx.requests() {
		if req.Method == sip.SUBSCRIBE {
			atPBX = req
		}
	}
	if atPBX == nil || atPBX.CallID().Value() == "client-sub-1" || atPBX.GetHeader("Event") == nil || strings.Contains(atPBX.String(), strconv.Itoa(r.clientSIP)) {
		t.Fatalf("the PBX's SUBSCRIBE:\n%v", atPBX)
	}

	// The PBX notifies in its dialog.
	notify := func(state, body string, cseq uint32) *sip.Response {
		n := sip.NewRequest(sip.NOTIFY, *atPBX.Contact().Address.Clone())
		n.SetTransport("TCP")
		n.AppendHeader(&sip.FromHeader{Address: atPBX.To().Address, Params: sip.HeaderParams{{K: "tag", V: "pbx-sub"}}})
		n.AppendHeader(&sip.ToHeader{Address: atPBX.From().Address, Params: atPBX.From().Params.Clone()})
		n.AppendHeader(sip.NewHeader("Call-ID", atPBX.CallID().Value()))
		n.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.NOTIFY})
		n.AppendHeader(sip.NewHeader("Event", "message-summary"))
		n.AppendHeader(sip.NewHeader("Subscription-State", state))
		n.AppendHeader(sip.NewHeader("Contact", "<sip:127.0.0.1:1;transport=tcp>"))
		ct := sip.ContentTypeHeader("application/simple-message-summary")
		n.AppendHeader(&ct)
		n.SetBody([]byte(body))
		return pbxDo(t, pbx, n)
	}
	if res := notify("active;expires=600", "Messages-Waiting: yes\r\n", 1); res.StatusCode != 200 {
		t.Fatalf("NOTIFY: %d", res.StatusCode)
	}
	got := next(t, r.inDialog, "NOTIFY at the client")
	toTag, _ := got.To().Params.Get("tag")
	fromTag, _ := got.From().Params.Get("tag")
	if got.CallID().Value() != "client-sub-1" || toTag != "sub-client" || fromTag != sbcTag || string(got.Body()) != "Messages-Waiting: yes\r\n" {
		t.Errorf("NOTIFY at the client:\n%s", got)
	}

	// The client unsubscribes in its dialog.
	unsub := sip.NewRequest(sip.SUBSCRIBE, *res.Contact().Address.Clone())
	unsub.SetTransport("UDP")
	unsub.AppendHeader(&sip.FromHeader{Address: sub.From().Address, Params: sip.HeaderParams{{K: "tag", V: "sub-client"}}})
	unsub.AppendHeader(&sip.ToHeader{Address: sub.To().Address, Params: sip.HeaderParams{{K: "tag", V: sbcTag}}})
	unsub.AppendHeader(sip.NewHeader("Call-ID", "client-sub-1"))
	unsub.AppendHeader(&sip.CSeqHeader{SeqNo: 2, MethodName: sip.SUBSCRIBE})
	unsub.AppendHeader(sip.NewHeader("Event", "message-summary"))
	unsub.AppendHeader(sip.NewHeader("Expires", "0"))
	if res, err := r.cl.Do(ctx, unsub); err != nil || res.StatusCode != 200 {
		t.Fatalf("unSUBSCRIBE: %v %v", res, err)
	}
	got = next(t, pbx.inDialog, "unSUBSCRIBE at the PBX")
	if got.CallID().Value() != atPBX.CallID().Value() || got.GetHeader("Expires").Value() != "0" {
		t.Errorf("unSUBSCRIBE at the PBX:\n%s", got)
	}
	if res := notify("terminated;reason=timeout", "", 2); res.StatusCode != 200 {
		t.Fatalf("final NOTIFY: %d", res.StatusCode)
	}
	next(t, r.inDialog, "final NOTIFY at the client")
	// The subscription is gone: another NOTIFY gets 481.
	if res := notify("active", "", 3); res.StatusCode != 481 {
		t.Errorf("NOTIFY after the end: %d, want 481", res.StatusCode)
	}
}
