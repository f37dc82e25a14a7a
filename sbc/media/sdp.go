package media

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/psigate/psigate/sbc/media/sdes"
)

// Errors that refuse an offer or answer; every one wraps ErrNotAcceptable,
// which the SIP layer answers with 488 Not Acceptable Here.
var (
	ErrNotAcceptable = errors.New("media: not acceptable")
	ErrNoCommonCodec = fmt.Errorf("%w: no common codec", ErrNotAcceptable)
	ErrNoCrypto      = fmt.Errorf("%w: no usable SDES crypto", ErrNotAcceptable)
	ErrProtocol      = fmt.Errorf("%w: media protocol not allowed by the profile", ErrNotAcceptable)
	ErrNoAudio       = fmt.Errorf("%w: no audio stream", ErrNotAcceptable)
	ErrMalformed     = fmt.Errorf("%w: malformed SDP", ErrNotAcceptable)
)

// direction of a stream (RFC 3264 section 6.1), as the sender of the SDP
// sees it: sends means it will send media, recvs that it wants to receive.
type direction struct{ sends, recvs bool }

var (
	sendrecv = direction{true, true}
	sendonly = direction{true, false}
	recvonly = direction{false, true}
	inactive = direction{false, false}
)

func (d direction) String() string {
	switch d {
	case sendrecv:
		return "sendrecv"
	case sendonly:
		return "sendonly"
	case recvonly:
		return "recvonly"
	}
	return "inactive"
}

// format is one payload type of an m= line.
type format struct {
	pt       uint8
	encoding string // e.g. "PCMU", "telephone-event"
	rate     uint32
	channels string // encoding parameters, e.g. "2" for opus
	fmtp     string
	codec    string // our codec name (G711U, ...), "" when unknown
}

func (f format) isTelephoneEvent() bool { return strings.EqualFold(f.encoding, "telephone-event") }

// static payload types of RFC 3551 table 4 that may come without rtpmap.
var static = map[uint8]format{
	0:  {pt: 0, encoding: "PCMU", rate: 8000},
	3:  {pt: 3, encoding: "GSM", rate: 8000},
	4:  {pt: 4, encoding: "G723", rate: 8000},
	8:  {pt: 8, encoding: "PCMA", rate: 8000},
	9:  {pt: 9, encoding: "G722", rate: 8000},
	18: {pt: 18, encoding: "G729", rate: 8000},
}

// codecName finds our configuration name for an SDP encoding.
func codecName(f format) string {
	switch strings.ToUpper(f.encoding) {
	case "PCMU":
		return "G711U"
	case "PCMA":
		return "G711A"
	case "G722":
		return "G722"
	case "G729":
		return "G729"
	case "OPUS":
		return "OPUS"
	case "ILBC":
		return "iLBC"
	case "ISAC":
		return "iSAC"
	case "G7221":
		kind := "G7221"
		if f.rate == 32000 {
			kind = "G7221C"
		}
		for _, p := range strings.Split(f.fmtp, ";") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(p), "bitrate="); ok && (v == "24000" || v == "32000") {
				return kind + "-" + v[:2]
			}
		}
	}
	return ""
}

// stream is the audio m= line of an SDP, as psigate needs it.
type stream struct {
	index    int // position among the m= lines
	proto    string
	port     int
	addr     netip.Addr // connection address; invalid when c=0.0.0.0 (hold) or missing
	dir      direction
	formats  []format // codecs in preference order, telephone-event excluded
	te       *format
	cryptos  []sdes.Crypto // usable a=crypto lines, in order
	rejected int           // a=crypto lines psigate cannot use
	dtls     bool          // a=fingerprint: DTLS-SRTP, which psigate does not key
	ptime    int
	rtcp     netip.AddrPort
	rtcpMux  bool
}

// secure reports whether the proto is one of the SRTP profiles.
func secureProto(proto string) bool { return strings.Contains(proto, "SAVP") }

// parsed is an SDP with its audio stream picked out.
type parsed struct {
	desc  *sdp.SessionDescription
	audio stream
	// others are the indexes of m= lines psigate does not relay; an
	// answer rejects them with port 0.
	others []int
}

