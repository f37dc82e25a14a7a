package media

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/psigate/psigate/sbc/media/relay"
	"github.com/psigate/psigate/sbc/media/sdes"
)

// Leg is one side of a call as the media engine sees it.
type Leg struct {
	// Realm names the port range the side's media uses, e.g. "access".
	Realm string
	// Advertise is the address written into SDP towards this side: the
	// realm's advertised (public) address when it sits behind NAT.
	Advertise netip.Addr
	// Profile is the side's media profile.
	Profile Profile
	// NAT: the side is behind NAT (a remote subscriber), which the
	// profile's "keep sendonly attribute on NAT" refers to.
	NAT bool
}

// ErrNoOffer is returned by Answer when no offer is waiting for it.
var ErrNoOffer = errors.New("media: answer without a pending offer")

// Session anchors one call's media: it turns each offer or answer from
// one side into the SDP for the other, and keeps the relay's bridge
// configured to match. Side A is the side that sent the first offer's
// dialog (the caller); either side may offer later (re-INVITE, UPDATE).
type Session struct {
	mu      sync.Mutex
	bridge  *relay.Bridge
	legs    [2]Leg
	origins [2]origin
	keys    [2]map[string]sdes.Crypto // psigate's key towards each side, per suite
	pending *pending
	codecs  [2]string // the agreed codec on each side, for display
	last    [2][]byte // the last SDP sent towards each side
}

// LastSent is the last SDP psigate sent towards a side (a 200 repeats the
// answer an earlier 183 carried, RFC 3261 section 13.2.1).
func (s *Session) LastSent(side relay.Side) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last[side]
}

// pending is an offer waiting for its answer.
type pending struct {
	from       relay.Side
	offer      *parsed
	srtpFrom   bool          // psigate answers the offerer with SRTP
	sent       []format      // formats offered to the answerer
	transcoded *format       // the G.711 flavour added for transcoding, if any
	te         *format       // telephone-event as offered to the answerer
	cryptos    []sdes.Crypto // offered to the answerer
}

// NewSession makes a bridge for a call between legs a and b and starts
// relaying (nothing flows until an offer and its answer are through).
// onEvent hears about media inactivity (see relay.Engine.NewBridge).
func NewSession(e *relay.Engine, a, b Leg, onEvent func(relay.Event)) (*Session, error) {
	br, err := e.NewBridge(a.Realm, b.Realm, onEvent)
	if err != nil {
		return nil, err
	}
	s := &Session{bridge: br, legs: [2]Leg{a, b}, keys: [2]map[string]sdes.Crypto{{}, {}}}
	for i := range s.origins {
		var id [8]byte
		_, _ = rand.Read(id[:])
		s.origins[i] = origin{id: binary.BigEndian.Uint64(id[:]) >> 2}
	}
	br.Start()
	return s, nil
}

// Rearm restarts the media inactivity timeouts from now (at the answer
// of a call that had early media).
func (s *Session) Rearm() { s.bridge.Rearm() }

// Close stops the relay and returns its ports.
func (s *Session) Close() { s.bridge.Close() }

// Stats are both legs' statistics.
func (s *Session) Stats() [2]relay.Stats { return s.bridge.Stats() }

// Codecs are the codecs agreed on each side, e.g. "G722", "G711A".
func (s *Session) Codecs() [2]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.codecs
}

// Bridge is the relay bridge, for tests and diagnostics.
func (s *Session) Bridge() *relay.Bridge { return s.bridge }

// Reject drops a pending offer that the other side refused.
func (s *Session) Reject() {
	s.mu.Lock()
	s.pending = nil
	s.mu.Unlock()
}

// key is psigate's key towards a side for a suite, kept across re-offers
// so the peer's SRTP state (rollover counter) stays valid.
func (s *Session) key(side relay.Side, suite string, tag int) (sdes.Crypto, error) {
	k, ok := s.keys[side][suite]
	if !ok {
		var err error
		if k, err = sdes.New(tag, suite); err != nil {
			return sdes.Crypto{}, err
		}
		s.keys[side][suite] = k
	}
	k.Tag = tag
	return k, nil
}

// Offer takes an offer from side from and returns the offer to send to
// the other side. An error wrapping ErrNotAcceptable means the offer must
// be refused (488) and nothing changed.
func (s *Session) Offer(from relay.Side, raw []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	to := from.Other()
	p, err := parse(raw)
	if err != nil {
		return nil, err
	}
	pf, pt := s.legs[from].Profile, s.legs[to].Profile
	srtpFrom, err := wantsSRTP(p.audio, pf)
	if err != nil {
		return nil, err
	}
	formats, transcoded := selectCodecs(p.audio.formats, pf, pt)
	if len(formats) == 0 {
		return nil, ErrNoCommonCodec
	}
	pend := &pending{from: from, offer: p, srtpFrom: srtpFrom, sent: formats, transcoded: transcoded}
	pend.te = telephoneEvent(p.audio.te, formats, pt)
	o := out{proto: "RTP/AVP", port: int(s.bridge.LocalAddr(to).Port()), dir: s.towards(to, p.audio.dir), formats: formats, te: pend.te, ptime: ptime(p.audio.ptime, formats, pt)}
	if pt.Protocol != ProtocolRTP && pt.SDES.Enabled {
		if pt.Protocol == ProtocolSRTP {
			o.proto = "RTP/SAVP"
		}
		for i, suite := range pt.SDES.Suites {
			k, err := s.key(to, suite, i+1)
			if err != nil {
				return nil, err
			}
			o.cryptos = append(o.cryptos, k)
		}
		pend.cryptos = o.cryptos
	}
	s.pending = pend
	s.last[to] = writeSDP(&s.origins[to], s.legs[to].Advertise, o, 0, nil)
	return s.last[to], nil
}

