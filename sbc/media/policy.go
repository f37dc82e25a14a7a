package media

import (
	"slices"

	"github.com/psigate/psigate/sbc/media/sdes"
)

// allows reports whether a profile lets a codec through.
func (p Profile) allows(f format) bool {
	if p.AllowUnconfiguredCodecs {
		return true
	}
	return f.codec != "" && p.codec(f.codec) != nil
}

func (p Profile) codec(name string) *Codec {
	for i := range p.Codecs {
		if p.Codecs[i].Name == name {
			return &p.Codecs[i]
		}
	}
	return nil
}

// priority ranks a codec for a profile: configured codecs by their
// priority, unconfigured ones after them.
func (p Profile) priority(f format) int {
	if c := p.codec(f.codec); c != nil {
		return c.Priority
	}
	return 1000
}

// selectCodecs is the codec policy for an offer from a side with profile
// from, to be sent to a side with profile to: codecs both profiles allow,
// in the offer's order or, with "enforce codec priority", in to's. When
// transcoding is allowed and the offer has exactly one G.711 flavour, the
// other is added last, so a peer that has only that one can still answer.
// The added format has transcoded set.
func selectCodecs(offered []format, from, to Profile) (out []format, transcoded *format) {
	for _, f := range offered {
		if from.allows(f) && to.allows(f) {
			out = append(out, f)
		}
	}
	if to.EnforceCodecPriority {
		slices.SortStableFunc(out, func(a, b format) int { return to.priority(a) - to.priority(b) })
	}
	if !from.Transcoding && !to.Transcoding {
		return out, nil
	}
	var hasA, hasU bool
	for _, f := range offered {
		hasA = hasA || f.codec == "G711A"
		hasU = hasU || f.codec == "G711U"
	}
	if hasA == hasU {
		return out, nil
	}
	other := static[0]
	if hasU {
		other = static[8]
	}
	other.codec = codecName(other)
	if !to.allows(other) || slices.ContainsFunc(out, func(f format) bool { return f.pt == other.pt }) {
		return out, nil
	}
	out = append(out, other)
	return out, &out[len(out)-1]
}

// chooseCrypto picks the first a=crypto line of an offer whose suite the
// profile allows (RFC 4568 section 7.1.2: the answerer picks one).
func chooseCrypto(offered []sdes.Crypto, p Profile) (sdes.Crypto, bool) {
	for _, c := range offered {
		if slices.Contains(p.SDES.Suites, c.Suite) {
			return c, true
		}
	}
	return sdes.Crypto{}, false
}

// wantsSRTP decides how to answer an offer on a side: SRTP or plain RTP,
// or refuse it, following the side's profile.
func wantsSRTP(s stream, p Profile) (bool, error) {
	if s.proto != "RTP/AVP" && s.proto != "RTP/SAVP" && s.proto != "RTP/AVPF" && s.proto != "RTP/SAVPF" {
		if p.Protocol == ProtocolRTP || len(s.cryptos) == 0 {
			return false, ErrNoCrypto // DTLS-SRTP (UDP/TLS/RTP/SAVPF) and friends: not SDES
		}
		return false, ErrProtocol
	}
	secure := secureProto(s.proto)
	switch p.Protocol {
	case ProtocolRTP:
		if secure {
			return false, ErrProtocol // an RTP-only side cannot answer RTP/SAVP
		}
		return false, nil
	case ProtocolSRTP:
		if _, ok := chooseCrypto(s.cryptos, p); !ok || !p.SDES.Enabled {
			return false, ErrNoCrypto
		}
		return true, nil
	}
	// Best effort: SRTP when offered with a usable key, else RTP.
	_, ok := chooseCrypto(s.cryptos, p)
	if secure && !ok {
		return false, ErrNoCrypto
	}
	return ok && p.SDES.Enabled, nil
}
