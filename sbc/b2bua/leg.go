package b2bua

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/psigate/psigate/sbc/media/relay"
)

// leg is one of a call's two dialogs. On the caller's leg psigate is the
// UAS (uas is set), on the callee's the UAC (uac is set); either may be a
// subscriber's (client) or the PBX's.
type leg struct {
	side   relay.Side // its media side: relay.A is the caller's
	uas    *sipgo.DialogServerSession
	uac    *sipgo.DialogClientSession
	client bool // a subscriber's leg, on the access realm
	// flow, on a client's leg, is where its requests go: the address
	// its INVITE or REGISTER came from (its Contact is unreachable
	// behind NAT), over the same connection for TCP and TLS.
	flow    string
	contact sip.ContactHeader // psigate's Contact on this leg
	agent   string            // the peer's User-Agent or Server

	mu         sync.Mutex
	target     sip.Uri // the remote target, refreshed by re-INVITE and UPDATE
	remoteCSeq uint32  // the last CSeq of a request from the peer
	seenCSeq   bool
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

// callID, localTag and remoteTag identify the dialog as psigate has it.
func (l *leg) callID() string { return l.dialog().InviteRequest.CallID().Value() }

func (l *leg) localTag() string {
	d := l.dialog()
	if l.uas != nil {
		t, _ := d.InviteRequest.To().Params.Get("tag") // sipgo tags its copy
		return t
	}
	t, _ := d.InviteRequest.From().Params.Get("tag")
	return t
}

func (l *leg) remoteTag() string {
	d := l.dialog()
	if l.uas != nil {
		t, _ := d.InviteRequest.From().Params.Get("tag")
		return t
	}
	if d.InviteResponse == nil {
		return ""
	}
	t, _ := d.InviteResponse.To().Params.Get("tag")
	return t
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

// prepare addresses an in-dialog request: the remote target as
// Request-URI, the client's flow as destination, psigate's Contact.
// The dialog session adds From, To, Call-ID, CSeq, Route and Via.
func (l *leg) prepare(req *sip.Request) {
	l.mu.Lock()
	req.Recipient = *l.target.Clone()
	l.mu.Unlock()
	if l.flow != "" {
		req.SetDestination(l.flow)
	}
	if req.Contact() == nil && (req.Method == sip.INVITE || req.Method == sip.UPDATE || req.Method == sip.SUBSCRIBE || req.Method == sip.NOTIFY || req.Method == sip.REFER) {
		c := l.contact
		req.AppendHeader(&c)
	}
}

// request starts a client transaction for an in-dialog request.
func (l *leg) request(ctx context.Context, req *sip.Request) (sip.ClientTransaction, error) {
	l.prepare(req)
	if l.uas != nil {
		return l.uas.TransactionRequest(ctx, req)
	}
	return l.uac.TransactionRequest(ctx, req)
}

// write sends an ACK on the dialog.
func (l *leg) write(req *sip.Request) error {
	l.prepare(req)
	if l.uas != nil {
		return l.uas.WriteRequest(req)
	}
	return l.uac.WriteRequest(req)
}

// do sends an in-dialog request and waits for its final response.
func (l *leg) do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	tx, err := l.request(ctx, req)
	if err != nil {
		return nil, err
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res, nil
		case <-tx.Done():
			if err := tx.Err(); err != nil {
				return nil, err
			}
			return nil, errors.New("transaction ended without a response")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
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
