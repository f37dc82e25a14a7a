package media

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/psigate/psigate/sbc/media/sdes"
)

// out is an audio stream psigate writes.
type out struct {
	proto   string
	port    int
	dir     direction
	formats []format
	te      *format
	cryptos []sdes.Crypto
	ptime   int
	rtcpMux bool
}

// origin is psigate's o= line towards one side: its own session id and a
// version that grows with every SDP sent (RFC 4566 section 5.2), so
// nothing of the other side's o= line crosses over.
type origin struct {
	id, version uint64
}

func addrType(a netip.Addr) string {
	if a.Is4() || a.Is4In6() {
		return "IP4"
	}
	return "IP6"
}

// writeSDP renders a session with the audio stream at index audioAt and
// the other m= lines of reject (from an offer) refused with port 0.
func writeSDP(o *origin, addr netip.Addr, audio out, audioAt int, reject *sdp.SessionDescription) []byte {
	o.version++
	at := addrType(addr)
	d := sdp.SessionDescription{
		Origin: sdp.Origin{
			Username: "psigate", SessionID: o.id, SessionVersion: o.version,
			NetworkType: "IN", AddressType: at, UnicastAddress: addr.Unmap().String(),
		},
		SessionName:           "psigate",
		ConnectionInformation: &sdp.ConnectionInformation{NetworkType: "IN", AddressType: at, Address: &sdp.Address{Address: addr.Unmap().String()}},
		TimeDescriptions:      []sdp.TimeDescription{{}},
	}
	n := 1
	if reject != nil {
		n = max(len(reject.MediaDescriptions), audioAt+1)
	}
	for i := range n {
		if i == audioAt {
			d.MediaDescriptions = append(d.MediaDescriptions, audio.media())
			continue
		}
		m := reject.MediaDescriptions[i]
		d.MediaDescriptions = append(d.MediaDescriptions, &sdp.MediaDescription{MediaName: sdp.MediaName{
			Media: m.MediaName.Media, Port: sdp.RangedPort{Value: 0}, Protos: m.MediaName.Protos, Formats: m.MediaName.Formats,
		}})
	}
	b, err := d.Marshal()
	if err != nil {
		panic("media: marshal SDP: " + err.Error()) // built from valid parts only
	}
	return b
}

// media is the m= section of an out stream.
func (s out) media() *sdp.MediaDescription {
	m := &sdp.MediaDescription{MediaName: sdp.MediaName{
		Media: "audio", Port: sdp.RangedPort{Value: s.port}, Protos: strings.Split(s.proto, "/"),
	}}
	all := s.formats
	if s.te != nil {
		all = append(append([]format{}, s.formats...), *s.te)
	}
	for _, f := range all {
		m.MediaName.Formats = append(m.MediaName.Formats, strconv.Itoa(int(f.pt)))
	}
	for _, f := range all {
		rtpmap := strconv.Itoa(int(f.pt)) + " " + f.encoding + "/" + strconv.FormatUint(uint64(f.rate), 10)
		if f.channels != "" {
			rtpmap += "/" + f.channels
		}
		m.Attributes = append(m.Attributes, sdp.Attribute{Key: "rtpmap", Value: rtpmap})
		if f.fmtp != "" {
			m.Attributes = append(m.Attributes, sdp.Attribute{Key: "fmtp", Value: strconv.Itoa(int(f.pt)) + " " + f.fmtp})
		}
	}
	if s.ptime > 0 {
		m.Attributes = append(m.Attributes, sdp.Attribute{Key: "ptime", Value: strconv.Itoa(s.ptime)})
	}
	for _, c := range s.cryptos {
		m.Attributes = append(m.Attributes, sdp.Attribute{Key: "crypto", Value: c.String()})
	}
	if s.rtcpMux {
		m.Attributes = append(m.Attributes, sdp.Attribute{Key: "rtcp-mux"})
	}
	m.Attributes = append(m.Attributes, sdp.Attribute{Key: s.dir.String()})
	return m
}
