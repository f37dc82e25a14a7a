package media

// Interop with a real SIP/SRTP peer: baresip, a SIP user agent with SDES
// SRTP, plays the Zoom client; psigate's media engine anchors its call to
// a plain-RTP "PBX" the test plays itself.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/psigate/psigate/sbc/media/g711"
	"github.com/psigate/psigate/sbc/media/relay"
	"github.com/psigate/psigate/sbc/media/sdes"
	"github.com/psigate/psigate/sbc/sbctest"
)

// The tone baresip sends as its microphone.
const (
	toneHz        = 1000
	toneRate      = 8000
	toneAmplitude = 8000 // about -12 dBFS
)

// TestBaresipSRTPToPlainRTP: baresip calls over SIP/UDP with mandatory
// SDES SRTP and a 1 kHz tone as its microphone; psigate's session turns
// its offer into a plain RTP offer to the PBX (the test), and the PBX's
// answer into an SRTP answer to baresip. The tone must arrive at the PBX
// decrypted, in G.711, as a 1 kHz tone.
func TestBaresipSRTPToPlainRTP(t *testing.T) {
	bin := sbctest.FindPeer(t, "baresip", "baresip-core")
	modules := sbctest.BaresipModules(t, "srtp.so")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)

	// Ports: the relay's realms 17000-18999, the tap 19000-19499,
	// baresip's RTP 19500-19999; below the kernel's ephemeral range and
	// apart from the other tests' and benchmarks' ranges (30000-49999).
	lo := netip.MustParseAddr("127.0.0.1")
	e, err := relay.New(relay.Config{
		Realms: []relay.RealmPorts{
			{Name: "access", Bind: lo, Min: 17000, Max: 17999},
			{Name: "core", Bind: lo, Min: 18000, Max: 18999},
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := NewSession(e,
		Leg{Realm: "access", Advertise: lo, Profile: profile(t, "Zoom")},
		Leg{Realm: "core", Advertise: lo, Profile: profile(t, "default")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sess.Close)

	pbx := listen(t) // the PBX's RTP socket
	uas := startUAS(ctx, t)

	dir := t.TempDir()
	wav := filepath.Join(dir, "tone.wav")
	if err := os.WriteFile(wav, toneWAV(3*time.Second), 0o644); err != nil {
		t.Fatal(err)
	}
	writeBaresipConfig(t, dir, modules, wav)
	bs := startBaresip(ctx, t, bin, dir, "sip:test@"+uas.addr.String())

	// The INVITE: psigate's offer to the PBX, the PBX's answer, and
	// psigate's answer to baresip.
	var inv invite
	select {
	case inv = <-uas.invites:
	case err := <-uas.errs:
		t.Fatalf("UAS: %v", err)
	case <-bs.exited:
		t.Fatal("baresip exited before calling")
	case <-ctx.Done():
		t.Fatal("no INVITE from baresip")
	}
	offer := mustParse(t, inv.offer).MediaDescriptions[0]
	if proto := strings.Join(offer.MediaName.Protos, "/"); proto != "RTP/SAVP" || len(attrs(offer, "crypto")) == 0 {
		t.Fatalf("baresip offered %s with %d crypto lines, want RTP/SAVP with SDES:\n%s", proto, len(attrs(offer, "crypto")), inv.offer)
	}
	toPBX, err := sess.Offer(relay.A, inv.offer)
	if err != nil {
		t.Fatalf("offer from baresip: %v\n%s", err, inv.offer)
	}
	m := mustParse(t, toPBX).MediaDescriptions[0]
	if proto := strings.Join(m.MediaName.Protos, "/"); proto != "RTP/AVP" || len(attrs(m, "crypto")) != 0 {
		t.Fatalf("offer to the PBX is %s with %d crypto lines, want plain RTP/AVP:\n%s", proto, len(attrs(m, "crypto")), toPBX)
	}
	toClient, err := sess.Answer(relay.B, answerFor(t, toPBX, pbx.LocalAddr().(*net.UDPAddr).Port))
	if err != nil {
		t.Fatal(err)
	}
	m = mustParse(t, toClient).MediaDescriptions[0]
	if proto := strings.Join(m.MediaName.Protos, "/"); proto != "RTP/SAVP" || len(attrs(m, "crypto")) != 1 {
		t.Fatalf("answer to baresip is %s with %d crypto lines, want RTP/SAVP with one:\n%s", proto, len(attrs(m, "crypto")), toClient)
	}
	// baresip sends to the tap, which forwards to the relay.
	tap := startTap(t, inv.offer, sess.Bridge().LocalAddr(relay.A))
	toClient = tap.redirect(t, toClient, sess.Bridge().LocalAddr(relay.A).Port())
	select {
	case inv.answer <- toClient:
	case <-ctx.Done():
		t.Fatal("UAS gone")
	}
	var dlg *sipgo.DialogServerSession
	select {
	case dlg = <-uas.established:
	case err := <-uas.errs:
		t.Fatalf("UAS: %v", err)
	case <-ctx.Done():
		t.Fatal("no ACK for the 200 OK")
	}

	// The tone at the PBX: plain RTP from the relay's core port.
	pkts := collectRTP(t, pbx, sess.Bridge().LocalAddr(relay.B), 10*time.Second, 2*time.Second)
	samples := decodeG711(t, pkts)
	rms, freq, purity := analyse(samples, toneRate)
	t.Logf("%d packets, %d samples: RMS %.0f, dominant %.0f Hz, %.0f%% of the power in it", len(pkts), len(samples), rms, freq, 100*purity)
	if rms < 1000 {
		t.Errorf("the PBX hears silence: RMS %.0f, want > 1000 (sent %.0f)", rms, toneAmplitude/math.Sqrt2)
	}
	if math.Abs(freq-toneHz) > 0.03*toneHz {
		t.Errorf("dominant frequency %.0f Hz, want %d Hz ± 3%%", freq, toneHz)
	}
	if purity < 0.5 {
		t.Errorf("only %.0f%% of the power is in the tone, want > 50%%", 100*purity)
	}

	// What went over the access leg, as the tap saw it: SRTP that
	// authenticates under baresip's key, encrypted, and nothing in clear
	// but baresip's RTCP APP "PING" (see srtpTap).
	seen := tap.result()
	plain := seen.unauthenticated
	t.Logf("access leg at the tap: %d SRTP, %d SRTCP, %d not authenticated", seen.rtpOK, seen.rtcpOK, len(plain))
	if seen.rtpOK <= 50 || !seen.encrypted {
		t.Errorf("the tap saw %d authenticated SRTP packets from baresip (payloads encrypted: %v), want > 50, encrypted", seen.rtpOK, seen.encrypted)
	}
	for _, p := range plain {
		if !isPinholePing(p) {
			t.Errorf("baresip sent a packet that is not SRTP/SRTCP under its key: % x", p[:min(len(p), 32)])
		}
	}

	st := sess.Stats()
	a, b := st[relay.A], st[relay.B]
	t.Logf("leg A (baresip): %v, RTCP in %d", a, a.RTCPIn)
	t.Logf("leg B (PBX): %v, RTCP out %d", b, b.RTCPOut)
	if !a.SRTPIn || a.PacketsIn <= 50 {
		t.Errorf("leg A: SRTPIn %v, PacketsIn %d; want SRTP, > 50 packets", a.SRTPIn, a.PacketsIn)
	}
	// Every datagram that failed authentication at the relay is one the
	// tap found unauthenticated too: psigate rejects no genuine SRTP.
	if a.AuthFailures != uint64(len(plain)) {
		t.Errorf("leg A: AuthFailures %d, want %d (the unauthenticated datagrams baresip sent)", a.AuthFailures, len(plain))
	}
	if b.PacketsOut <= 50 {
		t.Errorf("leg B: PacketsOut %d, want > 50", b.PacketsOut)
	}

	// Hang up: the UAS sends BYE, baresip must answer it.
	byeCtx, byeCancel := context.WithTimeout(ctx, 5*time.Second)
	defer byeCancel()
	if err := dlg.Bye(byeCtx); err != nil {
		t.Errorf("BYE: %v", err)
	}
}

// toneWAV is a 16-bit mono WAV file of the test tone.
func toneWAV(d time.Duration) []byte {
	n := int(d.Seconds() * toneRate)
	var b bytes.Buffer
	le := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	b.WriteString("RIFF")
	le(uint32(36 + 2*n))
	b.WriteString("WAVEfmt ")
	le(uint32(16))
	le(uint16(1)) // PCM
	le(uint16(1)) // mono
	le(uint32(toneRate))
	le(uint32(2 * toneRate)) // bytes per second
	le(uint16(2))            // block align
	le(uint16(16))           // bits per sample
	b.WriteString("data")
	le(uint32(2 * n))
	for i := range n {
		le(int16(math.Round(toneAmplitude * math.Sin(2*math.Pi*toneHz*float64(i)/toneRate))))
	}
	return b.Bytes()
}

// writeBaresipConfig writes a config directory for a headless baresip:
// no UI (stdin is not a terminal), SIP and RTP on loopback, the WAV file
// as microphone, a null-ish player, G.711 A-law only and mandatory SDES
// SRTP on the account.
func writeBaresipConfig(t *testing.T, dir, modules, wav string) {
	t.Helper()
	config := strings.Join([]string{
		"poll_method epoll",
		"sip_listen 127.0.0.1:0",
		"dns_server 127.0.0.1:53", // any lookup baresip makes stays on loopback
		"net_interface 127.0.0.1",
		"call_local_timeout 30",
		"audio_source aufile," + wav,
		// aubridge: a player that needs no sound card; nothing
		// reads what it plays.
		"audio_player aubridge,psigate",
		"audio_alert aubridge,psigate",
		"ausrc_format s16",
		"auplay_format s16",
		"rtp_ports 19500-19999", // away from the relay's and the tap's
		"rtcp_mux no",
		"module_path " + modules,
		"module g711.so",
		"module aufile.so",
		"module aubridge.so",
		"module srtp.so",
		"module_tmp account.so",
		"module_app menu.so", // the /dial command
	}, "\n") + "\n"
	accounts := "<sip:zoomclient@127.0.0.1>;regint=0;answermode=manual;mediaenc=srtp-mand;audio_codecs=PCMA\n"
	for name, content := range map[string]string{"config": config, "accounts": accounts, "contacts": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type baresip struct {
	exited chan struct{} // closed when the process has exited
}

// startBaresip runs baresip with the config in dir, dialling uri. It is
// killed when the test ends; its output is logged if the test failed.
func startBaresip(ctx context.Context, t *testing.T, bin, dir, uri string) *baresip {
	t.Helper()
	// -t: baresip quits by itself should the test binary die.
	cmd := exec.CommandContext(ctx, bin, "-f", dir, "-t", "90", "-e", "/dial "+uri)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting baresip: %v", err)
	}
	bs := &baresip{exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(bs.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-bs.exited:
		default:
			_ = cmd.Process.Kill()
			<-bs.exited
		}
		if t.Failed() {
			t.Logf("baresip output:\n%s", out.String())
		}
	})
	return bs
}

// invite is an INVITE's offer waiting for the answer to send in the 200.
type invite struct {
	offer  []byte
	answer chan []byte
}

// sipUAS is a minimal SIP user agent server on loopback UDP: it hands each
// INVITE's SDP to the test, answers 100 then 200 with the test's SDP,
// and takes ACK and BYE.
type sipUAS struct {
	addr        netip.AddrPort
	invites     chan invite
	established chan *sipgo.DialogServerSession // after the ACK
	errs        chan error
}

func startUAS(ctx context.Context, t *testing.T) *sipUAS {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx) // ends handlers still waiting when the test ends
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("psigate-interop-pbx"), sipgo.WithUserAgentHostname("127.0.0.1"), sbctest.NoDNS())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := sipgo.NewClient(ua, sipgo.WithClientLogger(quiet), sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	dialogs := sipgo.NewDialogServerCache(cli, sip.ContactHeader{Address: sip.Uri{User: "pbx", Host: "127.0.0.1", Port: int(addr.Port())}})
	u := &sipUAS{addr: addr, invites: make(chan invite), established: make(chan *sipgo.DialogServerSession, 1), errs: make(chan error, 8)}
	fail := func(err error) {
		select {
		case u.errs <- err:
		default:
		}
	}
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		dlg, err := dialogs.ReadInvite(req, tx)
		if err != nil {
			fail(fmt.Errorf("INVITE: %w", err))
			return
		}
		if err := dlg.Respond(sip.StatusTrying, "Trying", nil); err != nil {
			fail(fmt.Errorf("100 Trying: %w", err))
			return
		}
		inv := invite{offer: slices.Clone(req.Body()), answer: make(chan []byte)}
		var answer []byte
		select {
		case u.invites <- inv:
		case <-ctx.Done():
			return
		}
		select {
		case answer = <-inv.answer:
		case <-ctx.Done():
			return
		}
		// RespondSDP returns when the ACK has come.
		if err := dlg.RespondSDP(answer); err != nil {
			fail(fmt.Errorf("200 OK: %w", err))
			return
		}
		select {
		case u.established <- dlg:
		case <-ctx.Done():
		}
	})
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := dialogs.ReadAck(req, tx); err != nil {
			fail(fmt.Errorf("ACK: %w", err))
		}
	})
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := dialogs.ReadBye(req, tx); err != nil {
			fail(fmt.Errorf("BYE: %w", err))
		}
	})
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.ServeUDP(conn)
	}()
	t.Cleanup(func() {
		cancel()
		conn.Close()
		<-served
		srv.Close()
		ua.Close()
	})
	return u
}

