package b2bua

import (
	"context"
	"fmt"
	"sync"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/psigate/psigate/sbc/media/relay"
	"github.com/psigate/psigate/sbc/signal"
)

// leg is one of a call's two dialogs. On the caller's leg psigate is the
// UAS (uas is set), on the callee's the UAC (uac is set); either may be a
// subscriber's (client) or the PBX's. sipgo's sessions carry the initial
// INVITE transaction; every later request of psigate's in the dialog is
// built here, with the leg's own CSeq, route set and remote target.
type leg struct {
	side   relay.Side // its media side: relay.A is the caller's
	uas    *sipgo.DialogServerSession
	uac    *sipgo.DialogClientSession
	realm  *signal.Realm
	client bool // a subscriber's leg, on the access realm
	// flow, on a client's leg, is where its requests go: the address
	// its INVITE or REGISTER came from (its Contact is unreachable
	// behind NAT), over the same connection for TCP and TLS.
	flow      string
	transport string
	// reflow, on a client's leg, finds the client's flow now: a client
	// whose connection broke registers again on a new one, and the
	// call's requests follow it there.
	reflow  func() (transport, source string, ok bool)
	contact sip.ContactHeader // psigate's Contact on this leg
	agent   string            // the peer's User-Agent or Server

	callID            string
	local, remote     sip.FromHeader // psigate's and the peer's URIs, without tags
	localTag, peerTag string
	route             []string // the route set, in the order requests carry it

	mu         sync.Mutex
	target     sip.Uri // the remote target, refreshed by re-INVITE and UPDATE
	cseq       uint32  // psigate's last CSeq on the leg
	remoteCSeq uint32  // the last CSeq of a request from the peer
	seenCSeq   bool
}

// callerLeg is the leg of a received INVITE (RFC 3261 section 12.1.1:
// the route set is its Record-Route as it came).
func callerLeg(in *sipgo.DialogServerSession, realm *signal.Realm, client bool, c sip.ContactHeader) *leg {
	req := in.InviteRequest
	l := &leg{side: relay.A, uas: in, realm: realm, client: client, transport: req.Transport(), contact: c, agent: agentOf(req),
		callID: req.CallID().Value(), target: *req.Contact().Address.Clone(),
		local:  sip.FromHeader{DisplayName: req.To().DisplayName, Address: *req.To().Address.Clone()},
		remote: sip.FromHeader{DisplayName: req.From().DisplayName, Address: *req.From().Address.Clone()},
		cseq:   1, remoteCSeq: req.CSeq().SeqNo, seenCSeq: true}
	l.localTag, _ = req.To().Params.Get("tag") // sipgo tags its copy
	l.peerTag, _ = req.From().Params.Get("tag")
	for _, h := range req.GetHeaders("Record-Route") {
		l.route = append(l.route, h.Value())
	}
	if client {
		l.flow = req.Source()
	}
	return l
}

// calleeLeg is the leg of a sent INVITE once answered (RFC 3261 section
// 12.1.2: the route set is the 2xx's Record-Route in reverse); cseq is
// the last CSeq psigate used on it (the INVITE's, or a PRACK's).
func calleeLeg(dc *sipgo.DialogClientSession, res *sip.Response, realm *signal.Realm, client bool, flow string, c sip.ContactHeader, cseq uint32) *leg {
	inv := dc.InviteRequest
	l := &leg{side: relay.B, uac: dc, realm: realm, client: client, flow: flow, transport: inv.Transport(), contact: c, agent: agentOf(res),
		callID: inv.CallID().Value(), target: *inv.Recipient.Clone(),
		local:  sip.FromHeader{DisplayName: inv.From().DisplayName, Address: *inv.From().Address.Clone()},
		remote: sip.FromHeader{DisplayName: res.To().DisplayName, Address: *res.To().Address.Clone()},
		cseq:   cseq}
	l.localTag, _ = inv.From().Params.Get("tag")
	l.peerTag, _ = res.To().Params.Get("tag")
	if ct := res.Contact(); ct != nil {
		l.target = *ct.Address.Clone()
	}
	rr := res.GetHeaders("Record-Route")
	for i := len(rr) - 1; i >= 0; i-- {
		l.route = append(l.route, rr[i].Value())
	}
	if !client && len(l.route) == 0 {
		// The PBX's requests go to the node the call went to, whatever
		// its Contact names: the core realm connects to nodes only.
		l.flow = inv.Destination()
	}
	return l
}

func (l *leg) id() string {
	if l.uas != nil {
		return l.uas.ID
	}
	return l.uac.ID
}

func (l *leg) dialog() *sipgo.Dialog {
	if l.uas != nil {
		return &l.uas.Dialog
	}
	return &l.uac.Dialog
}

