package relay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/psigate/psigate/sbc/media/g711"
)

// EventKind is what a bridge reports to its owner.
type EventKind int

const (
	// InitialTimeout: a leg expecting media got none at all in time.
	InitialTimeout EventKind = iota + 1
	// SteadyTimeout: a leg's media stopped for longer than allowed.
	SteadyTimeout
)

func (k EventKind) String() string {
	switch k {
	case InitialTimeout:
		return "no media"
	case SteadyTimeout:
		return "media stopped"
	}
	return "unknown"
}

// Event is reported through the bridge's callback.
type Event struct {
	Kind EventKind
	Side Side
	// Idle is how long the leg had been without media.
	Idle time.Duration
}

// Bridge relays one call's media between legs A and B.
type Bridge struct {
	engine  *Engine
	legs    [2]*leg
	onEvent func(Event)
	wg      sync.WaitGroup
	closed  atomic.Bool
	fired   atomic.Bool // a timeout was reported
	started time.Time
	nextRR  time.Time // next receiver reports (monitor goroutine only)

	injectMu sync.Mutex
	inject   *buffers // Inject's, made on first use
}

// maxPacket is the largest datagram handled; larger ones are dropped.
const maxPacket = 1500

// Update sets a leg's parameters (after an offer/answer), keeping SRTP
// state when keys did not change and latching when the peer's SDP
// address did not change. It may be called at any time, also while
// packets flow; the first call on both legs starts nothing by itself:
// packets are relayed as soon as Start has run.
func (br *Bridge) Update(side Side, p Params) error {
	l := br.legs[side]
	prev := l.state.Load()
	st, err := newState(p, prev, br.engine.now())
	if err != nil {
		return err
	}
	l.retarget(p, prev)
	l.state.Store(st)
	if p.Receive && (prev == nil || !prev.p.Receive) {
		br.fired.Store(false)
	}
	return nil
}

// Rearm restarts the inactivity timeouts from now, as if media had just
// been negotiated: a call answered after early media gets its own
// timeouts (each bridge reports one timeout only).
func (br *Bridge) Rearm() {
	now := br.engine.now()
	for _, l := range br.legs {
		if st := l.state.Load(); st != nil {
			ns := *st
			ns.since = now
			l.state.Store(&ns)
		}
	}
	br.fired.Store(false)
}

// Inject sends a plain RTP packet on leg side as if the other leg had
// relayed it: its payload type mapped, transcoded and protected as the
// leg needs. It is for media psigate makes itself (a busy tone) while the
// other leg relays nothing; the two must not overlap.
func (br *Bridge) Inject(side Side, pkt []byte) error {
	if len(pkt) > maxPacket {
		return fmt.Errorf("relay: packet of %d bytes", len(pkt))
	}
	br.injectMu.Lock()
	defer br.injectMu.Unlock()
	if br.inject == nil {
		br.inject = newBuffers()
	}
	b := br.inject
	p := b.in[:copy(b.in, pkt)] // forwarding rewrites it in place
	if _, err := b.hdr.Unmarshal(p); err != nil {
		return fmt.Errorf("relay: injected packet: %w", err)
	}
	br.forwardRTP(br.legs[side], p, b)
	return nil
}

// Start runs the packet loops: one goroutine per socket, each reading
// its socket and writing to the other leg's.
func (br *Bridge) Start() {
	for _, s := range []Side{A, B} {
		l, peer := br.legs[s], br.legs[s.Other()]
		br.wg.Add(2)
		go func() { defer br.wg.Done(); br.rtpLoop(l, peer) }()
		go func() { defer br.wg.Done(); br.rtcpLoop(l, peer, l.ports.RTCP) }()
	}
}

// Close stops the loops and returns the ports (after their drain
// period). Closing twice is harmless.
func (br *Bridge) Close() {
	if br.closed.Swap(true) {
		return
	}
	for _, l := range br.legs {
		l.ports.Release()
	}
	br.wg.Wait()
	br.engine.forget(br)
}

