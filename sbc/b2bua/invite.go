package b2bua

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/psigate/psigate/sbc/media"
	"github.com/psigate/psigate/sbc/media/relay"
	"github.com/psigate/psigate/sbc/signal"
)

// Why a call attempt was cancelled.
var (
	errCallerCancelled = errors.New("cancelled by the caller")
	errCallerGone      = errors.New("the caller's transaction is gone")
	errNoAnswer        = errors.New("no answer in time")
)

// ackWait bounds the wait for the caller's ACK to a 2xx that carried an
// offer (late offer): 64*T1, RFC 3261 section 13.3.1.4.
var ackWait = 64 * sip.T1

// bridge sends the call on to the callee, relays its answer, and files
// the established call.
func (b *B2BUA) bridge(s Settings, p plan, caller *leg, req *sip.Request, tx sip.ServerTransaction) error {
	in := caller.uas
	c := &call{onEnd: s.OnEnd, cancel: func() {}, answerDone: make(chan struct{}), holding: make(chan struct{}), info: CallInfo{
		From: uriString(partyURI(req.From().Address)), To: uriString(partyURI(req.To().Address)), ToClient: p.toClient,
		CallerAgent: caller.agent, CallID: req.CallID().Value(), Started: time.Now(),
	}}
	// Media inactivity ends an established call with BYE on both legs.
	var established atomic.Bool
	onMedia := func(ev relay.Event) {
		if established.Load() {
			b.log.Info("call ended by media inactivity", "call-id", c.info.CallID, "event", ev.Kind, "side", ev.Side, "idle", ev.Idle)
			go c.hangup(b.log, nil, ReasonMediaTimeout)
		}
	}
	sess, err := media.NewSession(b.mediaEngine(), p.caller, p.callee, onMedia)
	if err != nil {
		_ = in.Respond(503, "Service Unavailable", nil)
		_ = in.Close()
		c.record(Failed, 503, "no media ports")
		return err
	}
	c.media = sess
	c.caller = in
	// failWith ends the attempt with a final response to the caller (the
	// callee's, with the headers that may cross, when from is set).
	failWith := func(res Result, code int, reason string, from *sip.Response, why string, err error) error {
		c.record(res, code, why)
		sess.Close()
		_ = in.WriteResponse(response(in.InviteRequest, code, reason, nil, "", from, p.back))
		_ = in.Close()
		return err
	}
	fail := func(res Result, code int, reason, why string, err error) error {
		return failWith(res, code, reason, nil, why, err)
	}
	bd, err := bodyOf(req.Body(), contentType(req))
	if err != nil {
		return fail(Failed, 415, "Unsupported Media Type", "body without SDP", err)
	}
	var outBody []byte
	var outType string
	if bd != nil {
		offer, err := sess.Offer(relay.A, bd.sdp)
		if errors.Is(err, media.ErrNotAcceptable) {
			return fail(Failed, 488, "Not Acceptable Here", "offer not acceptable: "+err.Error(), err)
		}
		if err != nil {
			return fail(Failed, 488, "Not Acceptable Here", "malformed offer", err)
		}
		outBody, outType = bd.with(offer), bd.contentType
	}
	out := p.invite(outBody, outType)
	p.realm.SendFrom(out)
	copyHeaders(out, req, p.headers)
	if bd != nil {
		// psigate acknowledges the callee's reliable provisionals itself
		// (RFC 3262, hop by hop); the caller's are psigate's own
		// (reliable.go).
		out.AppendHeader(sip.NewHeader("Supported", "100rel"))
	}
	if rep := req.GetHeader("Replaces"); rep != nil {
		out.AppendHeader(sip.NewHeader("Replaces", b.replaces(rep.Value())))
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	c.cancel = func() { cancel(nil) }
	// With no response at all, sipgo cannot CANCEL (RFC 3261 section
	// 9.1 needs a provisional first): give up on the transaction.
	noReply := afterFunc(p.noReply, func() { cancel(sipgo.WaitAnswerForceCancelErr) })
	var noAnswer *time.Timer
	defer func() {
		noReply.Stop()
		if noAnswer != nil {
			noAnswer.Stop()
		}
	}()
	if !tx.OnCancel(func(*sip.Request) { cancel(errCallerCancelled) }) {
		cancel(nil) // cancelled (or gone) before psigate could listen
		return fail(Cancelled, 487, "Request Terminated", "caller cancelled", errCallerCancelled)
	}
	dc, err := b.clientCache(p.realm, p.transport).WriteInvite(ctx, out)
	if err != nil {
		cancel(nil)
		if p.toClient {
			// The client's flow is gone (its connection closed): it
			// cannot be reached until it registers again.
			return fail(Failed, 480, "Temporarily Unavailable", "subscriber's flow gone", err)
		}
		return fail(Failed, 503, "Service Unavailable", "callee unreachable", err)
	}
	var rel *reliable
	if wantsReliable(req) {
		rel = newReliable(ctx, in)
		b.mu.Lock()
		b.early[in.ID] = rel
		b.mu.Unlock()
		// Kept a while after the call is set up: a PRACK may cross the
		// 2xx.
		defer time.AfterFunc(ackWait, func() {
			b.mu.Lock()
			delete(b.early, in.ID)
			b.mu.Unlock()
		})
	}
	answered := false // early media answered the caller's offer
	prack := &pracker{dc: dc, realm: p.realm, flow: p.flow, cseq: dc.InviteRequest.CSeq().SeqNo}
	err = dc.WaitAnswer(ctx, sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
		noReply.Stop()
		if res.StatusCode > 100 && res.StatusCode < 200 {
			if dup := prack.acknowledge(ctx, res); dup {
				return nil // a retransmission of a reliable provisional
			}
		}
		if noAnswer == nil && res.IsProvisional() && res.StatusCode > 100 {
			noAnswer = afterFunc(p.noAnswer, func() { cancel(errNoAnswer) })
		}
		if !res.IsProvisional() || res.StatusCode == 100 {
			return nil
		}
		var body []byte
		var ct string
		if rb, err := bodyOf(res.Body(), contentType(res)); err == nil && rb != nil && bd != nil && !answered {
			if ans, err := sess.Answer(relay.B, rb.sdp); err == nil {
				answered, body, ct = true, rb.with(ans), rb.contentType
			} // else: early media the caller cannot take; ringing goes on
		}
		resp := response(in.InviteRequest, res.StatusCode, res.Reason, body, ct, res, p.back)
		if rel != nil {
			rel.enqueue(resp)
		} else if err := in.WriteResponse(resp); err != nil {
			// The caller's transaction is gone: cancel the callee
			// (an error from here would leave it ringing).
			cancel(errCallerGone)
		}
		return nil
	}})
	var dr *sipgo.ErrDialogResponse
	switch cause := context.Cause(ctx); {
	case errors.As(err, &dr):
		if code := dr.Res.StatusCode; (code == 486 || code == 600) && p.busyFor > 0 && bd != nil && !answered {
			b.playBusy(ctx, p, in, sess)
		}
		cancel(nil)
		return failWith(Refused, dr.Res.StatusCode, dr.Res.Reason, dr.Res, strconv.Itoa(dr.Res.StatusCode)+" "+dr.Res.Reason, err)
	case errors.Is(cause, errCallerGone):
		b.dropAnswer(dc, p, prack.cseq)
		return fail(Failed, 500, "Server Internal Error", "caller's transaction gone", cause)
	case errors.Is(cause, errCallerCancelled):
		b.dropAnswer(dc, p, prack.cseq)
		c.record(Cancelled, 487, "caller cancelled")
		sess.Close()
		_ = in.Close()
		return cause // sipgo answered the caller's INVITE with 487
	case errors.Is(cause, sipgo.WaitAnswerForceCancelErr):
		return fail(Failed, 408, "Request Timeout", "no reply from the callee", errors.New("no reply from the callee"))
	case errors.Is(cause, errNoAnswer):
		b.dropAnswer(dc, p, prack.cseq)
		return fail(Cancelled, 480, "No Answer", "no answer in time", cause)
	case err != nil:
		// Not from the context (sipgo gave up on the transaction, for
		// example after more than 10 responses): a callee that rang
		// gets psigate's CANCEL (RFC 3261 section 9.1).
		cancelCallee(dc, p.realm.Client)
		cancel(nil)
		return fail(Failed, 504, "Server Time-out", "callee failed: "+err.Error(), err)
	}
	res := dc.InviteResponse
	callee := calleeLeg(dc, res, p.realm, p.toClient, p.flow, contact(p.realm, p.transport), prack.cseq)
	callee.reflow = p.reflow
	c.legs = [2]*leg{caller, callee}
	c.info.CalleeAgent = callee.agent
	rb, err := bodyOf(res.Body(), contentType(res))
	if err == nil && rb == nil && bd == nil {
		err = errors.New("no offer in the 2xx to an INVITE without one")
	}
	// ackBody is the ACK's answer to an offer in the 2xx (late offer).
	var toCaller, ackBody []byte
	var toCallerType string
	switch {
	case err != nil:
	case bd == nil: // the callee offers; the caller answers in its ACK
		var offer []byte
		if offer, err = sess.Offer(relay.B, rb.sdp); err == nil {
			toCaller, toCallerType = rb.with(offer), rb.contentType
		}
	case answered:
		toCaller, toCallerType = bd.with(sess.LastSent(relay.A)), bd.contentType
	default:
		var ans []byte
		if rb == nil {
			err = errors.New("no answer in the 2xx")
		} else if ans, err = sess.Answer(relay.B, rb.sdp); err == nil {
			toCaller, toCallerType = rb.with(ans), rb.contentType
		}
	}
	if err != nil {
		_ = b.ackCallee(ctx, callee, nil)
		_ = callee.bye(ctx, "")
		callee.close()
		cancel(nil)
		return fail(Failed, 488, "Not Acceptable Here", "answer not acceptable", err)
	}
	c.answered = time.Now()
	c.info.Answered = c.answered
	if t := b.sessionTimer(c, res); t != nil {
		c.timer.Store(t)
	}
	sess.Rearm()  // the media timeouts count from the answer
	b.remember(c) // before the ACK: the callee may hang up as soon as it has it
	established.Store(true)
	if bd != nil {
		if err := b.ackCallee(ctx, callee, nil); err != nil {
			c.hangup(b.log, nil, ReasonNoAck)
			return fmt.Errorf("ACK to the callee: %w", err)
		}
	}
	var acks chan *sip.Request
	if bd == nil {
		acks = c.expectAck(caller, req.CSeq().SeqNo)
	}
	if rel != nil {
		c.holdForPrack()
		if err := rel.waitAnswered(ctx); err != nil {
			// RFC 3262 section 3: no PRACK in 64*T1, a 5xx.
			c.hangup(b.log, nil, "no PRACK")
			return err
		}
	}
	ok := response(in.InviteRequest, 200, "OK", toCaller, toCallerType, res, p.back)
	ok.AppendHeader(&caller.contact)
	if err := c.answerCaller(ok); err != nil {
		c.hangup(b.log, nil, "answer not sent")
		return err
	}
	if bd == nil {
		// The answer to the callee's offer is in the caller's ACK.
		select {
		case ack := <-acks:
			ab, ans, err := answerInAck(sess, relay.A, ack)
			if err != nil {
				_ = b.ackCallee(ctx, callee, nil)
				c.hangup(b.log, nil, "answer in ACK not acceptable")
				return err
			}
			ackBody = ab.with(ans)
			if err := b.ackCallee(ctx, callee, ackBody, ab.contentType); err != nil {
				c.hangup(b.log, nil, ReasonNoAck)
				return err
			}
		case <-time.After(ackWait):
			_ = b.ackCallee(ctx, callee, nil)
			c.hangup(b.log, nil, ReasonNoAck)
			return errors.New("no ACK from the caller")
		}
	}
	return nil
}

