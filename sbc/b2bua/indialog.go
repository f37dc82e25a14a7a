package b2bua

import (
	"context"
	"errors"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/psigate/psigate/sbc/media"
	"github.com/psigate/psigate/sbc/signal"
)

// inDialogWait bounds a request relayed inside a call: Timer F (64*T1)
// for a non-INVITE, and as long for a re-INVITE's final response.
var inDialogWait = 64 * sip.T1

// HandleRequest takes a request inside a call, from either side, and
// relays it on the call's other leg: BYE, re-INVITE, UPDATE, INFO,
// REFER, NOTIFY, MESSAGE, OPTIONS, SUBSCRIBE. A request for no call gets
// 481; one out of CSeq order 500.
func (b *B2BUA) HandleRequest(r *signal.Realm, req *sip.Request, tx sip.ServerTransaction) {
	if req.Method == sip.PRACK {
		b.handlePrack(req, tx)
		return
	}
	c, from := b.match(req)
	if c == nil {
		if !b.inSubscription(req, tx) {
			signal.Respond(b.log, tx, req, 481, "Call/Transaction Does Not Exist")
		}
		return
	}
	if !from.inOrder(req) {
		signal.Respond(b.log, tx, req, 500, "CSeq Out Of Order")
		return
	}
	switch req.Method {
	case sip.BYE:
		if from.uas != nil {
			_ = from.uas.ReadBye(req, tx)
		} else {
			_ = from.uac.ReadBye(req, tx)
		}
		reason := ReasonCallerBye
		if from.side != 0 {
			reason = ReasonCalleeBye
			// The callee has answered; its BYE may have overtaken
			// psigate's 2xx to the caller.
			c.awaitAnswer(5 * time.Second)
		}
		c.hangup(b.log, from, reason)
	case sip.INVITE, sip.UPDATE:
		b.reoffer(c, from, req, tx)
	default:
		b.pass(c, from, req, tx)
	}
}

// HandleBye ends a call from either side.
func (b *B2BUA) HandleBye(r *signal.Realm, req *sip.Request, tx sip.ServerTransaction) {
	b.HandleRequest(r, req, tx)
}

// allowToward is the header allow-list for messages going to l.
func (b *B2BUA) allowToward(l *leg) headerSet {
	b.mu.Lock()
	s := b.settings
	b.mu.Unlock()
	return s.allow(l.client)
}

// pass relays a request without an offer and its final response.
func (b *B2BUA) pass(c *call, from *leg, req *sip.Request, tx sip.ServerTransaction) {
	to := c.other(from)
	out := sip.NewRequest(req.Method, sip.Uri{})
	copyHeaders(out, req, b.allowToward(to))
	if req.Method == sip.REFER {
		if err := b.referTo(from, to, req, out); err != nil {
			signal.Respond(b.log, tx, req, 400, "Bad Refer-To")
			return
		}
	}
	copyBody(out, req)
	c.referEvent(from, out)
	to.build(out)
	if req.Method == sip.REFER {
		// Its NOTIFYs name it by its CSeq on each side (RFC 3515
		// section 2.4.6): known before it goes, as they may beat its
		// 202.
		c.referred(to, out.CSeq().SeqNo, req.CSeq().SeqNo)
	}
	ctx, cancel := context.WithTimeout(context.Background(), inDialogWait)
	defer cancel()
	res, err := to.doBuilt(ctx, out)
	if err != nil {
		b.log.Info("in-dialog request not answered", "method", req.Method, "call-id", c.info.CallID, "err", err)
		signal.Respond(b.log, tx, req, 408, "Request Timeout")
		return
	}
	if res.StatusCode == 481 && req.Method != sip.NOTIFY && req.Method != sip.SUBSCRIBE {
		defer c.hangup(b.log, to, "481 on "+string(req.Method))
	}
	_ = tx.Respond(response(req, res.StatusCode, res.Reason, res.Body(), contentType(res), res, b.allowToward(from)))
}