// Stats returns both legs' statistics.
func (br *Bridge) Stats() [2]Stats {
	return [2]Stats{br.legs[A].snapshot(), br.legs[B].snapshot()}
}

// LocalAddr is the relay's RTP address on a leg (the bound address; the
// caller advertises its own).
func (br *Bridge) LocalAddr(side Side) netip.AddrPort {
	p := br.legs[side].ports
	return netip.AddrPortFrom(p.Addr, uint16(p.Port))
}

// isRTCP tells RTCP from RTP on a multiplexed port (RFC 5761 section 4):
// RTCP packet types 192-223 fall where RTP would have payload types
// 64-95.
func isRTCP(b []byte) bool {
	return len(b) >= 2 && b[1] >= 192 && b[1] <= 223
}

// buffers of one read loop; reused for every packet.
type buffers struct {
	in, plain, out []byte
	hdr            rtp.Header
}

func newBuffers() *buffers {
	return &buffers{in: make([]byte, maxPacket), plain: make([]byte, maxPacket), out: make([]byte, maxPacket+64)}
}

func (br *Bridge) rtpLoop(l, peer *leg) {
	b := newBuffers()
	for {
		n, src, err := l.ports.RTP.ReadFromUDPAddrPort(b.in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		pkt := b.in[:n]
		if isRTCP(pkt) {
			br.relayRTCP(l, peer, pkt, src, b)
			continue
		}
		br.relayRTP(l, peer, pkt, src, b)
	}
}

func (br *Bridge) relayRTP(l, peer *leg, pkt []byte, src netip.AddrPort, b *buffers) {
	st := l.state.Load()
	if st == nil {
		return
	}
	now := time.Now()
	if st.in != nil {
		plain, err := st.in.DecryptRTP(b.plain[:0], pkt, &b.hdr)
		if err != nil {
			l.stats.authFailures.Add(1)
			return
		}
		pkt = plain
	} else if _, err := b.hdr.Unmarshal(pkt); err != nil || b.hdr.Version != 2 {
		l.stats.malformed.Add(1)
		return
	}
	if l.unlatch.Swap(false) {
		l.latched.Store(false)
	}
	if !l.accept(src, b.hdr.SSRC, st.in != nil, now) {
		l.stats.rejected.Add(1)
		return
	}
	l.stats.packetsIn.Add(1)
	l.stats.bytesIn.Add(uint64(len(pkt)))
	l.stats.lastPacket.Store(now.UnixNano())
	l.rx.update(b.hdr.SSRC, b.hdr.SequenceNumber, b.hdr.Timestamp, now, st.p.ClockRate, &l.stats)
	br.forwardRTP(peer, pkt, b)
}

// forwardRTP sends a plain RTP packet (in a buffer the loop owns) on the
// peer leg, rewritten and protected as that leg needs.
func (br *Bridge) forwardRTP(peer *leg, pkt []byte, b *buffers) {
	ps := peer.state.Load()
	dst := peer.dest.Load()
	if ps == nil || !ps.p.SendTo || dst == nil || !dst.IsValid() {
		return
	}
	pt := pkt[1] & 0x7f
	if ps.p.PTMap != nil {
		np := ps.p.PTMap[pt]
		if np == DropPT {
			return
		}
		pkt[1] = pkt[1]&0x80 | np
	}
	if ps.p.Transcode != NoTranscode {
		transcode(ps.p.Transcode, pt, pkt, &b.hdr)
	}
	out := pkt
	if ps.out != nil {
		sealed, err := ps.out.EncryptRTP(b.out[:0], pkt, &b.hdr)
		if err != nil {
			return
		}
		out = sealed
	}
	if _, err := peer.ports.RTP.WriteToUDPAddrPort(out, *dst); err == nil {
		peer.stats.packetsOut.Add(1)
		peer.stats.bytesOut.Add(uint64(len(out)))
	}
}

// transcode converts the G.711 payload of pkt in place when its original
// payload type (pt, before remapping) is the flavour being converted.
func transcode(t Transcode, pt uint8, pkt []byte, hdr *rtp.Header) {
	payload := pkt[hdr.MarshalSize():]
	if hdr.Padding && len(payload) > 0 {
		payload = payload[:len(payload)-int(payload[len(payload)-1])]
	}
	switch {
	case t == ALawToULaw && pt == 8:
		g711.ALawToULaw(payload)
	case t == ULawToALaw && pt == 0:
		g711.ULawToALaw(payload)
	}
}

func (br *Bridge) rtcpLoop(l, peer *leg, conn *net.UDPConn) {
	b := newBuffers()
	for {
		n, src, err := conn.ReadFromUDPAddrPort(b.in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		br.relayRTCP(l, peer, b.in[:n], src, b)
	}
}

func (br *Bridge) relayRTCP(l, peer *leg, pkt []byte, src netip.AddrPort, b *buffers) {
	st := l.state.Load()
	if st == nil {
		return
	}
	if st.inRTCP != nil {
		plain, err := st.inRTCP.DecryptRTCP(b.plain[:0], pkt, nil)
		if err != nil {
			l.stats.authFailures.Add(1)
			return
		}
		pkt = plain
	}
	if !l.acceptRTCP(src, st.inRTCP != nil) {
		l.stats.rejected.Add(1)
		return
	}
	l.stats.rtcpIn.Add(1)
	if st.p.RTCP == RTCPTerminate {
		return
	}
	ps := peer.state.Load()
	if ps == nil || ps.p.RTCP == RTCPTerminate {
		return
	}
	br.sendRTCP(peer, ps, pkt, b.out)
}

// sendRTCP protects (if the leg uses SRTP) and sends a compound RTCP
// packet to the leg's peer.
func (br *Bridge) sendRTCP(l *leg, st *state, pkt, buf []byte) {
	dst := l.destRTCP.Load()
	if dst == nil || !dst.IsValid() {
		return
	}
	out := pkt
	if st.outRTCP != nil {
		st.outMu.Lock()
		sealed, err := st.outRTCP.EncryptRTCP(buf[:0], pkt, nil)
		st.outMu.Unlock()
		if err != nil {
			return
		}
		out = sealed
	}
	conn := l.ports.RTCP
	if st.p.RTCPMux {
		conn = l.ports.RTP
	}
	if _, err := conn.WriteToUDPAddrPort(out, *dst); err == nil {
		l.stats.rtcpOut.Add(1)
	}
}

// reportSSRC is the relay's own SSRC in receiver reports of terminated
// RTCP: fixed per leg port, so a peer sees one reporter per stream.
func reportSSRC(l *leg) uint32 {
	return 0x5053_0000 | uint32(l.ports.Port)
}

// sendReports sends a receiver report (RFC 3550 section 6.4.2) on every
// leg whose RTCP is terminated.
func (br *Bridge) sendReports() {
	for _, s := range []Side{A, B} {
		l := br.legs[s]
		st := l.state.Load()
		if st == nil || st.p.RTCP != RTCPTerminate || !l.stats.rxStarted.Load() {
			continue
		}
		lost := max(l.stats.lost.Load(), 0)
		rr := &rtcp.ReceiverReport{SSRC: reportSSRC(l), Reports: []rtcp.ReceptionReport{{
			SSRC:               l.stats.rxSSRC.Load(),
			TotalLost:          uint32(min(lost, 1<<23-1)),
			LastSequenceNumber: l.stats.rxExtMax.Load(),
			Jitter:             uint32(l.stats.jitter.Load() / 16),
		}}}
		pkt, err := rr.Marshal()
		if err != nil {
			continue
		}
		br.sendRTCP(l, st, pkt, make([]byte, maxPacket+64))
	}
}