// playBusy plays the caller a busy tone as early media before its call
// is refused as busy (seed Appendix A: Zoom clients play none of their
// own): a 183 with psigate's own answer, then the tone, until the time is
// up or the caller hangs up.
func (b *B2BUA) playBusy(ctx context.Context, p plan, in *sipgo.DialogServerSession, sess *media.Session) {
	ans, player, err := sess.AnswerLocally(relay.A)
	if err != nil {
		b.log.Info("no busy tone", "call-id", in.InviteRequest.CallID().Value(), "err", err)
		return
	}
	if err := in.WriteResponse(response(in.InviteRequest, 183, "Session Progress", ans, "application/sdp", nil, nil)); err != nil {
		return
	}
	if err := player.Play(ctx, p.busyTone, p.busyFor); err != nil {
		b.log.Warn("busy tone failed", "call-id", in.InviteRequest.CallID().Value(), "err", err)
	}
}

// pracker sends the PRACKs for the callee's reliable provisional
// responses (RFC 3262 section 7.2) in its early dialog.
type pracker struct {
	dc    *sipgo.DialogClientSession
	realm *signal.Realm
	flow  string
	cseq  uint32 // the last CSeq psigate used in the dialog
	rseqs map[string]uint32
}

// acknowledge sends a PRACK for a reliable provisional and reports
// whether the response is a retransmission of one already acknowledged.
func (pr *pracker) acknowledge(ctx context.Context, res *sip.Response) (dup bool) {
	if !hasTag(res, "Require", "100rel") {
		return false
	}
	h := res.GetHeader("RSeq")
	if h == nil {
		return false
	}
	rseq, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
	if err != nil {
		return false
	}
	if res.To() == nil {
		return true // unusable: ignore it
	}
	tag, _ := res.To().Params.Get("tag")
	if pr.rseqs == nil {
		pr.rseqs = map[string]uint32{}
	}
	if last, ok := pr.rseqs[tag]; ok && uint32(rseq) <= last {
		return true
	}
	pr.rseqs[tag] = uint32(rseq)
	inv := pr.dc.InviteRequest
	target := inv.Recipient
	if c := res.Contact(); c != nil {
		target = c.Address
	}
	pr.cseq++
	req := sip.NewRequest(sip.PRACK, *target.Clone())
	from, to := *inv.From(), *res.To()
	req.AppendHeader(&from)
	req.AppendHeader(&to)
	req.AppendHeader(sip.NewHeader("Call-ID", inv.CallID().Value()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: pr.cseq, MethodName: sip.PRACK})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	rr := res.GetHeaders("Record-Route")
	for i := len(rr) - 1; i >= 0; i-- {
		req.AppendHeader(sip.NewHeader("Route", rr[i].Value()))
	}
	req.AppendHeader(sip.NewHeader("RAck", fmt.Sprintf("%d %d INVITE", rseq, inv.CSeq().SeqNo)))
	req.SetBody(nil)
	req.SetTransport(inv.Transport())
	if pr.flow != "" {
		req.SetDestination(pr.flow)
	}
	pr.realm.SendFrom(req)
	go func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), inDialogWait)
		defer cancel()
		_, _ = pr.realm.Client.Do(ctx, req, sipgo.ClientRequestAddVia)
	}()
	return false
}

