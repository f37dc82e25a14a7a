package b2bua

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/psigate/psigate/sbc/signal"
)

// Reliable provisional responses towards the caller (RFC 3262): when the
// caller supports 100rel, psigate sends the provisionals it relays
// reliably (Require: 100rel, RSeq), retransmits each until its PRACK (T1
// doubling up to T2), sends the next only once the previous is
// acknowledged, and holds the 2xx until a provisional that carried SDP
// is (a 5xx when it never is). The PRACKs end at psigate: the PBX's leg
// has its own (pracker).

// reliable is a caller's early dialog while it takes reliable
// provisionals. A worker sends them one at a time, off the goroutine
// reading the callee's responses, so that a caller slow to PRACK never
// holds up the callee's answer.
type reliable struct {
	in    *sipgo.DialogServerSession
	ctx   context.Context
	queue chan *sip.Response
	stop  chan struct{} // closed by waitAnswered: the rest of the queue is moot
	done  chan struct{} // closed when the worker has returned
	final chan struct{} // closed when the 2xx may go: retransmissions end

	mu         sync.Mutex
	rseq       uint32        // the last RSeq sent
	pending    chan struct{} // closed when the last one is acknowledged; nil when none waits
	pendingSDP bool          // the one waiting carries SDP: the 2xx waits for its PRACK
	acked      uint32        // the last RSeq acknowledged
}

// newReliable starts the RSeq space at random (RFC 3262 section 3) and
// the worker, which ends with ctx or waitAnswered.
func newReliable(ctx context.Context, in *sipgo.DialogServerSession) *reliable {
	var b [4]byte
	_, _ = rand.Read(b[:])
	r := &reliable{in: in, ctx: ctx, queue: make(chan *sip.Response, 16), stop: make(chan struct{}), done: make(chan struct{}), final: make(chan struct{}),
		rseq: binary.BigEndian.Uint32(b[:]) % (1 << 30)}
	go r.work()
	return r
}

// wantsReliable: the caller supports (or requires) 100rel.
func wantsReliable(req *sip.Request) bool {
	return hasTag(req, "Supported", "100rel") || hasTag(req, "Require", "100rel")
}

// enqueue queues a provisional for the caller; when too many wait, the
// oldest waiting ones are the ones that lose (the caller gets the news
// late, never wrong).
func (r *reliable) enqueue(res *sip.Response) {
	select {
	case r.queue <- res:
	default:
	}
}

func (r *reliable) work() {
	defer close(r.done)
	for {
		select {
		case <-r.stop:
			return
		case <-r.ctx.Done():
			return
		case res := <-r.queue:
			if r.wait(r.ctx) != nil {
				return
			}
			select {
			case <-r.stop:
				return
			default:
			}
			r.send(res)
		}
	}
}

// send sends res reliably and retransmits it until its PRACK, the
// caller's end, the 2xx, or 64*T1.
func (r *reliable) send(res *sip.Response) {
	r.mu.Lock()
	r.rseq++
	rseq := r.rseq
	acked := make(chan struct{})
	r.pending, r.pendingSDP = acked, len(res.Body()) > 0
	r.mu.Unlock()
	res.AppendHeader(sip.NewHeader("Require", "100rel"))
	res.AppendHeader(sip.NewHeader("RSeq", strconv.FormatUint(uint64(rseq), 10)))
	if err := r.in.WriteResponse(res); err != nil {
		return
	}
	go func() {
		interval := sip.T1
		limit := time.NewTimer(64 * sip.T1)
		defer limit.Stop()
		for {
			select {
			case <-acked:
				return
			case <-r.final:
				return
			case <-r.ctx.Done():
				return
			case <-limit.C:
				return
			case <-time.After(interval):
				_ = r.in.WriteResponse(res)
				interval = min(2*interval, sip.T2)
			}
		}
	}()
}

// wait waits until the last reliable provisional is acknowledged, for at
// most 64*T1 (RFC 3262 section 3: after that the UAS gives up on it).
func (r *reliable) wait(ctx context.Context) error {
	r.mu.Lock()
	done := r.pending
	r.mu.Unlock()
	return waitDone(ctx, done)
}

// errNoPrack: a reliable provisional with SDP was never acknowledged.
var errNoPrack = errors.New("no PRACK for a reliable provisional with SDP")

// waitAnswered comes before the 2xx: it stops the worker (provisionals
// still queued are moot now) and waits for the PRACK of a reliable
// provisional that carried SDP (RFC 3262 section 3).
func (r *reliable) waitAnswered(ctx context.Context) error {
	close(r.stop)
	<-r.done
	r.mu.Lock()
	done := r.pending
	if !r.pendingSDP {
		done = nil
	}
	r.mu.Unlock()
	defer close(r.final)
	return waitDone(ctx, done)
}

func waitDone(ctx context.Context, done chan struct{}) error {
	if done == nil {
		return nil
	}
	t := time.NewTimer(64 * sip.T1)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return errNoPrack
	case <-ctx.Done():
		return ctx.Err()
	}
}

// prack takes a PRACK's RAck ("rseq cseq method"): true when it
// acknowledges the provisional waiting for it (or one acknowledged
// already, a retransmission). release lets a 2xx held for that
// provisional go: call it after the PRACK's 200 is sent, so that the
// caller sees the 200 to its PRACK before the 2xx to its INVITE.
func (r *reliable) prack(rack string, inviteCSeq uint32) (ok bool, release func()) {
	none := func() {}
	f := strings.Fields(rack)
	if len(f) != 3 || !strings.EqualFold(f[2], "INVITE") {
		return false, none
	}
	rseq, err1 := strconv.ParseUint(f[0], 10, 32)
	cseq, err2 := strconv.ParseUint(f[1], 10, 32)
	if err1 != nil || err2 != nil || uint32(cseq) != inviteCSeq {
		return false, none
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case uint32(rseq) == r.rseq && r.pending != nil:
		pending := r.pending
		r.pending, r.acked = nil, uint32(rseq)
		return true, func() { close(pending) }
	case uint32(rseq) <= r.acked:
		return true, none
	}
	return false, none
}

// handlePrack answers a PRACK in a caller's early (or just confirmed)
// dialog: 200 when it acknowledges one of psigate's reliable
// provisionals, else 481 (RFC 3262 section 3).
func (b *B2BUA) handlePrack(req *sip.Request, tx sip.ServerTransaction) {
	id, err := sip.DialogIDFromRequestUAS(req)
	var r *reliable
	if err == nil {
		b.mu.Lock()
		r = b.early[id]
		b.mu.Unlock()
	}
	rack := req.GetHeader("RAck")
	if r == nil || rack == nil {
		signal.Respond(b.log, tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	ok, release := r.prack(rack.Value(), r.in.InviteRequest.CSeq().SeqNo)
	if !ok {
		signal.Respond(b.log, tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	release()
}
