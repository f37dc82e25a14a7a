package media

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/psigate/psigate/sbc/media/relay"
	"github.com/psigate/psigate/sbc/media/sdes"
)

var (
	accessAddr = netip.MustParseAddr("127.0.0.2") // what the client is told (a public address in real life)
	coreAddr   = netip.MustParseAddr("127.0.0.1")
)

func engine(t testing.TB) *relay.Engine {
	t.Helper()
	e, err := relay.New(relay.Config{
		Realms: []relay.RealmPorts{
			{Name: "access", Bind: netip.MustParseAddr("127.0.0.1"), Min: 30000, Max: 30999},
			{Name: "core", Bind: netip.MustParseAddr("127.0.0.1"), Min: 31000, Max: 31999},
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func profile(t testing.TB, name string) Profile {
	t.Helper()
	for _, p := range DefaultProfiles() {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no default profile %q", name)
	return Profile{}
}

// zoomCall is a session between a Zoom client (A, access, "Zoom"
// profile, behind NAT) and the PBX (B, core, "default" profile).
func zoomCall(t testing.TB, zoom, pbx Profile) *Session {
	t.Helper()
	s, err := NewSession(engine(t),
		Leg{Realm: "access", Advertise: accessAddr, Profile: zoom, NAT: true},
		Leg{Realm: "core", Advertise: coreAddr, Profile: pbx}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t testing.TB, raw []byte) *sdp.SessionDescription {
	t.Helper()
	var d sdp.SessionDescription
	if err := d.Unmarshal(raw); err != nil {
		t.Fatalf("psigate wrote SDP that does not parse: %v\n%s", err, raw)
	}
	return &d
}

func attrs(m *sdp.MediaDescription, key string) []string {
	var out []string
	for _, a := range m.Attributes {
		if a.Key == key {
			out = append(out, a.Value)
		}
	}
	return out
}

func has(m *sdp.MediaDescription, key string) bool {
	_, ok := m.Attribute(key)
	return ok
}

// answerFor writes a PBX answer accepting the first of the offered
// payload types plus telephone-event, from a loopback address.
func answerFor(t testing.TB, offer []byte, port int, extra ...string) []byte {
	t.Helper()
	d := mustParse(t, offer)
	m := d.MediaDescriptions[0]
	first := m.MediaName.Formats[0]
	lines := []string{"v=0", "o=PBX 5 5 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0"}
	fmts := first
	var rtpmaps []string
	for _, v := range attrs(m, "rtpmap") {
		if strings.HasPrefix(v, first+" ") {
			rtpmaps = append(rtpmaps, "a=rtpmap:"+v)
		}
		if strings.Contains(v, "telephone-event") {
			pt, _, _ := strings.Cut(v, " ")
			fmts += " " + pt
			rtpmaps = append(rtpmaps, "a=rtpmap:"+v)
		}
	}
	proto := strings.Join(m.MediaName.Protos, "/")
	lines = append(lines, "m=audio "+itoa(port)+" "+proto+" "+fmts)
	lines = append(lines, rtpmaps...)
	lines = append(lines, extra...)
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestZoomOfferToOpenScape: a Zoom SRTP offer becomes a plain RTP offer to
// the PBX with nothing of the client in it; the PBX's answer becomes an
// SRTP answer to the client with a fresh key and the tag the client used.
func TestZoomOfferToOpenScape(t *testing.T) {
	s := zoomCall(t, profile(t, "Zoom"), profile(t, "default"))
	offer := fixture(t, "zoom-offer.sdp")
	toPBX, err := s.Offer(relay.A, offer)
	if err != nil {
		t.Fatal(err)
	}
	d := mustParse(t, toPBX)
	for _, leak := range []string{"192.168.1.23", "ZoomPbxPhone", "1700000001", "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR", "52000"} {
		if bytes.Contains(toPBX, []byte(leak)) {
			t.Errorf("the offer to the PBX contains %q from the client:\n%s", leak, toPBX)
		}
	}
	m := d.MediaDescriptions[0]
	if got := strings.Join(m.MediaName.Protos, "/"); got != "RTP/AVP" {
		t.Errorf("proto to the PBX %s, want RTP/AVP", got)
	}
	if d.ConnectionInformation.Address.Address != coreAddr.String() || m.MediaName.Port.Value != int(s.Bridge().LocalAddr(relay.B).Port()) {
		t.Errorf("c=%s port %d, want %s port %d", d.ConnectionInformation.Address.Address, m.MediaName.Port.Value, coreAddr, s.Bridge().LocalAddr(relay.B).Port())
	}
	if len(attrs(m, "crypto")) != 0 {
		t.Error("crypto offered to an RTP-only PBX")
	}
	if got := strings.Join(m.MediaName.Formats, " "); got != "9 0 8 18 101" {
		t.Errorf("formats %q, want the client's order 9 0 8 18 101", got)
	}
	if !slices.Contains(attrs(m, "fmtp"), "101 0-16") || !has(m, "sendrecv") || !slices.Contains(attrs(m, "ptime"), "20") {
		t.Errorf("attributes %v", m.Attributes)
	}

	pbx := listen(t)
	answer := answerFor(t, toPBX, int(pbx.LocalAddr().(*net.UDPAddr).Port))
	toClient, err := s.Answer(relay.B, answer)
	if err != nil {
		t.Fatal(err)
	}
	d = mustParse(t, toClient)
	m = d.MediaDescriptions[0]
	if got := strings.Join(m.MediaName.Protos, "/"); got != "RTP/SAVP" {
		t.Errorf("proto to the client %s", got)
	}
	if d.ConnectionInformation.Address.Address != accessAddr.String() || m.MediaName.Port.Value != int(s.Bridge().LocalAddr(relay.A).Port()) {
		t.Errorf("answer c=%s port %d", d.ConnectionInformation.Address.Address, m.MediaName.Port.Value)
	}
	if got := strings.Join(m.MediaName.Formats, " "); got != "9 101" {
		t.Errorf("answer formats %q, want 9 101", got)
	}
	cryptos := attrs(m, "crypto")
	if len(cryptos) != 1 {
		t.Fatalf("answer has %d crypto lines, want 1", len(cryptos))
	}
	c, err := sdes.Parse(cryptos[0])
	if err != nil || c.Tag != 1 || c.Suite != sdes.AES128SHA1_80 || strings.Contains(cryptos[0], "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR") {
		t.Errorf("answer crypto %q (%v): want tag 1, the same suite and a fresh key", cryptos[0], err)
	}
	if !has(m, "rtcp-mux") {
		t.Error("rtcp-mux offered by the client but not answered")
	}
	if bytes.Contains(toClient, []byte("PBX")) || bytes.Contains(toClient, []byte("127.0.0.1")) {
		t.Errorf("answer to the client leaks the core side:\n%s", toClient)
	}
	if got := s.Codecs(); got != [2]string{"G722", "G722"} {
		t.Errorf("codecs %v", got)
	}

	// Media flows: SRTP from the client under the key of its offer
	// arrives at the PBX as plain RTP, and the reverse under the key
	// psigate answered with.
	client := listen(t)
	clientKey, _ := sdes.Parse("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR")
	enc, _ := clientKey.Context()
	up := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 9, SequenceNumber: 7, Timestamp: 160, SSRC: 11}, Payload: bytes.Repeat([]byte{0x42}, 160)}
	plain, _ := up.Marshal()
	sealed, _ := enc.EncryptRTP(nil, plain, nil)
	client.WriteToUDPAddrPort(sealed, s.Bridge().LocalAddr(relay.A))
	if got := read(t, pbx); !bytes.Equal(got, plain) {
		t.Fatal("the PBX did not get the client's packet in plain RTP")
	}
	down := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 9, SequenceNumber: 9, Timestamp: 320, SSRC: 12}, Payload: bytes.Repeat([]byte{0x24}, 160)}
	plain, _ = down.Marshal()
	pbx.WriteToUDPAddrPort(plain, s.Bridge().LocalAddr(relay.B))
	dec, _ := c.Context()
	got, err := dec.DecryptRTP(nil, read(t, client), nil)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("the client cannot decrypt the PBX's packet under the answered key: %v", err)
	}
}

// read waits up to 2s for a datagram.
func read(t testing.TB, c *net.UDPConn) []byte {
	t.Helper()
	buf := make([]byte, 1500)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("nothing arrived: %v", err)
	}
	return buf[:n]
}

func listen(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestWebRTCOfferRefusedBySDESProfile(t *testing.T) {
	s := zoomCall(t, profile(t, "Zoom"), profile(t, "default"))
	_, err := s.Offer(relay.A, fixture(t, "webrtc-offer.sdp"))
	if !errors.Is(err, ErrNoCrypto) || !errors.Is(err, ErrNotAcceptable) {
		t.Fatalf("WebRTC offer: %v, want ErrNoCrypto (488)", err)
	}
}

func TestSRTPOnlyRefusesPlainOffer(t *testing.T) {
	s := zoomCall(t, profile(t, "Zoom"), profile(t, "default"))
	plain := bytes.ReplaceAll(fixture(t, "zoom-offer.sdp"), []byte("RTP/SAVP"), []byte("RTP/AVP"))
	plain = dropLines(plain, "a=crypto")
	if _, err := s.Offer(relay.A, plain); !errors.Is(err, ErrNoCrypto) {
		t.Fatalf("plain offer to an SRTP-only profile: %v, want ErrNoCrypto", err)
	}
	rtpOnly := profile(t, "default")
	s2 := zoomCall(t, rtpOnly, rtpOnly)
	if _, err := s2.Offer(relay.A, fixture(t, "zoom-offer.sdp")); !errors.Is(err, ErrProtocol) {
		t.Fatalf("RTP/SAVP offer to an RTP-only profile: %v, want ErrProtocol", err)
	}
}

func dropLines(b []byte, prefix string) []byte {
	var out []string
	for _, l := range strings.Split(string(b), "\r\n") {
		if !strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return []byte(strings.Join(out, "\r\n"))
}

// TestMultipleCryptoLines: unusable lines are skipped; the answer uses the
// tag of the first line the profile accepts.
func TestMultipleCryptoLines(t *testing.T) {
	zoom := profile(t, "Zoom")
	zoom.SDES.Suites = []string{sdes.AES128SHA1_32}
	s := zoomCall(t, zoom, profile(t, "default"))
	offer := dropLines(fixture(t, "zoom-offer.sdp"), "a=crypto")
	offer = bytes.Replace(offer, []byte("a=rtcp-mux"), []byte(strings.Join([]string{
		"a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v",
		"a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR UNENCRYPTED_SRTCP",
		"a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
		"a=crypto:4 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj",
	}, "\r\n")), 1)
	toPBX, err := s.Offer(relay.A, offer)
	if err != nil {
		t.Fatal(err)
	}
	toClient, err := s.Answer(relay.B, answerFor(t, toPBX, 9000))
	if err != nil {
		t.Fatal(err)
	}
	cryptos := attrs(mustParse(t, toClient).MediaDescriptions[0], "crypto")
	if len(cryptos) != 1 || !strings.HasPrefix(cryptos[0], "4 AES_CM_128_HMAC_SHA1_32 ") {
		t.Fatalf("answer crypto %v, want tag 4 (the first line with an allowed suite)", cryptos)
	}
}

func TestNoCommonCodec(t *testing.T) {
	s := zoomCall(t, profile(t, "Zoom"), profile(t, "default"))
	offer := bytes.Replace(fixture(t, "zoom-offer.sdp"), []byte("RTP/SAVP 9 0 8 18 101"), []byte("RTP/SAVP 97 101"), 1)
	offer = bytes.Replace(offer, []byte("a=rtpmap:9 G722/8000"), []byte("a=rtpmap:97 AMR-WB/16000"), 1)
	if _, err := s.Offer(relay.A, offer); !errors.Is(err, ErrNoCommonCodec) {
		t.Fatalf("AMR-WB only to the Zoom profile: %v, want ErrNoCommonCodec", err)
	}
	if _, err := s.Answer(relay.B, answerFor(t, fixture(t, "openscape-offer.sdp"), 9000)); !errors.Is(err, ErrNoOffer) {
		t.Errorf("answer after a refused offer: %v, want ErrNoOffer", err)
	}
}

// TestCodecPriorityEnforced: the PBX's G.711-first offer reaches the Zoom
// client in the Zoom profile's order, G729 dropped when not configured.
func TestCodecPriorityEnforced(t *testing.T) {
	zoom := profile(t, "Zoom")
	zoom.Codecs = []Codec{{Name: "G711U", Priority: 1}, {Name: "G711A", Priority: 2}}
	s, err := NewSession(engine(t), Leg{Realm: "core", Advertise: coreAddr, Profile: profile(t, "default")},
		Leg{Realm: "access", Advertise: accessAddr, Profile: zoom, NAT: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	toClient, err := s.Offer(relay.A, fixture(t, "openscape-offer.sdp"))
	if err != nil {
		t.Fatal(err)
	}
	m := mustParse(t, toClient).MediaDescriptions[0]
	if got := strings.Join(m.MediaName.Formats, " "); got != "0 8 101" {
		t.Errorf("formats to the client %q, want 0 8 101 (priority order, G729 dropped)", got)
	}
	if got := strings.Join(m.MediaName.Protos, "/"); got != "RTP/SAVP" || len(attrs(m, "crypto")) != 2 {
		t.Errorf("proto %s with %d crypto lines, want RTP/SAVP with one per suite", got, len(attrs(m, "crypto")))
	}
}

func TestHoldAndResume(t *testing.T) {
	s := zoomCall(t, profile(t, "Zoom"), profile(t, "default"))
	toPBX, _ := s.Offer(relay.A, fixture(t, "zoom-offer.sdp"))
	if _, err := s.Answer(relay.B, answerFor(t, toPBX, 9000)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		mutate    func([]byte) []byte
		toClient  string // direction written to the (NAT'd) client
		answerDir string
	}{
		{"sendonly keeps MOH playing (keep-sendonly off)", func(b []byte) []byte { return bytes.Replace(b, []byte("a=sendrecv"), []byte("a=sendonly"), 1) }, "sendrecv", "recvonly"},
		{"c=0.0.0.0 is a hold", func(b []byte) []byte {
			return bytes.Replace(b, []byte("c=IN IP4 127.0.0.1"), []byte("c=IN IP4 0.0.0.0"), 1)
		}, "sendrecv", "recvonly"},
		{"inactive", func(b []byte) []byte { return bytes.Replace(b, []byte("a=sendrecv"), []byte("a=inactive"), 1) }, "inactive", "inactive"},
		{"resume", func(b []byte) []byte { return b }, "sendrecv", "sendrecv"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			toClient, err := s.Offer(relay.B, tc.mutate(fixture(t, "openscape-offer.sdp")))
			if err != nil {
				t.Fatal(err)
			}
			m := mustParse(t, toClient).MediaDescriptions[0]
			if !has(m, tc.toClient) {
				t.Errorf("offer to the client has %v, want a=%s", m.Attributes, tc.toClient)
			}
			ans := answerFromClient(t, toClient)
			toPBX, err := s.Answer(relay.A, ans)
			if err != nil {
				t.Fatal(err)
			}
			if m := mustParse(t, toPBX).MediaDescriptions[0]; !has(m, tc.answerDir) {
				t.Errorf("answer to the PBX has %v, want a=%s", m.Attributes, tc.answerDir)
			}
		})
	}
	keep := profile(t, "Zoom")
	keep.KeepSendonlyOnNAT = true
	s2 := zoomCall(t, profile(t, "default"), keep)
	s2.legs[relay.B].NAT = true
	toClient, _ := s2.Offer(relay.A, bytes.Replace(fixture(t, "openscape-offer.sdp"), []byte("a=sendrecv"), []byte("a=sendonly"), 1))
	if m := mustParse(t, toClient).MediaDescriptions[0]; !has(m, "sendonly") {
		t.Errorf("keep-sendonly on: %v, want a=sendonly", m.Attributes)
	}
}

// answerFromClient is the Zoom client's SRTP answer to an offer: the first
// codec, telephone-event, and the first crypto line with a fresh key.
func answerFromClient(t testing.TB, offer []byte) []byte {
	t.Helper()
	m := mustParse(t, offer).MediaDescriptions[0]
	c, err := sdes.Parse(attrs(m, "crypto")[0])
	if err != nil {
		t.Fatal(err)
	}
	mine, _ := sdes.New(c.Tag, c.Suite)
	dir := "sendrecv"
	for _, d := range []string{"sendonly", "recvonly", "inactive"} {
		if has(m, d) {
			dir = map[string]string{"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}[d]
		}
	}
	return answerFor(t, offer, 9002, "a=crypto:"+mine.String(), "a="+dir)
}

// TestTelephoneEventRemapped: the PBX's telephone-event 96 reaches the
// client as the profile's 101, and DTMF packets are remapped on the wire.
func TestTelephoneEventRemapped(t *testing.T) {
	s := zoomCall(t, profile(t, "default"), profile(t, "default"))
	offer := bytes.ReplaceAll(fixture(t, "openscape-offer.sdp"), []byte("101"), []byte("96"))
	toA, err := s.Offer(relay.B, offer)
	if err != nil {
		t.Fatal(err)
	}
	m := mustParse(t, toA).MediaDescriptions[0]
	if !slices.Contains(m.MediaName.Formats, "101") || slices.Contains(m.MediaName.Formats, "96") {
		t.Fatalf("formats %v, want telephone-event as 101", m.MediaName.Formats)
	}
	client, pbx := listen(t), listen(t)
	ans := answerFor(t, toA, client.LocalAddr().(*net.UDPAddr).Port)
	offer2 := bytes.Replace(offer, []byte("m=audio 29170"), []byte("m=audio "+itoa(pbx.LocalAddr().(*net.UDPAddr).Port)), 1)
	s.Reject()
	if _, err := s.Offer(relay.B, offer2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Answer(relay.A, ans); err != nil {
		t.Fatal(err)
	}
	dtmf := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 1, SSRC: 5}, Payload: []byte{1, 0x8a, 0, 160}}
	raw, _ := dtmf.Marshal()
	pbx.WriteToUDPAddrPort(raw, s.Bridge().LocalAddr(relay.B))
	buf := make([]byte, 1500)
	client.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err := client.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal("DTMF not relayed")
	}
	var got rtp.Packet
	if err := got.Unmarshal(buf[:n]); err != nil || got.PayloadType != 101 {
		t.Fatalf("DTMF payload type %d, want 101 (%v)", got.PayloadType, err)
	}
}

// TestTranscodingNegotiated: the PBX offers only A-law; the client's
// profile has only u-law and allows transcoding, so psigate offers u-law
// and converts the payload both ways.
func TestTranscodingNegotiated(t *testing.T) {
	zoom := profile(t, "Zoom")
	zoom.Codecs = []Codec{{Name: "G711U", Priority: 1}}
	s, err := NewSession(engine(t), Leg{Realm: "core", Advertise: coreAddr, Profile: profile(t, "default")},
		Leg{Realm: "access", Advertise: accessAddr, Profile: zoom}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pbx, client := listen(t), listen(t)
	offer := bytes.Replace(fixture(t, "openscape-offer.sdp"), []byte("m=audio 29170 RTP/AVP 8 0 18 101"), []byte("m=audio "+itoa(pbx.LocalAddr().(*net.UDPAddr).Port)+" RTP/AVP 8 101"), 1)
	toClient, err := s.Offer(relay.A, offer)
	if err != nil {
		t.Fatal(err)
	}
	m := mustParse(t, toClient).MediaDescriptions[0]
	if got := strings.Join(m.MediaName.Formats, " "); got != "0 101" {
		t.Fatalf("offer to the client %q, want 0 101 (u-law added for transcoding)", got)
	}
	c, _ := sdes.Parse(attrs(m, "crypto")[0])
	mine, _ := sdes.New(c.Tag, c.Suite)
	ans := answerFor(t, toClient, client.LocalAddr().(*net.UDPAddr).Port, "a=crypto:"+mine.String())
	toPBX, err := s.Answer(relay.B, ans)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(mustParse(t, toPBX).MediaDescriptions[0].MediaName.Formats, " "); got != "8 101" {
		t.Fatalf("answer to the PBX %q, want 8 101", got)
	}
	if got := s.Codecs(); got != [2]string{"G711A", "G711U"} {
		t.Errorf("codecs %v", got)
	}
	alaw := bytes.Repeat([]byte{0xd5, 0x55, 0xaa, 0x2a}, 40)
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 8, SequenceNumber: 1, SSRC: 3}, Payload: alaw}
	raw, _ := p.Marshal()
	pbx.WriteToUDPAddrPort(raw, s.Bridge().LocalAddr(relay.A))
	dec, _ := c.Context()
	plain, err := dec.DecryptRTP(nil, read(t, client), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got rtp.Packet
	if err := got.Unmarshal(plain); err != nil || got.PayloadType != 0 || bytes.Equal(got.Payload, alaw) {
		t.Fatalf("client got pt %d, payload converted %v (%v)", got.PayloadType, !bytes.Equal(got.Payload, alaw), err)
	}
}