// collectRTP waits up to wait for the first RTP packet from src, then
// collects packets for span after it.
func collectRTP(t *testing.T, c *net.UDPConn, src netip.AddrPort, wait, span time.Duration) []rtp.Packet {
	t.Helper()
	var pkts []rtp.Packet
	deadline := time.Now().Add(wait)
	buf := make([]byte, 1500)
	for {
		c.SetReadDeadline(deadline)
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if len(pkts) == 0 {
				t.Fatalf("no RTP at the PBX within %v", wait)
			}
			return pkts
		}
		if err != nil {
			t.Fatal(err)
		}
		if from != src {
			t.Errorf("RTP at the PBX from %v, want the relay's %v", from, src)
			continue
		}
		var p rtp.Packet
		if err := p.Unmarshal(buf[:n]); err != nil {
			t.Errorf("not RTP at the PBX (%v): % x", err, buf[:min(n, 16)])
			continue
		}
		if len(pkts) == 0 {
			deadline = time.Now().Add(span)
		}
		p.Payload = slices.Clone(p.Payload)
		pkts = append(pkts, p)
	}
}

// decodeG711 orders the packets by sequence number and decodes the audio
// ones by their payload type (the PBX's static types 0 and 8).
func decodeG711(t *testing.T, pkts []rtp.Packet) []float64 {
	t.Helper()
	first := pkts[0].SequenceNumber
	slices.SortStableFunc(pkts, func(a, b rtp.Packet) int {
		return int(int16(a.SequenceNumber-first)) - int(int16(b.SequenceNumber-first))
	})
	var out []float64
	for _, p := range pkts {
		var dec func(byte) int16
		switch p.PayloadType {
		case 0:
			dec = g711.ULawToLinear
		case 8:
			dec = g711.ALawToLinear
		default:
			continue // telephone-event, comfort noise
		}
		for _, b := range p.Payload {
			out = append(out, float64(dec(b)))
		}
	}
	if len(out) < toneRate/2 {
		t.Fatalf("only %d G.711 samples at the PBX", len(out))
	}
	return out
}

