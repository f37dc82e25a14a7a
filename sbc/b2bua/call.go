package b2bua

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/psigate/psigate/sbc/media"
	"github.com/psigate/psigate/sbc/media/relay"
)

// call is one call: the caller's leg, the callee's, the media.
type call struct {
	legs   [2]*leg // by media side: relay.A the caller's, relay.B the callee's
	media  *media.Session
	cancel context.CancelFunc
	info   CallInfo // what the portal shows; fixed at answer
	onEnd  func(Record)

	// offering is set while an offer/answer exchange started by a
	// re-INVITE or UPDATE is in flight: another one gets 491 (RFC 3261
	// section 14.2, RFC 3311 section 5.2).
	offering atomic.Bool
	// acks, while set, takes the ACK to a 2xx that carried an offer
	// (late offer), whose answer goes on: from one leg, with one CSeq.
	acks atomic.Pointer[ackWaiter]
	// timer is the session timer (RFC 4028), nil without one.
	timer atomic.Pointer[sessionTimer]

	// referIDs maps a relayed REFER's CSeq on one side to the other's.
	referMu  sync.Mutex
	referIDs map[referKey]uint32

	// caller is the caller's INVITE; answerCaller sends its 2xx unless
	// the call ended before.
	caller *sipgo.DialogServerSession
	okMu   sync.Mutex
	okSent bool // the caller has its 2xx
	ended  bool
	// answerDone is closed once the caller's 2xx has been sent and
	// acknowledged (or timed out), or the call ended without one.
	answerDone chan struct{}
	answerOnce sync.Once
	// holding is closed when the caller's 2xx waits for the PRACK of a
	// reliable provisional: then there is no answer to wait for.
	holding     chan struct{}
	holdingOnce sync.Once

	once     sync.Once
	answered time.Time
	forget   func()
}

// answerCaller sends the caller its 2xx, unless the call ended
// meanwhile (then hangup answered its INVITE with an error).
func (c *call) answerCaller(ok *sip.Response) error {
	defer c.answerFinished()
	c.okMu.Lock()
	if c.ended {
		c.okMu.Unlock()
		return errors.New("the call ended before its answer")
	}
	c.okSent = true
	c.okMu.Unlock()
	return c.caller.WriteResponse(ok) // returns at the ACK
}

func (c *call) answerFinished() { c.answerOnce.Do(func() { close(c.answerDone) }) }

func (c *call) holdForPrack() { c.holdingOnce.Do(func() { close(c.holding) }) }

// awaitAnswer waits, at most d, until the caller has its 2xx and has
// acknowledged it: a callee that hangs up right after its own ACK must
// not beat the answer to the caller, who would get an error for a call
// that was answered (and may not get a BYE before its ACK, RFC 3261
// section 15). A 2xx held for a PRACK is not waited for.
func (c *call) awaitAnswer(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.answerDone:
	case <-c.holding:
	case <-t.C:
	}
}

// CallInfo describes a call in progress.
type CallInfo struct {
	// From and To are the caller's and the callee's URIs as dialled.
	From, To string
	// ToClient: the PBX called a subscriber (else a client called out).
	ToClient bool
	// CallerAgent and CalleeAgent are their User-Agent (or Server).
	CallerAgent, CalleeAgent string
	CallID                   string
	Started                  time.Time
	Answered                 time.Time
	// Codecs, SRTP and Stats are per media leg: caller, callee.
	Codecs [2]string
	SRTP   [2]bool
	Stats  [2]relay.Stats
}

// ackWaiter waits for the ACK of one INVITE transaction.
type ackWaiter struct {
	from *leg
	cseq uint32
	ch   chan *sip.Request
}

// expectAck returns where the ACK from leg from to the INVITE with CSeq
// cseq will arrive; an ACK of another transaction (a retransmission of
// an earlier one) does not.
func (c *call) expectAck(from *leg, cseq uint32) chan *sip.Request {
	w := &ackWaiter{from: from, cseq: cseq, ch: make(chan *sip.Request, 1)}
	c.acks.Store(w)
	return w.ch
}

// ack hands an ACK from leg from to the waiter that expects it.
func (c *call) ack(from *leg, req *sip.Request) {
	w := c.acks.Load()
	if w == nil || w.from != from || req.CSeq().SeqNo != w.cseq || !c.acks.CompareAndSwap(w, nil) {
		return
	}
	w.ch <- req
}

// other is the leg a request from l goes on to.
func (c *call) other(l *leg) *leg { return c.legs[l.side.Other()] }

// hangup ends both legs once, with BYE where the dialog still stands,
// and records the call's end; by is the leg whose BYE ended it (nil
// when psigate ends it).
func (c *call) hangup(log logger, by *leg, reason string) {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.okMu.Lock()
		c.ended = true
		okSent := c.okSent
		c.okMu.Unlock()
		defer c.answerFinished()
		var wg sync.WaitGroup
		for _, l := range c.legs {
			if l == by {
				continue
			}
			if l.uas != nil && !okSent {
				// No 2xx yet: no BYE in an early dialog (RFC 3261
				// section 15); the INVITE gets a final error instead.
				res := sip.NewResponseFromRequest(c.caller.InviteRequest, 500, "Call Ended Before Answer", nil)
				res.AppendHeader(sip.NewHeader("Reason", `SIP;cause=500;text="`+reason+`"`))
				_ = c.caller.WriteResponse(res)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := l.bye(ctx, byeReason(reason)); err != nil {
					log.Warn("BYE failed", "call-id", l.callID, "err", err)
				}
			}()
		}
		wg.Wait()
		for _, l := range c.legs {
			l.close()
		}
		if t := c.timer.Load(); t != nil {
			t.stop()
		}
		if okSent {
			c.record(Answered, 200, reason)
		} else {
			c.record(Failed, 500, reason)
		}
		c.media.Close()
		c.cancel()
		c.forget()
	})
}

// byeReason is a Reason header (RFC 3326) for a BYE psigate sends on its
// own account.
func byeReason(reason string) string {
	switch reason {
	case ReasonMediaTimeout:
		return `SIP;cause=408;text="media timeout"`
	case ReasonSession:
		return `SIP;cause=408;text="session timer expired"`
	case ReasonShutdown:
		return `SIP;cause=503;text="service stopped"`
	}
	return ""
}

// record hands the call's detail record to the log.
func (c *call) record(res Result, code int, reason string) {
	if c.onEnd == nil {
		return
	}
	r := Record{From: c.info.From, To: c.info.To, ToClient: c.info.ToClient, CallerAgent: c.info.CallerAgent,
		CalleeAgent: c.info.CalleeAgent, CallID: c.info.CallID, Started: c.info.Started, Answered: c.answered,
		Ended: time.Now(), Result: res, Code: code, Reason: reason}
	if c.media != nil {
		r.withStats(c.media.Codecs(), c.media.Stats())
	}
	c.onEnd(r)
}

// logger is what the call needs of slog.
type logger interface {
	Warn(msg string, args ...any)
	Info(msg string, args ...any)
}
