package relay

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/srtp/v3"
)

// state is a leg's Params with their SRTP contexts. It is replaced whole
// by Update and read without locks by the packet loops.
type state struct {
	p Params
	// in and inRTCP decrypt what the peer sends; used only by this leg's
	// own read loops.
	in, inRTCP *srtp.Context
	// out protects RTP sent to the peer; used only by the other leg's RTP
	// loop. outRTCP protects RTCP sent to the peer, under outMu because
	// both the other leg's RTCP loop and the reporter use it.
	out     *srtp.Context
	outRTCP *srtp.Context
	outMu   *sync.Mutex
	// since is when this state began expecting media (for the initial
	// inactivity timeout).
	since time.Time
}

func newState(p Params, prev *state, now time.Time) (*state, error) {
	s := &state{p: p, since: now, outMu: &sync.Mutex{}}
	if prev != nil {
		s.outMu = prev.outMu
		if prev.p.Receive && p.Receive {
			s.since = prev.since
		}
	}
	var err error
	switch {
	case p.Recv == nil:
	case prev != nil && sameKey(prev.p.Recv, p.Recv):
		s.in, s.inRTCP = prev.in, prev.inRTCP
	default:
		if s.in, err = p.Recv.Context(); err != nil {
			return nil, err
		}
		if s.inRTCP, err = p.Recv.Context(); err != nil {
			return nil, err
		}
	}
	switch {
	case p.Send == nil:
	case prev != nil && sameKey(prev.p.Send, p.Send):
		s.out, s.outRTCP = prev.out, prev.outRTCP
	default:
		if s.out, err = p.Send.Context(); err != nil {
			return nil, err
		}
		if s.outRTCP, err = p.Send.Context(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// leg is one side of a bridge.
type leg struct {
	side  Side
	ports *Ports
	state atomic.Pointer[state]

	// dest and destRTCP are where packets to the peer go: the latched
	// source, or the SDP address until something latched.
	dest, destRTCP atomic.Pointer[netip.AddrPort]

	// unlatch asks the RTP read loop to latch afresh (set by retarget).
	unlatch atomic.Bool
	// Latching state of the RTP socket, written by its read loop only;
	// the RTCP loop reads latched too.
	latched     atomic.Bool
	latchedSSRC uint32
	lastLatched time.Time

	rx    rxStats // read-loop-only sequence and jitter tracking
	stats counters
}

// counters are a leg's statistics, updated by the packet loops.
type counters struct {
	packetsIn, bytesIn, packetsOut, bytesOut atomic.Uint64
	authFailures, rejected, malformed        atomic.Uint64
	rtcpIn, rtcpOut                          atomic.Uint64
	lost                                     atomic.Int64
	jitter                                   atomic.Uint64 // in 1/16 timestamp units (RFC 3550 A.8)
	lastPacket                               atomic.Int64  // unix nanoseconds
	relatches                                atomic.Uint64
	// The peer's stream as last seen, for receiver reports.
	rxSSRC, rxExtMax atomic.Uint32
	rxStarted        atomic.Bool
}

// Stats are one leg's statistics, as seen from the relay: "in" is what
// the peer sent, "out" what the relay sent to it.
type Stats struct {
	PacketsIn, BytesIn   uint64
	PacketsOut, BytesOut uint64
	RTCPIn, RTCPOut      uint64
	// AuthFailures are SRTP or SRTCP packets that did not authenticate.
	AuthFailures uint64
	// Rejected are packets from a source the leg did not latch to.
	Rejected uint64
	// Malformed are packets that are not RTP.
	Malformed uint64
	// Lost is expected minus received packets (RFC 3550 A.3); negative
	// with duplicates.
	Lost int64
	// Jitter is the interarrival jitter (RFC 3550 A.8).
	Jitter time.Duration
	// LastPacket is when the peer's last accepted packet arrived.
	LastPacket time.Time
	// Source is the peer address media is sent to (latched or from SDP).
	Source netip.AddrPort
	// Relatches counts changes of the latched source after the first.
	Relatches uint64
	// SRTP in each direction.
	SRTPIn, SRTPOut bool
	// LocalPort is the relay's RTP port on this leg.
	LocalPort int
}

func (l *leg) snapshot() Stats {
	c := &l.stats
	s := Stats{
		PacketsIn: c.packetsIn.Load(), BytesIn: c.bytesIn.Load(),
		PacketsOut: c.packetsOut.Load(), BytesOut: c.bytesOut.Load(),
		RTCPIn: c.rtcpIn.Load(), RTCPOut: c.rtcpOut.Load(),
		AuthFailures: c.authFailures.Load(), Rejected: c.rejected.Load(), Malformed: c.malformed.Load(),
		Lost: c.lost.Load(), Relatches: c.relatches.Load(), LocalPort: l.ports.Port,
	}
	st := l.state.Load()
	if st != nil {
		s.SRTPIn, s.SRTPOut = st.in != nil, st.out != nil
		if rate := st.p.ClockRate; rate > 0 {
			s.Jitter = time.Duration(float64(c.jitter.Load()) / 16 / float64(rate) * float64(time.Second))
		}
	}
	if ns := c.lastPacket.Load(); ns != 0 {
		s.LastPacket = time.Unix(0, ns)
	}
	if d := l.dest.Load(); d != nil {
		s.Source = *d
	}
	return s
}

// relatchQuiet is how long the latched source of plain RTP must have been
// silent before packets with another SSRC from another source may take
// over the stream.
const relatchQuiet = time.Second

// accept applies the latching rule to an RTP packet from src:
//   - a packet from the latched source is accepted;
//   - SRTP: a packet that authenticated under the leg's key moves the
//     latch to its source (only the peer has the key);
//   - plain RTP: the first packet latches; later, a packet from another
//     source moves the latch only if it continues the latched stream (same
//     SSRC: the peer's NAT binding changed) or the latched source has been
//     silent for relatchQuiet (the peer restarted its stream). A stranger
//     sending while the peer talks is ignored.
func (l *leg) accept(src netip.AddrPort, ssrc uint32, authenticated bool, now time.Time) bool {
	if l.latched.Load() {
		if d := l.dest.Load(); d != nil && *d == src {
			l.latchedSSRC, l.lastLatched = ssrc, now
			return true
		}
		if !authenticated && ssrc != l.latchedSSRC && now.Sub(l.lastLatched) < relatchQuiet {
			return false
		}
		l.stats.relatches.Add(1)
	}
	l.latched.Store(true)
	l.latchedSSRC, l.lastLatched = ssrc, now
	l.dest.Store(heapAddr(src))
	return true
}

// heapAddr copies an address to the heap, so that only a latch, not every
// packet, allocates.
func heapAddr(a netip.AddrPort) *netip.AddrPort {
	p := new(netip.AddrPort)
	*p = a
	return p
}

// acceptRTCP latches the RTCP destination: to an authenticated SRTCP
// source, else to a source on the latched RTP address's host.
func (l *leg) acceptRTCP(src netip.AddrPort, authenticated bool) bool {
	cur := l.destRTCP.Load()
	if cur != nil && *cur == src {
		return true
	}
	if !authenticated {
		if d := l.dest.Load(); l.latched.Load() && (d == nil || d.Addr() != src.Addr()) {
			return false
		}
	}
	l.destRTCP.Store(heapAddr(src))
	return true
}

// retarget resets latching to the SDP addresses of new params when they
// changed (a re-INVITE moved the peer).
func (l *leg) retarget(p Params, prev *state) {
	if prev != nil && prev.p.Remote == p.Remote && prev.p.RemoteRTCP == p.RemoteRTCP && prev.p.RTCPMux == p.RTCPMux {
		return
	}
	remote, rtcp := p.Remote, p.RemoteRTCP
	if p.RTCPMux {
		rtcp = remote
	}
	l.dest.Store(&remote)
	l.destRTCP.Store(&rtcp)
	// The RTP read loop owns l.latched; a changed SDP address makes the next
	// packet latch again (see unlatch).
	l.unlatch.Store(true)
}

// rxStats follows the peer's sequence numbers and timing (RFC 3550
// appendix A.1 and A.8). Only the leg's RTP read loop touches it.
type rxStats struct {
	started  bool
	ssrc     uint32
	baseSeq  uint32
	maxSeq   uint16
	cycles   uint32
	received uint32
	transit  int64
	jitter   float64
	lastTS   uint32
	// A large jump in sequence numbers is a restart of the sender's
	// sequence once the next packet follows it (RFC 3550 A.1): badSeq is
	// the number that would confirm it; carry keeps what was lost before.
	badSeq uint16
	hasBad bool
	carry  int64
}

// RFC 3550 A.1: a gap up to maxDropout is loss; one back by up to
// maxMisorder is a late packet; anything else a jump.
const (
	maxDropout  = 3000
	maxMisorder = 100
)

func (r *rxStats) update(ssrc uint32, seq uint16, ts uint32, arrival time.Time, rate uint32, c *counters) {
	if !r.started || ssrc != r.ssrc {
		*r = rxStats{started: true, ssrc: ssrc, baseSeq: uint32(seq), maxSeq: seq}
		c.lost.Store(0)
	} else {
		switch delta := seq - r.maxSeq; {
		case delta < maxDropout: // in order, perhaps after a gap
			if seq < r.maxSeq {
				r.cycles += 1 << 16
			}
			r.maxSeq, r.hasBad = seq, false
		case delta <= 1<<16-maxMisorder: // a jump
			if !r.hasBad || seq != r.badSeq {
				r.badSeq, r.hasBad = seq+1, true
				return // not counted until the next one confirms it
			}
			// Two in a row: the sender restarted its sequence.
			r.carry += r.expected() - int64(r.received)
			r.baseSeq, r.maxSeq, r.cycles, r.received, r.hasBad = uint32(seq), seq, 0, 0, false
		}
	}
	r.received++
	c.lost.Store(r.carry + r.expected() - int64(r.received))
	c.rxSSRC.Store(ssrc)
	c.rxExtMax.Store(r.cycles + uint32(r.maxSeq))
	c.rxStarted.Store(true)
	if rate == 0 {
		return
	}
	arrivalTS := arrival.UnixNano() * int64(rate) / int64(time.Second)
	transit := arrivalTS - int64(ts)
	if r.received > 1 && ts != r.lastTS {
		d := float64(transit - r.transit)
		if d < 0 {
			d = -d
		}
		r.jitter += (d - r.jitter) / 16
		c.jitter.Store(uint64(r.jitter * 16))
	}
	r.transit, r.lastTS = transit, ts
}

// expected is how many packets the sequence numbers say were sent.
func (r *rxStats) expected() int64 {
	return int64(r.cycles+uint32(r.maxSeq)) - int64(r.baseSeq) + 1
}

func (s Stats) String() string {
	return fmt.Sprintf("in %d pkts/%d B, out %d pkts/%d B, lost %d, jitter %s, auth failures %d, rejected %d",
		s.PacketsIn, s.BytesIn, s.PacketsOut, s.BytesOut, s.Lost, s.Jitter, s.AuthFailures, s.Rejected)
}