// analyse returns the RMS of the samples, the dominant frequency (the
// strongest of 10 Hz steps from 100 to 3900 Hz, Goertzel over 100 ms
// blocks) and the share of the signal's power at that frequency.
func analyse(x []float64, rate int) (rms, freq, purity float64) {
	var sum float64
	for _, v := range x {
		sum += v * v
	}
	meanSquare := sum / float64(len(x))
	block := rate / 10
	blocks := len(x) / block
	best := 0.0
	for f := 100; f <= 3900; f += 10 {
		var p float64
		for i := range blocks {
			p += goertzel(x[i*block:(i+1)*block], float64(f), float64(rate))
		}
		if p > best {
			best, freq = p, float64(f)
		}
	}
	// A sine of amplitude A gives |X|² = (A·N/2)², its mean square is A²/2.
	tone := best / float64(blocks) * 2 / float64(block*block)
	return math.Sqrt(meanSquare), freq, tone / meanSquare
}

// goertzel is |X(f)|² of the block.
func goertzel(x []float64, f, rate float64) float64 {
	c := 2 * math.Cos(2*math.Pi*f/rate)
	var s1, s2 float64
	for _, v := range x {
		s1, s2 = v+c*s1-s2, s1
	}
	return s1*s1 + s2*s2 - c*s1*s2
}