// towards adjusts a direction written to side: with "keep sendonly
// attribute on NAT" off, a side behind NAT is told sendrecv instead of
// sendonly, so its client plays the music on hold it receives (seed
// 9.4.2).
func (s *Session) towards(side relay.Side, d direction) direction {
	l := s.legs[side]
	if d == sendonly && l.NAT && !l.Profile.KeepSendonlyOnNAT {
		return sendrecv
	}
	return d
}

// telephoneEvent is the RFC 4733 format offered to a side: the offer's,
// with the side profile's payload type unless a codec already uses it.
func telephoneEvent(te *format, formats []format, p Profile) *format {
	if te == nil || te.rate != 8000 {
		return nil
	}
	out := *te
	want := uint8(p.TelephoneEventPayloadType)
	if want != 0 && !slices.ContainsFunc(formats, func(f format) bool { return f.pt == want }) {
		out.pt = want
	}
	return &out
}

// ptime is the offer's packetization, or the profile's for the first
// codec when it enforces one.
func ptime(offered int, formats []format, p Profile) int {
	if p.EnforcePacketization && len(formats) > 0 {
		if c := p.codec(formats[0].codec); c != nil && c.PacketizationMs > 0 {
			return c.PacketizationMs
		}
	}
	return offered
}

// Answer takes the answer from side from to the pending offer of the
// other side, configures the relay, and returns the answer to send to the
// offerer.
func (s *Session) Answer(from relay.Side, raw []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pend := s.pending
	if pend == nil || pend.from != from.Other() {
		return nil, ErrNoOffer
	}
	p, err := parse(raw)
	if errors.Is(err, ErrNoAudio) {
		s.pending = nil
		return s.rejectAll(pend), nil
	}
	if err != nil {
		return nil, err
	}
	a, err := s.agree(pend, p.audio)
	if err != nil {
		return nil, err
	}
	if err := s.apply(pend, p.audio, a); err != nil {
		return nil, err
	}
	s.pending = nil
	offerer := pend.from
	s.last[offerer] = writeSDP(&s.origins[offerer], s.legs[offerer].Advertise, a.toOfferer, pend.offer.audio.index, pend.offer.desc)
	return s.last[offerer], nil
}

// rejectAll answers the offerer with every stream refused: the other side
// took no audio.
func (s *Session) rejectAll(pend *pending) []byte {
	offerer := pend.from
	o := out{proto: pend.offer.audio.proto, port: 0, dir: inactive, formats: pend.offer.audio.formats}
	return writeSDP(&s.origins[offerer], s.legs[offerer].Advertise, o, pend.offer.audio.index, pend.offer.desc)
}

// agreement is what an answer settles.
type agreement struct {
	toOfferer      out
	answerer       []format // the answerer's formats, its payload types
	offerer        []format // the same codecs with the offerer's payload types
	recvAnswerer   *sdes.Crypto
	sendAnswerer   *sdes.Crypto
	recvOfferer    *sdes.Crypto
	sendOfferer    *sdes.Crypto
	teAnswerer     *format
	teOfferer      *format
	transcodeToAns relay.Transcode
	transcodeToOff relay.Transcode
}

func (s *Session) agree(pend *pending, ans stream) (*agreement, error) {
	a := &agreement{}
	offer := pend.offer.audio
	for _, f := range ans.formats {
		i := slices.IndexFunc(pend.sent, func(g format) bool { return g.pt == f.pt })
		if i < 0 {
			continue
		}
		sent := pend.sent[i]
		mine := sent
		if pend.transcoded != nil && sent.pt == pend.transcoded.pt {
			j := slices.IndexFunc(offer.formats, func(g format) bool { return g.codec == "G711A" || g.codec == "G711U" })
			mine = offer.formats[j]
			a.transcodeToAns, a.transcodeToOff = transcodeFor(mine, sent), transcodeFor(sent, mine)
		}
		if slices.ContainsFunc(a.offerer, func(g format) bool { return g.pt == mine.pt }) {
			continue
		}
		a.answerer = append(a.answerer, sent)
		a.offerer = append(a.offerer, mine)
	}
	if len(a.answerer) == 0 {
		return nil, ErrNoCommonCodec
	}
	if ans.te != nil && pend.te != nil && ans.te.pt == pend.te.pt {
		a.teAnswerer, a.teOfferer = pend.te, offer.te
	}
	if err := a.keys(s, pend, ans); err != nil {
		return nil, err
	}
	offerer := pend.from
	dir := direction{sends: ans.dir.sends && offer.dir.recvs, recvs: ans.dir.recvs && offer.dir.sends}
	a.toOfferer = out{
		proto: offer.proto, port: int(s.bridge.LocalAddr(offerer).Port()), dir: s.towards(offerer, dir),
		formats: a.offerer, te: a.teOfferer, ptime: offer.ptime, rtcpMux: offer.rtcpMux,
	}
	if a.sendOfferer != nil {
		a.toOfferer.cryptos = []sdes.Crypto{*a.sendOfferer}
	}
	return a, nil
}