func parse(raw []byte) (*parsed, error) {
	var d sdp.SessionDescription
	if err := d.Unmarshal(raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	p := &parsed{desc: &d, audio: stream{index: -1}}
	for i, m := range d.MediaDescriptions {
		if m.MediaName.Media != "audio" || p.audio.index >= 0 || m.MediaName.Port.Value == 0 {
			p.others = append(p.others, i)
			continue
		}
		s, err := parseStream(&d, m, i)
		if err != nil {
			return nil, err
		}
		p.audio = s
	}
	if p.audio.index < 0 {
		return p, ErrNoAudio
	}
	return p, nil
}

func parseStream(d *sdp.SessionDescription, m *sdp.MediaDescription, index int) (stream, error) {
	s := stream{index: index, proto: strings.Join(m.MediaName.Protos, "/"), port: m.MediaName.Port.Value, dir: sendrecv}
	if s.port < 1 || s.port > 65535 {
		return s, fmt.Errorf("%w: port %d", ErrMalformed, s.port)
	}
	s.addr = connAddr(d, m)
	s.dir = dirOf(d.Attributes, sendrecv)
	s.dir = dirOf(m.Attributes, s.dir)
	if !s.addr.IsValid() || s.addr.IsUnspecified() {
		s.addr = netip.Addr{}
		s.dir.recvs = false // RFC 3264 section 8.4: 0.0.0.0 means "do not send to me"
	}
	formats := map[uint8]*format{}
	var order []uint8
	for _, f := range m.MediaName.Formats {
		pt, err := strconv.ParseUint(f, 10, 7)
		if err != nil {
			return s, fmt.Errorf("%w: payload type %q", ErrMalformed, f)
		}
		fm := static[uint8(pt)]
		fm.pt = uint8(pt)
		formats[uint8(pt)] = &fm
		order = append(order, uint8(pt))
	}
	for _, a := range m.Attributes {
		s.attribute(a, formats)
	}
	for _, pt := range order {
		f := formats[pt]
		f.codec = codecName(*f)
		switch {
		case f.isTelephoneEvent():
			if s.te == nil {
				te := *f
				s.te = &te
			}
		case f.encoding != "":
			s.formats = append(s.formats, *f)
		}
	}
	if s.rtcp.Port() == 0 && s.addr.IsValid() {
		s.rtcp = netip.AddrPortFrom(s.addr, uint16(min(s.port+1, 65535)))
	}
	return s, nil
}

func (s *stream) attribute(a sdp.Attribute, formats map[uint8]*format) {
	switch a.Key {
	case "rtpmap", "fmtp":
		pts, rest, _ := strings.Cut(a.Value, " ")
		pt, err := strconv.ParseUint(pts, 10, 7)
		f := formats[uint8(pt)]
		if err != nil || f == nil {
			return
		}
		if a.Key == "fmtp" {
			f.fmtp = rest
			return
		}
		parts := strings.Split(rest, "/")
		f.encoding = parts[0]
		if len(parts) > 1 {
			r, _ := strconv.ParseUint(parts[1], 10, 32)
			f.rate = uint32(r)
		}
		if len(parts) > 2 {
			f.channels = parts[2]
		}
	case "crypto":
		c, err := sdes.Parse(a.Value)
		if err != nil {
			s.rejected++
			return
		}
		s.cryptos = append(s.cryptos, c)
	case "fingerprint":
		s.dtls = true
	case "ptime":
		s.ptime, _ = strconv.Atoi(strings.TrimSpace(a.Value))
	case "rtcp-mux":
		s.rtcpMux = true
	case "rtcp":
		s.rtcp = rtcpAttr(a.Value, s.addr)
	}
}

// rtcpAttr reads "a=rtcp:<port> [IN IP4 <addr>]" (RFC 3605).
func rtcpAttr(v string, def netip.Addr) netip.AddrPort {
	f := strings.Fields(v)
	if len(f) == 0 {
		return netip.AddrPort{}
	}
	port, err := strconv.ParseUint(f[0], 10, 16)
	if err != nil {
		return netip.AddrPort{}
	}
	addr := def
	if len(f) == 4 {
		if a, err := netip.ParseAddr(f[3]); err == nil {
			addr = a
		}
	}
	if !addr.IsValid() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(addr, uint16(port))
}

func connAddr(d *sdp.SessionDescription, m *sdp.MediaDescription) netip.Addr {
	c := m.ConnectionInformation
	if c == nil {
		c = d.ConnectionInformation
	}
	if c == nil || c.Address == nil {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(c.Address.Address)
	if err != nil {
		return netip.Addr{}
	}
	return a
}

func dirOf(attrs []sdp.Attribute, def direction) direction {
	for _, a := range attrs {
		switch a.Key {
		case "sendrecv":
			return sendrecv
		case "sendonly":
			return sendonly
		case "recvonly":
			return recvonly
		case "inactive":
			return inactive
		}
	}
	return def
}