// srtpTap sits on the access leg between baresip and the relay: psigate's
// answer sends baresip to the tap's port pair, and the tap forwards every
// datagram unchanged in both directions (baresip to the relay; the relay,
// which latches to the tap, back to baresip). On the way it checks what
// baresip sends against the key of baresip's offer, as a capture would.
//
// baresip (1.0.0) opens its RTCP NAT pinhole at stream start with an RTCP
// APP packet, name "PING", data "PONG", sent in clear although the stream
// is SRTP. The relay counts that as an SRTCP authentication failure, as it
// should; the test accepts exactly such packets and counts them.
type srtpTap struct {
	ports *relay.Ports

	mu              sync.Mutex
	ctx             *srtp.Context
	rtpOK, rtcpOK   int
	encrypted       bool     // every authenticated RTP payload differed from its plaintext
	unauthenticated [][]byte // datagrams from baresip that did not authenticate
}

func startTap(t *testing.T, offer []byte, relayRTP netip.AddrPort) *srtpTap {
	t.Helper()
	c, err := sdes.Parse(attrs(mustParse(t, offer).MediaDescriptions[0], "crypto")[0])
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := c.Context()
	if err != nil {
		t.Fatal(err)
	}
	pool, err := relay.NewPool("tap", relayRTP.Addr(), 19000, 19499, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	ports, err := pool.Alloc()
	if err != nil {
		t.Fatal(err)
	}
	tap := &srtpTap{ports: ports, ctx: ctx, encrypted: true}
	relayRTCP := netip.AddrPortFrom(relayRTP.Addr(), relayRTP.Port()+1)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); tap.forward(ports.RTP, relayRTP, false) }()
	go func() { defer wg.Done(); tap.forward(ports.RTCP, relayRTCP, true) }()
	t.Cleanup(func() {
		ports.Release()
		wg.Wait()
	})
	return tap
}