// keys settles SRTP on both legs: the answerer's key must answer one of
// the crypto lines psigate offered (same tag and suite).
func (a *agreement) keys(s *Session, pend *pending, ans stream) error {
	answerer := pend.from.Other()
	if len(pend.cryptos) > 0 {
		for _, c := range ans.cryptos {
			i := slices.IndexFunc(pend.cryptos, func(o sdes.Crypto) bool { return o.Tag == c.Tag && o.Suite == c.Suite })
			if i >= 0 {
				recv, send := c, pend.cryptos[i]
				a.recvAnswerer, a.sendAnswerer = &recv, &send
				break
			}
		}
		if a.recvAnswerer == nil && s.legs[answerer].Profile.Protocol == ProtocolSRTP {
			return ErrNoCrypto
		}
	}
	if pend.srtpFrom {
		chosen, _ := chooseCrypto(pend.offer.audio.cryptos, s.legs[pend.from].Profile)
		mine, err := s.key(pend.from, chosen.Suite, chosen.Tag)
		if err != nil {
			return err
		}
		a.recvOfferer, a.sendOfferer = &chosen, &mine
	}
	return nil
}

func transcodeFor(from, to format) relay.Transcode {
	switch {
	case from.codec == "G711A" && to.codec == "G711U":
		return relay.ALawToULaw
	case from.codec == "G711U" && to.codec == "G711A":
		return relay.ULawToALaw
	}
	return relay.NoTranscode
}

// apply hands both legs their relay parameters.
func (s *Session) apply(pend *pending, ans stream, a *agreement) error {
	offerer, answerer := pend.from, pend.from.Other()
	offer := pend.offer.audio
	toOff := ptMap(a.answerer, a.offerer, a.teAnswerer, a.teOfferer)
	toAns := ptMap(a.offerer, a.answerer, a.teOfferer, a.teAnswerer)
	po := relay.Params{
		Remote: addrPort(offer.addr, offer.port), RemoteRTCP: offer.rtcp, RTCPMux: offer.rtcpMux,
		Recv: a.recvOfferer, Send: a.sendOfferer, PTMap: toOff, Transcode: a.transcodeToOff,
		ClockRate: clockRate(a.offerer[0]), SendTo: offer.dir.recvs, Receive: offer.dir.sends && ans.dir.recvs,
		RTCP: rtcpMode(s.legs[offerer].Profile),
	}
	pa := relay.Params{
		Remote: addrPort(ans.addr, ans.port), RemoteRTCP: ans.rtcp, // psigate never offers rtcp-mux; inbound mux is demultiplexed anyway
		Recv: a.recvAnswerer, Send: a.sendAnswerer, PTMap: toAns, Transcode: a.transcodeToAns,
		ClockRate: clockRate(a.answerer[0]), SendTo: ans.dir.recvs, Receive: ans.dir.sends && offer.dir.recvs,
		RTCP: rtcpMode(s.legs[answerer].Profile),
	}
	if err := s.bridge.Update(offerer, po); err != nil {
		return fmt.Errorf("media: relay for side %s: %w", offerer, err)
	}
	if err := s.bridge.Update(answerer, pa); err != nil {
		return fmt.Errorf("media: relay for side %s: %w", answerer, err)
	}
	s.codecs[offerer], s.codecs[answerer] = display(a.offerer[0]), display(a.answerer[0])
	return nil
}

// ptMap maps the payload types of packets from one side (from) to what
// the other side negotiated (to); unlisted types pass unchanged.
func ptMap(from, to []format, teFrom, teTo *format) *[128]uint8 {
	var m [128]uint8
	for i := range m {
		m[i] = uint8(i)
	}
	for i := range from {
		m[from[i].pt] = to[i].pt
	}
	if teFrom != nil && teTo != nil {
		m[teFrom.pt] = teTo.pt
	}
	return &m
}

func addrPort(a netip.Addr, port int) netip.AddrPort {
	if !a.IsValid() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a, uint16(port))
}

// clockRate is the RTP clock of a format (G.722 says 8000 for 16 kHz
// audio, RFC 3551 section 4.5.2, which is what its timestamps use).
func clockRate(f format) uint32 {
	if f.rate == 0 {
		return 8000
	}
	return f.rate
}

func rtcpMode(p Profile) relay.RTCPMode {
	if p.RTCPMode == RTCPTerminate {
		return relay.RTCPTerminate
	}
	return relay.RTCPBypass
}

func display(f format) string {
	if f.codec != "" {
		return f.codec
	}
	return f.encoding
}
