// Package relay moves a call's RTP and RTCP between its two legs: plain
// RTP or SRTP on either side (each with its own keys), symmetric latching
// to where a peer's packets really come from, payload type remapping,
// G.711 A-law <-> u-law transcoding, RTCP bypass or termination,
// per-leg statistics and media inactivity timeouts.
//
// It knows nothing of SDP or SIP: the caller (sbc/media) negotiates and
// hands each leg its Params.
package relay

import (
	"net/netip"

	"github.com/psigate/psigate/sbc/media/sdes"
)

// Side names a leg of a bridge.
type Side int

const (
	A Side = iota // the side that made the call, e.g. a Zoom PSI client
	B             // the other side, e.g. the PBX
)

func (s Side) String() string {
	if s == A {
		return "A"
	}
	return "B"
}

// Other is the opposite side.
func (s Side) Other() Side { return 1 - s }

// RTCPMode is how a leg's RTCP is handled.
type RTCPMode int

const (
	// RTCPBypass relays RTCP between the legs (re-protected when only one
	// side uses SRTP).
	RTCPBypass RTCPMode = iota
	// RTCPTerminate consumes the peer's RTCP and sends the relay's own
	// receiver reports on this leg.
	RTCPTerminate
)

// Transcode is a payload conversion applied to packets sent on a leg.
type Transcode int

const (
	NoTranscode Transcode = iota
	ALawToULaw            // PCMA from the other leg becomes PCMU on this one
	ULawToALaw            // PCMU from the other leg becomes PCMA on this one
)

// DropPT in a PTMap drops packets of that payload type.
const DropPT = 0xff

// Params describe one leg: where its peer is, how packets to and from it
// are protected, and what the packets sent on it must look like.
type Params struct {
	// Remote is the peer's RTP address from its SDP; the zero value when
	// it gave none (c=0.0.0.0). Latching may replace it.
	Remote netip.AddrPort
	// RemoteRTCP is the peer's RTCP address (a=rtcp or RTP port + 1).
	RemoteRTCP netip.AddrPort
	// RTCPMux: the peer sends and expects RTCP on the RTP port (RFC 5761).
	RTCPMux bool
	// Recv is the peer's key: packets from it are SRTP and must
	// authenticate under it. nil = plain RTP.
	Recv *sdes.Crypto
	// Send is the relay's key towards the peer: packets to it are
	// protected with it. nil = plain RTP.
	Send *sdes.Crypto
	// PTMap rewrites the payload type of packets sent on this leg
	// (index: the type as received on the other leg); nil = unchanged.
	PTMap *[128]uint8
	// Transcode converts G.711 payloads sent on this leg.
	Transcode Transcode
	// ClockRate of the peer's media, for jitter; e.g. 8000.
	ClockRate uint32
	// Send and receive directions (RFC 3264 section 6.1): SendTo false
	// when the peer does not want media (sendonly, inactive); Receive
	// false when the peer is not going to send (recvonly, inactive), which
	// also stops the inactivity timers.
	SendTo, Receive bool
	// RTCP is bypass or terminate.
	RTCP RTCPMode
}

// sameKey reports whether two optional keys are the same, so that an
// update keeps the SRTP state (rollover counter, replay window) of a
// stream whose key did not change.
func sameKey(a, b *sdes.Crypto) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Suite == b.Suite && string(a.Key) == string(b.Key) && string(a.Salt) == string(b.Salt) && a.MKI == b.MKI && a.MKILen == b.MKILen
}
