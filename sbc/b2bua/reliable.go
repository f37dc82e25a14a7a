package b2bua

import (
	"context"
	"crypto/rand"
	"encoding/binary"
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
// is. The PRACKs end at psigate: the PBX's leg has its own (pracker).

// reliable is a caller's early dialog while it takes reliable
// provisionals.
type reliable struct {
	in *sipgo.DialogServerSession

	mu         sync.Mutex
	rseq       uint32        // the last RSeq sent
	pending    chan struct{} // closed when the last one is acknowledged; nil when none waits
	pendingSDP bool          // the one waiting carries SDP: the 2xx waits for its PRACK
	acked      uint32        // the last RSeq acknowledged
}

// newReliable starts the RSeq space at random (RFC 3262 section 3).
func newReliable(in *sipgo.DialogServerSession) *reliable {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &reliable{in: in, rseq: binary.BigEndian.Uint32(b[:]) % (1 << 30)}
}

// wantsReliable: the caller supports (or requires) 100rel.
func wantsReliable(req *sip.Request) bool {
	return hasTag(req, "Supported", "100rel") || hasTag(req, "Require", "100rel")
}

// send sends res (a provisional for the caller's INVITE) reliably: it
// waits for the previous one's PRACK first (RFC 3262 section 3), and
// retransmits this one until its PRACK or ctx ends.
func (r *reliable) send(ctx context.Context, res *sip.Response) error {
	if err := r.wait(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	r.rseq++
	rseq := r.rseq
	done := make(chan struct{})
	r.pending, r.pendingSDP = done, len(res.Body()) > 0
	r.mu.Unlock()
	res.AppendHeader(sip.NewHeader("Require", "100rel"))
	res.AppendHeader(sip.NewHeader("RSeq", strconv.FormatUint(uint64(rseq), 10)))
	if err := r.in.WriteResponse(res); err != nil {
		return err
	}
	go func() {
		interval := sip.T1
		limit := time.NewTimer(64 * sip.T1)
		defer limit.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-limit.C:
				return // never acknowledged: the 2xx waits no longer (wait)
			case <-time.After(interval):
				_ = r.in.WriteResponse(res)
				interval = min(2*interval, sip.T2)
			}
		}
	}()
	return nil
}

// wait waits until the last reliable provisional is acknowledged, for at
// most 64*T1 (RFC 3262 section 3: after that the UAS gives up on it).
func (r *reliable) wait(ctx context.Context) error {
	r.mu.Lock()
	done := r.pending
	r.mu.Unlock()
	return waitDone(ctx, done)
}

// waitAnswered waits before a 2xx: for the PRACK of a reliable
// provisional that carried SDP (RFC 3262 section 3).
func (r *reliable) waitAnswered(ctx context.Context) error {
	r.mu.Lock()
	done := r.pending
	if !r.pendingSDP {
		done = nil
	}
	r.mu.Unlock()
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
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// prack takes a PRACK's RAck ("rseq cseq method"): true when it
// acknowledges the provisional waiting for it (or one acknowledged
// already, a retransmission).
func (r *reliable) prack(rack string, inviteCSeq uint32) bool {
	f := strings.Fields(rack)
	if len(f) != 3 || !strings.EqualFold(f[2], "INVITE") {
		return false
	}
	rseq, err1 := strconv.ParseUint(f[0], 10, 32)
	cseq, err2 := strconv.ParseUint(f[1], 10, 32)
	if err1 != nil || err2 != nil || uint32(cseq) != inviteCSeq {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case uint32(rseq) == r.rseq && r.pending != nil:
		close(r.pending)
		r.pending, r.acked = nil, uint32(rseq)
		return true
	case uint32(rseq) <= r.acked:
		return true
	}
	return false
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
	if r == nil || rack == nil || !r.prack(rack.Value(), r.in.InviteRequest.CSeq().SeqNo) {
		signal.Respond(b.log, tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
}