// hasTag reports whether any of a message's headers of a name lists an
// option tag.
func hasTag(m message, header, tag string) bool {
	for _, h := range m.GetHeaders(header) {
		for _, t := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(t), tag) {
				return true
			}
		}
	}
	return false
}

// cancelCallee sends a CANCEL for psigate's INVITE when the callee sent a
// provisional response and no final one (RFC 3261 section 9.1): the
// INVITE's Request-URI, Call-ID, From, To, CSeq number and top Via.
func cancelCallee(dc *sipgo.DialogClientSession, cl *sipgo.Client) {
	res := dc.InviteResponse
	if res == nil || !res.IsProvisional() {
		return
	}
	inv := dc.InviteRequest
	req := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	for _, name := range []string{"Via", "From", "To", "Call-ID", "Route"} {
		for _, h := range inv.GetHeaders(name) {
			req.AppendHeader(sip.HeaderClone(h))
		}
	}
	req.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.SetBody(nil)
	req.SetTransport(inv.Transport())
	req.SetDestination(inv.Destination())
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), inDialogWait)
		defer cancel()
		_, _ = cl.Do(ctx, req, func(*sipgo.Client, *sip.Request) error { return nil })
	}()
}

// dropAnswer ends a callee's dialog whose 2xx crossed psigate's CANCEL
// (RFC 3261 sections 9.1 and 15: the 2xx wins, so it is acknowledged
// and the call ended with BYE).
func (b *B2BUA) dropAnswer(dc *sipgo.DialogClientSession, p plan, cseq uint32) {
	res := dc.InviteResponse
	if res == nil || !res.IsSuccess() {
		return
	}
	callee := calleeLeg(dc, res, p.realm, p.toClient, p.flow, contact(p.realm, p.transport), cseq)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), inDialogWait)
		defer cancel()
		if err := b.ackCallee(ctx, callee, nil); err != nil {
			b.log.Warn("ACK to a 2xx after CANCEL failed", "call-id", callee.callID, "err", err)
		}
		if err := callee.bye(ctx, `SIP;cause=487;text="cancelled by the caller"`); err != nil {
			b.log.Warn("BYE after CANCEL failed", "call-id", callee.callID, "err", err)
		}
		callee.close()
	}()
}