// inOrder checks a request's CSeq against the peer's last (RFC 3261
// section 12.2.2: lower means out of order, 500) and keeps it.
func (l *leg) inOrder(req *sip.Request) bool {
	n := req.CSeq().SeqNo
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seenCSeq && n <= l.remoteCSeq {
		return false
	}
	l.remoteCSeq, l.seenCSeq = n, true
	return true
}

// refresh takes a new remote target from a target refresh request or
// its 2xx (RFC 3261 section 12.2.1.2); a client's stays on its flow.
func (l *leg) refresh(m sip.Message) {
	var c *sip.ContactHeader
	switch m := m.(type) {
	case *sip.Request:
		c = m.Contact()
	case *sip.Response:
		c = m.Contact()
	}
	if c == nil {
		return
	}
	l.mu.Lock()
	l.target = *c.Address.Clone()
	l.mu.Unlock()
}

// build makes req a request of the dialog: psigate's From and tag, the
// peer's To and tag, the Call-ID, the next CSeq (an ACK keeps the one it
// has), the route set, the remote target as Request-URI, psigate's
// Contact on requests that refresh the target, and the destination: the
// client's flow, else the first route, else the target.
func (l *leg) build(req *sip.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	req.Recipient = *l.target.Clone()
	from := sip.FromHeader{DisplayName: l.local.DisplayName, Address: l.local.Address, Params: sip.HeaderParams{{K: "tag", V: l.localTag}}}
	to := sip.ToHeader{DisplayName: l.remote.DisplayName, Address: l.remote.Address, Params: sip.HeaderParams{{K: "tag", V: l.peerTag}}}
	hdrs := []sip.Header{&from, &to, sip.NewHeader("Call-ID", l.callID)}
	if req.CSeq() == nil {
		l.cseq++
		hdrs = append(hdrs, &sip.CSeqHeader{SeqNo: l.cseq, MethodName: req.Method})
	}
	mf := sip.MaxForwardsHeader(70)
	hdrs = append(hdrs, &mf)
	for _, r := range l.route {
		hdrs = append(hdrs, sip.NewHeader("Route", r))
	}
	req.PrependHeader(hdrs...)
	if req.Contact() == nil && (req.Method == sip.INVITE || req.Method == sip.UPDATE || req.Method == sip.SUBSCRIBE || req.Method == sip.NOTIFY || req.Method == sip.REFER) {
		c := l.contact
		req.AppendHeader(&c)
	}
	if req.Body() == nil {
		req.SetBody(nil) // Content-Length: 0
	}
	if l.reflow != nil {
		if t, src, ok := l.reflow(); ok && src != l.flow {
			l.transport, l.flow = t, src
		}
	}
	req.SetTransport(l.transport)
	if l.flow != "" {
		req.SetDestination(l.flow)
	}
	l.realm.SendFrom(req)
}

// request starts a client transaction for an in-dialog request.
func (l *leg) request(ctx context.Context, req *sip.Request) (sip.ClientTransaction, error) {
	l.build(req)
	return l.realm.Client.TransactionRequest(ctx, req, sipgo.ClientRequestAddVia)
}

// ack acknowledges a 2xx to psigate's re-INVITE with CSeq cseq.
func (l *leg) ack(cseq uint32, body []byte, ct string) error {
	req := sip.NewRequest(sip.ACK, sip.Uri{})
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.ACK})
	if len(body) > 0 {
		req.SetBody(body)
		h := sip.ContentTypeHeader(ct)
		req.AppendHeader(&h)
	}
	l.build(req)
	return l.realm.Client.WriteRequest(req, sipgo.ClientRequestAddVia)
}

// do sends an in-dialog request and waits for its final response.
func (l *leg) do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	l.build(req)
	return l.doBuilt(ctx, req)
}

// doBuilt is do for a request build has made.
func (l *leg) doBuilt(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	return l.realm.Do(ctx, req)
}

// bye ends the dialog with a BYE, unless the peer ended it.
func (l *leg) bye(ctx context.Context, reason string) error {
	if l.dialog().LoadState() == sip.DialogStateEnded {
		return nil
	}
	req := sip.NewRequest(sip.BYE, sip.Uri{})
	if reason != "" {
		req.AppendHeader(sip.NewHeader("Reason", reason))
	}
	res, err := l.do(ctx, req)
	if err != nil {
		return err
	}
	if !res.IsSuccess() && res.StatusCode != 481 {
		return fmt.Errorf("BYE answered %d %s", res.StatusCode, res.Reason)
	}
	return nil
}

// close drops the dialog from sipgo's caches.
func (l *leg) close() {
	if l.uas != nil {
		_ = l.uas.Close()
	} else {
		_ = l.uac.Close()
	}
}