// reoffer relays a re-INVITE or an UPDATE: its offer through the media
// session, the answer back. A re-INVITE without an offer gets the other
// side's offer in the 2xx, and the answer comes in the ACK. One exchange
// at a time: another one meanwhile gets 491.
func (b *B2BUA) reoffer(c *call, from *leg, req *sip.Request, tx sip.ServerTransaction) {
	if !c.offering.CompareAndSwap(false, true) {
		signal.Respond(b.log, tx, req, 491, "Request Pending")
		return
	}
	// Released before the final response goes out (for a 2xx with an
	// offer: once the ACK brought the answer), so the peer may start the
	// next exchange as soon as it may.
	defer c.offering.Store(false)
	to := c.other(from)
	bd, err := bodyOf(req.Body(), contentType(req))
	if err != nil {
		signal.Respond(b.log, tx, req, 415, "Unsupported Media Type", sip.NewHeader("Accept", "application/sdp"))
		return
	}
	out := sip.NewRequest(req.Method, sip.Uri{})
	copyHeaders(out, req, b.allowToward(to))
	if bd != nil {
		offer, err := c.media.Offer(from.side, bd.sdp)
		if err != nil {
			code, reason := 488, "Not Acceptable Here"
			if !errors.Is(err, media.ErrNotAcceptable) {
				code, reason = 400, "Bad SDP"
			}
			signal.Respond(b.log, tx, req, code, reason)
			return
		}
		out.SetBody(bd.with(offer))
		h := sip.ContentTypeHeader(bd.contentType)
		out.AppendHeader(&h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), inDialogWait)
	defer cancel()
	ctr, err := to.request(ctx, out)
	if err != nil {
		c.media.Reject()
		signal.Respond(b.log, tx, req, 503, "Service Unavailable")
		return
	}
	defer ctr.Terminate()
	back := b.allowToward(from)
	var res *sip.Response
	for res == nil {
		select {
		case r := <-ctr.Responses():
			if !r.IsProvisional() {
				res = r
			} else if r.StatusCode != 100 && req.Method == sip.INVITE {
				_ = tx.Respond(response(req, r.StatusCode, r.Reason, nil, "", r, back))
			}
		case <-ctr.Done():
			c.media.Reject()
			signal.Respond(b.log, tx, req, 408, "Request Timeout")
			return
		case <-ctx.Done():
			c.media.Reject()
			signal.Respond(b.log, tx, req, 408, "Request Timeout")
			return
		}
	}
	if !res.IsSuccess() {
		if bd != nil {
			c.media.Reject()
		}
		// A non-2xx to a re-INVITE is acknowledged by the transaction.
		c.offering.Store(false)
		_ = tx.Respond(response(req, res.StatusCode, res.Reason, nil, "", res, back))
		if res.StatusCode == 481 || res.StatusCode == 408 {
			c.hangup(b.log, to, "re-INVITE answered "+res.Reason)
		}
		return
	}
	to.refresh(res)
	from.refresh(req)
	if t := c.timer.Load(); t != nil {
		t.refreshed(res)
	} else if t := b.sessionTimer(c, res); t != nil {
		c.timer.Store(t) // negotiated by a re-INVITE or UPDATE
	}
	rb, err := bodyOf(res.Body(), contentType(res))
	var body []byte
	var ct string
	switch {
	case err != nil:
	case bd != nil && rb == nil:
		err = errors.New("no answer in the 2xx")
	case bd != nil:
		var ans []byte
		if ans, err = c.media.Answer(to.side, rb.sdp); err == nil {
			body, ct = rb.with(ans), rb.contentType
		}
	case rb != nil: // the other side offers in its 2xx
		var offer []byte
		if offer, err = c.media.Offer(to.side, rb.sdp); err == nil {
			body, ct = rb.with(offer), rb.contentType
		}
	}
	if err != nil {
		c.media.Reject()
		if req.Method == sip.INVITE {
			_ = to.ack(out.CSeq().SeqNo, nil, "")
		}
		b.log.Info("re-offer failed", "call-id", c.info.CallID, "err", err)
		c.offering.Store(false)
		_ = tx.Respond(response(req, 488, "Not Acceptable Here", nil, "", nil, nil))
		c.hangup(b.log, nil, "unusable answer to a re-offer")
		return
	}
	ok := response(req, res.StatusCode, res.Reason, body, ct, res, back)
	ok.AppendHeader(&from.contact)
	if req.Method != sip.INVITE {
		c.offering.Store(false)
		_ = tx.Respond(ok)
		return
	}
	if bd != nil || rb == nil {
		_ = to.ack(out.CSeq().SeqNo, nil, "")
		c.offering.Store(false)
		if signal.TransportOf(req.Transport()) == signal.UDP {
			// Over UDP the UAS retransmits its 2xx until the ACK
			// (RFC 3261 section 13.3.1.4).
			acks := c.expectAck(from, req.CSeq().SeqNo)
			_ = tx.Respond(ok)
			go resendUntilAck(tx, ok, acks)
			return
		}
		_ = tx.Respond(ok)
		return
	}
	// The offer went back in the 2xx: the answer is in the ACK.
	acks := c.expectAck(from, req.CSeq().SeqNo)
	_ = tx.Respond(ok)
	select {
	case ack := <-acks:
		ab, ans, err := answerInAck(c.media, from.side, ack)
		if err == nil {
			_ = to.ack(out.CSeq().SeqNo, ab.with(ans), ab.contentType)
		} else {
			_ = to.ack(out.CSeq().SeqNo, nil, "")
		}
		if err != nil {
			c.hangup(b.log, nil, "answer in ACK not acceptable")
		}
	case <-time.After(ackWait):
		c.acks.Store(nil)
		_ = to.ack(out.CSeq().SeqNo, nil, "")
		c.hangup(b.log, nil, ReasonNoAck)
	}
}

// resendUntilAck retransmits a 2xx to a re-INVITE received over UDP, T1
// doubling up to T2, until its ACK arrives or 64*T1 have passed.
func resendUntilAck(tx sip.ServerTransaction, ok *sip.Response, acks chan *sip.Request) {
	limit := time.NewTimer(64 * sip.T1)
	defer limit.Stop()
	interval := sip.T1
	for {
		select {
		case <-acks:
			return
		case <-limit.C:
			return
		case <-time.After(interval):
			if tx.Respond(ok) != nil {
				return
			}
			interval = min(2*interval, sip.T2)
		}
	}
}