// ackCallee acknowledges the callee's 2xx, with the answer when the 2xx
// carried the offer.
func (b *B2BUA) ackCallee(ctx context.Context, callee *leg, body []byte, ct ...string) error {
	callee.mu.Lock()
	ack := sip.NewRequest(sip.ACK, *callee.target.Clone())
	callee.mu.Unlock()
	if callee.flow != "" {
		ack.SetDestination(callee.flow)
	}
	ack.SetTransport(callee.transport)
	callee.realm.SendFrom(ack)
	if len(body) > 0 {
		ack.SetBody(body)
		h := sip.ContentTypeHeader(ct[0])
		ack.AppendHeader(&h)
	}
	return callee.uac.WriteAck(ctx, ack)
}

// HandleAck takes an ACK on any realm: it confirms a dialog, and the one
// to a 2xx with an offer carries the answer.
func (b *B2BUA) HandleAck(r *signal.Realm, req *sip.Request, tx sip.ServerTransaction) {
	_ = b.serverCache(r, signal.TransportOf(req.Transport())).ReadAck(req, tx)
	if c, from := b.match(req); c != nil {
		c.ack(from, req)
	}
}

func uriString(u sip.Uri) string { return u.String() }

// answerInAck takes the answer an ACK carries (to an offer psigate sent
// in a 2xx) from side from through the media session: the ACK's body
// and the answer for the other side.
func answerInAck(sess *media.Session, from relay.Side, ack *sip.Request) (*body, []byte, error) {
	ab, err := bodyOf(ack.Body(), contentType(ack))
	if err == nil && ab == nil {
		err = errors.New("ACK without the answer")
	}
	if err != nil {
		return nil, nil, err
	}
	ans, err := sess.Answer(from, ab.sdp)
	return ab, ans, err
}