// redirect rewrites psigate's answer to baresip to name the tap's port.
func (tap *srtpTap) redirect(t *testing.T, answer []byte, relayPort uint16) []byte {
	t.Helper()
	from := []byte("m=audio " + itoa(int(relayPort)) + " ")
	if bytes.Count(answer, from) != 1 {
		t.Fatalf("no %q in the answer:\n%s", from, answer)
	}
	return bytes.Replace(answer, from, []byte("m=audio "+itoa(tap.ports.Port)+" "), 1)
}

func (tap *srtpTap) forward(c *net.UDPConn, relayAddr netip.AddrPort, rtcp bool) {
	buf := make([]byte, 1500)
	var peer netip.AddrPort // baresip, once heard from
	for {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		if src == relayAddr {
			if peer.IsValid() {
				c.WriteToUDPAddrPort(buf[:n], peer)
			}
			continue
		}
		peer = src
		tap.inspect(buf[:n], rtcp)
		c.WriteToUDPAddrPort(buf[:n], relayAddr)
	}
}

func (tap *srtpTap) inspect(pkt []byte, rtcp bool) {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	if rtcp {
		if _, err := tap.ctx.DecryptRTCP(nil, pkt, nil); err != nil {
			tap.unauthenticated = append(tap.unauthenticated, slices.Clone(pkt))
			return
		}
		tap.rtcpOK++
		return
	}
	var hdr rtp.Header
	plain, err := tap.ctx.DecryptRTP(nil, pkt, &hdr)
	if err != nil {
		tap.unauthenticated = append(tap.unauthenticated, slices.Clone(pkt))
		return
	}
	tap.rtpOK++
	h := hdr.MarshalSize()
	if bytes.Equal(plain[h:], pkt[h:len(plain)]) {
		tap.encrypted = false
	}
}

// tapResult is what the tap has seen so far.
type tapResult struct {
	rtpOK, rtcpOK   int      // SRTP and SRTCP datagrams that authenticated
	encrypted       bool     // every authenticated RTP payload differed from its plaintext
	unauthenticated [][]byte // datagrams from baresip that did not authenticate
}

func (tap *srtpTap) result() tapResult {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	return tapResult{tap.rtpOK, tap.rtcpOK, tap.encrypted, slices.Clone(tap.unauthenticated)}
}

// isPinholePing is baresip's clear-text RTCP APP "PING"/"PONG" packet.
func isPinholePing(p []byte) bool {
	return len(p) == 16 && p[0]>>6 == 2 && p[1] == 204 && string(p[8:16]) == "PINGPONG"
}
