package relay

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/psigate/psigate/sbc/media/g711"
	"github.com/psigate/psigate/sbc/media/sdes"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// newEngine makes an engine on loopback; the pool skips ports that other
// programs hold.
func newEngine(t *testing.T, cfg Config) *Engine {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Realms == nil {
		cfg.Realms = []RealmPorts{{Name: "access", Bind: loopback, Min: 40000, Max: 44999}, {Name: "core", Bind: loopback, Min: 45000, Max: 49999}}
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func newBridge(t *testing.T, e *Engine, onEvent func(Event)) *Bridge {
	t.Helper()
	br, err := e.NewBridge("access", "core", onEvent)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(br.Close)
	return br
}

// endpoint is a phone's media socket on loopback.
type endpoint struct {
	t    *testing.T
	conn *net.UDPConn
}

func newEndpoint(t *testing.T) *endpoint {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &endpoint{t: t, conn: c}
}

func (e *endpoint) addr() netip.AddrPort { return e.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (e *endpoint) send(to netip.AddrPort, b []byte) {
	e.t.Helper()
	if _, err := e.conn.WriteToUDPAddrPort(b, to); err != nil {
		e.t.Fatal(err)
	}
}

// recv waits up to 2s for a datagram; ok false on timeout.
func (e *endpoint) recv() ([]byte, netip.AddrPort, bool) {
	buf := make([]byte, 2048)
	e.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, from, err := e.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, netip.AddrPort{}, false
	}
	return buf[:n], from, true
}

// quiet reports whether nothing arrives within d.
func (e *endpoint) quiet(d time.Duration) bool {
	buf := make([]byte, 2048)
	e.conn.SetReadDeadline(time.Now().Add(d))
	_, _, err := e.conn.ReadFromUDPAddrPort(buf)
	return err != nil
}

func rtpPacket(t *testing.T, ssrc uint32, seq uint16, pt uint8, payload []byte) []byte {
	t.Helper()
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: ssrc}, Payload: payload}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func key(t *testing.T, suite string) *sdes.Crypto {
	t.Helper()
	c, err := sdes.New(1, suite)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

func ctxOf(t *testing.T, c *sdes.Crypto) *srtp.Context {
	t.Helper()
	ctx, err := c.Context()
	if err != nil {
		t.Fatal(err)
	}
	return ctx
}

func tone(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(0x10 + i%64)
	}
	return b
}

func update(t *testing.T, br *Bridge, s Side, p Params) {
	t.Helper()
	if p.ClockRate == 0 {
		p.ClockRate = 8000
	}
	if err := br.Update(s, p); err != nil {
		t.Fatal(err)
	}
}

// TestRTPToSRTPByteForByte: plain RTP from the PBX on leg B comes out on
// leg A as SRTP that an independent context decrypts to the same bytes,
// and SRTP from the client comes out as the same plain RTP.
func TestRTPToSRTPByteForByte(t *testing.T) {
	for _, suite := range []string{sdes.AES128SHA1_80, sdes.AES128SHA1_32, sdes.AEADAES128GCM} {
		t.Run(suite, func(t *testing.T) {
			e := newEngine(t, Config{})
			br := newBridge(t, e, nil)
			client, pbx := newEndpoint(t), newEndpoint(t)
			clientKey, relayKey := key(t, suite), key(t, suite)
			update(t, br, A, Params{Remote: client.addr(), Recv: clientKey, Send: relayKey, SendTo: true, Receive: true})
			update(t, br, B, Params{Remote: pbx.addr(), SendTo: true, Receive: true})
			br.Start()

			decrypt := ctxOf(t, relayKey) // the client's view of the relay's key
			encrypt := ctxOf(t, clientKey)
			for seq := uint16(1); seq <= 20; seq++ {
				sent := rtpPacket(t, 0xabc, seq, 0, tone(160))
				pbx.send(br.LocalAddr(B), sent)
				got, from, ok := client.recv()
				if !ok {
					t.Fatalf("packet %d never reached the client", seq)
				}
				if from != br.LocalAddr(A) {
					t.Fatalf("came from %s, want the relay's leg A %s", from, br.LocalAddr(A))
				}
				plain, err := decrypt.DecryptRTP(nil, got, nil)
				if err != nil {
					t.Fatalf("client cannot decrypt packet %d: %v", seq, err)
				}
				if !bytes.Equal(plain, sent) {
					t.Fatalf("packet %d changed on the way", seq)
				}

				up := rtpPacket(t, 0xdef, seq, 0, tone(160))
				sealed, err := encrypt.EncryptRTP(nil, up, nil)
				if err != nil {
					t.Fatal(err)
				}
				client.send(br.LocalAddr(A), sealed)
				got, _, ok = pbx.recv()
				if !ok || !bytes.Equal(got, up) {
					t.Fatalf("packet %d to the PBX: ok=%v equal=%v", seq, ok, bytes.Equal(got, up))
				}
			}
			// A loop counts a packet out after its send returns, which
			// may be after the peer already has it: poll briefly.
			var st [2]Stats
			for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				if st = br.Stats(); st[A].PacketsOut == 20 && st[B].PacketsOut == 20 {
					break
				}
			}
			if st[A].PacketsIn != 20 || st[A].PacketsOut != 20 || st[B].PacketsIn != 20 || st[B].PacketsOut != 20 {
				t.Errorf("stats A %v / B %v", st[A], st[B])
			}
			if !st[A].SRTPIn || !st[A].SRTPOut || st[B].SRTPIn || st[B].SRTPOut {
				t.Errorf("SRTP flags A %v/%v B %v/%v", st[A].SRTPIn, st[A].SRTPOut, st[B].SRTPIn, st[B].SRTPOut)
			}
			if st[A].Lost != 0 || st[B].Lost != 0 {
				t.Errorf("lost A %d B %d", st[A].Lost, st[B].Lost)
			}
		})
	}
}

// TestSRTPBothSidesSeparateKeys: SRTP on both legs, each with its own keys.
func TestSRTPBothSidesSeparateKeys(t *testing.T) {
	e := newEngine(t, Config{})
	br := newBridge(t, e, nil)
	a, b := newEndpoint(t), newEndpoint(t)
	aKey, toA, bKey, toB := key(t, sdes.AES128SHA1_80), key(t, sdes.AES128SHA1_80), key(t, sdes.AES128SHA1_32), key(t, sdes.AES128SHA1_32)
	update(t, br, A, Params{Remote: a.addr(), Recv: aKey, Send: toA, SendTo: true, Receive: true})
	update(t, br, B, Params{Remote: b.addr(), Recv: bKey, Send: toB, SendTo: true, Receive: true})
	br.Start()
	sent := rtpPacket(t, 1, 1, 8, tone(160))
	sealed, _ := ctxOf(t, aKey).EncryptRTP(nil, sent, nil)
	a.send(br.LocalAddr(A), sealed)
	got, _, ok := b.recv()
	if !ok {
		t.Fatal("nothing reached B")
	}
	if bytes.Equal(got, sealed) {
		t.Fatal("B got A's ciphertext: the relay did not re-key")
	}
	plain, err := ctxOf(t, toB).DecryptRTP(nil, got, nil)
	if err != nil || !bytes.Equal(plain, sent) {
		t.Fatalf("B decrypt: %v", err)
	}
}

// TestLatchFollowsNATRebinding: the client's source port changes mid-call
// (same SSRC); the relay sends to the new port at once.
func TestLatchFollowsNATRebinding(t *testing.T) {
	e := newEngine(t, Config{})
	br := newBridge(t, e, nil)
	client, moved, pbx := newEndpoint(t), newEndpoint(t), newEndpoint(t)
	signalled := netip.MustParseAddrPort("192.0.2.10:4000") // the private address in the client's SDP: unreachable
	update(t, br, A, Params{Remote: signalled, SendTo: true, Receive: true})
	update(t, br, B, Params{Remote: pbx.addr(), SendTo: true, Receive: true})
	br.Start()

	client.send(br.LocalAddr(A), rtpPacket(t, 7, 1, 0, tone(160)))
	if _, _, ok := pbx.recv(); !ok {
		t.Fatal("first packet not relayed")
	}
	pbx.send(br.LocalAddr(B), rtpPacket(t, 9, 1, 0, tone(160)))
	if _, _, ok := client.recv(); !ok {
		t.Fatal("relay did not latch to the client's real address")
	}
	moved.send(br.LocalAddr(A), rtpPacket(t, 7, 2, 0, tone(160)))
	if _, _, ok := pbx.recv(); !ok {
		t.Fatal("packet from the new port not relayed")
	}
	pbx.send(br.LocalAddr(B), rtpPacket(t, 9, 2, 0, tone(160)))
	if _, _, ok := moved.recv(); !ok {
		t.Fatal("relay kept sending to the old port")
	}
	if st := br.Stats()[A]; st.Source != moved.addr() || st.Relatches != 1 {
		t.Errorf("source %s relatches %d", st.Source, st.Relatches)
	}
}

// TestHijackIgnored: a stranger's packets, with another SSRC for plain RTP
// or without the key for SRTP, neither reach the PBX nor steal the stream.
func TestHijackIgnored(t *testing.T) {
	for _, srtpLeg := range []bool{false, true} {
		name := "rtp"
		if srtpLeg {
			name = "srtp"
		}
		t.Run(name, func(t *testing.T) {
			e := newEngine(t, Config{})
			br := newBridge(t, e, nil)
			client, stranger, pbx := newEndpoint(t), newEndpoint(t), newEndpoint(t)
			p := Params{Remote: client.addr(), SendTo: true, Receive: true}
			var enc, strangerEnc *srtp.Context
			if srtpLeg {
				p.Recv, p.Send = key(t, sdes.AES128SHA1_80), key(t, sdes.AES128SHA1_80)
				enc = ctxOf(t, p.Recv)
				strangerEnc = ctxOf(t, key(t, sdes.AES128SHA1_80))
			}
			update(t, br, A, p)
			update(t, br, B, Params{Remote: pbx.addr(), SendTo: true, Receive: true})
			br.Start()
			seal := func(c *srtp.Context, b []byte) []byte {
				if c == nil {
					return b
				}
				out, err := c.EncryptRTP(nil, b, nil)
				if err != nil {
					t.Fatal(err)
				}
				return out
			}
			client.send(br.LocalAddr(A), seal(enc, rtpPacket(t, 7, 1, 0, tone(160))))
			if _, _, ok := pbx.recv(); !ok {
				t.Fatal("client's packet not relayed")
			}
			for i := range 5 {
				stranger.send(br.LocalAddr(A), seal(strangerEnc, rtpPacket(t, 666, uint16(100+i), 0, tone(160))))
			}
			if !pbx.quiet(200 * time.Millisecond) {
				t.Fatal("a stranger's packet reached the PBX")
			}
			pbx.send(br.LocalAddr(B), rtpPacket(t, 9, 1, 0, tone(160)))
			if _, _, ok := client.recv(); !ok {
				t.Fatal("the client no longer gets media")
			}
			if !stranger.quiet(100 * time.Millisecond) {
				t.Fatal("the stranger got the client's media")
			}
			st := br.Stats()[A]
			if srtpLeg && st.AuthFailures != 5 || !srtpLeg && st.Rejected != 5 {
				t.Errorf("auth failures %d rejected %d, want 5 of one kind", st.AuthFailures, st.Rejected)
			}
		})
	}
}

func TestInactivityTimeouts(t *testing.T) {
	events := make(chan Event, 4)
	e := newEngine(t, Config{InitialTimeout: 100 * time.Millisecond, SteadyTimeout: 100 * time.Millisecond})
	br := newBridge(t, e, func(ev Event) { events <- ev })
	client, pbx := newEndpoint(t), newEndpoint(t)
	update(t, br, A, Params{Remote: client.addr(), SendTo: true, Receive: true})
	update(t, br, B, Params{Remote: pbx.addr(), SendTo: true, Receive: false}) // on hold: B sends nothing
	br.Start()

	ev := waitEvent(t, e, events)
	if ev.Kind != InitialTimeout || ev.Side != A {
		t.Fatalf("event %+v, want initial timeout on A", ev)
	}

	// After media started, a silence is the steady timeout.
	update(t, br, A, Params{Remote: client.addr(), SendTo: true, Receive: false})
	update(t, br, A, Params{Remote: client.addr(), SendTo: true, Receive: true}) // resumed: timers restart
	client.send(br.LocalAddr(A), rtpPacket(t, 7, 1, 0, tone(160)))
	if _, _, ok := pbx.recv(); !ok {
		t.Fatal("not relayed")
	}
	ev = waitEvent(t, e, events)
	if ev.Kind != SteadyTimeout || ev.Side != A || ev.Idle < 100*time.Millisecond {
		t.Fatalf("event %+v, want steady timeout on A", ev)
	}
}

// waitEvent runs the monitor until an event arrives, for at most 5s.
func waitEvent(t *testing.T, e *Engine, events <-chan Event) Event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case ev := <-events:
			return ev
		case <-tick.C:
			e.Check()
		case <-deadline:
			t.Fatal("no inactivity event within 5s")
		}
	}
}

type alarms struct {
	mu     sync.Mutex
	active map[string]string
}

func (a *alarms) Raise(code, text string) { a.mu.Lock(); a.active[code] = text; a.mu.Unlock() }
func (a *alarms) Clear(code string)       { a.mu.Lock(); delete(a.active, code); a.mu.Unlock() }

func TestPortExhaustionAndDrain(t *testing.T) {
	al := &alarms{active: map[string]string{}}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := newEngine(t, Config{
		Realms: []RealmPorts{{Name: "access", Bind: loopback, Min: 39000, Max: 39003}, {Name: "core", Bind: loopback, Min: 39010, Max: 39019}},
		Drain:  2 * time.Second, Alarms: al, Now: clock,
	})
	b1 := newBridge(t, e, nil)
	b2 := newBridge(t, e, nil)
	_, err := e.NewBridge("access", "core", nil)
	if !errors.Is(err, ErrNoPorts) || !strings.Contains(err.Error(), "access") {
		t.Fatalf("third bridge: %v, want ErrNoPorts naming the realm", err)
	}
	if _, ok := al.active["media-ports-access"]; !ok {
		t.Fatalf("no alarm: %v", al.active)
	}
	if free := e.Pool("core").Free(); free != 3 {
		t.Errorf("core pool free %d after the failed bridge, want 3 (its B ports returned)", free)
	}
	port := b1.LocalAddr(A).Port()
	b1.Close()
	if _, err := e.NewBridge("access", "core", nil); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("a draining port was reused: %v", err)
	}
	mu.Lock()
	now = now.Add(3 * time.Second)
	mu.Unlock()
	b3, err := e.NewBridge("access", "core", nil)
	if err != nil {
		t.Fatalf("after the drain: %v", err)
	}
	defer b3.Close()
	if b3.LocalAddr(A).Port() != port {
		t.Errorf("got port %d, want the drained %d", b3.LocalAddr(A).Port(), port)
	}
	_ = b2
}

// TestTranscodeThroughRelay: PCMA from the PBX reaches a PCMU-only client
// as PCMU whose samples decode to the same tone within G.711 quantisation.
func TestTranscodeThroughRelay(t *testing.T) {
	e := newEngine(t, Config{})
	br := newBridge(t, e, nil)
	client, pbx := newEndpoint(t), newEndpoint(t)
	toClient := &[128]uint8{}
	toPBX := &[128]uint8{}
	for i := range toClient {
		toClient[i], toPBX[i] = uint8(i), uint8(i)
	}
	toClient[8], toPBX[0] = 0, 8
	update(t, br, A, Params{Remote: client.addr(), SendTo: true, Receive: true, PTMap: toClient, Transcode: ALawToULaw})
	update(t, br, B, Params{Remote: pbx.addr(), SendTo: true, Receive: true, PTMap: toPBX, Transcode: ULawToALaw})
	br.Start()

	alaw := make([]byte, 160)
	for i := range alaw {
		alaw[i] = g711.LinearToALaw(int16(8000 * ((i % 20) - 10) / 10))
	}
	pbx.send(br.LocalAddr(B), rtpPacket(t, 5, 1, 8, alaw))
	got, _, ok := client.recv()
	if !ok {
		t.Fatal("nothing reached the client")
	}
	var p rtp.Packet
	if err := p.Unmarshal(got); err != nil {
		t.Fatal(err)
	}
	if p.PayloadType != 0 {
		t.Fatalf("payload type %d, want 0 (PCMU)", p.PayloadType)
	}
	back := append([]byte(nil), p.Payload...)
	client.send(br.LocalAddr(A), rtpPacket(t, 6, 1, 0, back))
	got, _, ok = pbx.recv()
	if !ok {
		t.Fatal("nothing reached the PBX")
	}
	if err := p.Unmarshal(got); err != nil || p.PayloadType != 8 {
		t.Fatalf("to the PBX: pt %d, %v", p.PayloadType, err)
	}
	for i := range alaw {
		a, b := int(g711.ALawToLinear(alaw[i])), int(g711.ALawToLinear(p.Payload[i]))
		// Two quantisation steps: an A-law step is 1/16 of the segment.
		if d, tol := abs(a-b), max(32, abs(a)/8+16); d > tol {
			t.Fatalf("sample %d: %d came back as %d (tolerance %d)", i, a, b, tol)
		}
	}
}

// TestRekeyKeepsCall: a re-INVITE changes the client's key; packets under
// the old key are refused, under the new one relayed, with no new ports.
func TestRekeyKeepsCall(t *testing.T) {
	e := newEngine(t, Config{})
	br := newBridge(t, e, nil)
	client, pbx := newEndpoint(t), newEndpoint(t)
	old, relayKey := key(t, sdes.AES128SHA1_80), key(t, sdes.AES128SHA1_80)
	update(t, br, A, Params{Remote: client.addr(), Recv: old, Send: relayKey, SendTo: true, Receive: true})
	update(t, br, B, Params{Remote: pbx.addr(), SendTo: true, Receive: true})
	br.Start()
	port := br.LocalAddr(A)
	oldCtx := ctxOf(t, old)
	send := func(c *srtp.Context, seq uint16) {
		b, _ := c.EncryptRTP(nil, rtpPacket(t, 7, seq, 0, tone(160)), nil)
		client.send(port, b)
	}
	send(oldCtx, 1)
	if _, _, ok := pbx.recv(); !ok {
		t.Fatal("not relayed before the re-key")
	}
	fresh := key(t, sdes.AES128SHA1_80)
	update(t, br, A, Params{Remote: client.addr(), Recv: fresh, Send: relayKey, SendTo: true, Receive: true})
	send(oldCtx, 2)
	if !pbx.quiet(150 * time.Millisecond) {
		t.Fatal("a packet under the old key was relayed after the re-key")
	}
	send(ctxOf(t, fresh), 3)
	if _, _, ok := pbx.recv(); !ok {
		t.Fatal("not relayed after the re-key")
	}
	if br.LocalAddr(A) != port {
		t.Error("the re-key moved the relay's port")
	}
}

// TestRTCPBypassAndTerminate: SRTCP from the client reaches the PBX as
// plain RTCP with bypass; with terminate the PBX gets the relay's own
// receiver reports instead.
func TestRTCPBypassAndTerminate(t *testing.T) {
	e := newEngine(t, Config{ReportInterval: time.Millisecond})
	br := newBridge(t, e, nil)
	client, clientRTCP, pbx, pbxRTCP := newEndpoint(t), newEndpoint(t), newEndpoint(t), newEndpoint(t)
	ck, rk := key(t, sdes.AES128SHA1_80), key(t, sdes.AES128SHA1_80)
	update(t, br, A, Params{Remote: client.addr(), RemoteRTCP: clientRTCP.addr(), Recv: ck, Send: rk, SendTo: true, Receive: true})
	update(t, br, B, Params{Remote: pbx.addr(), RemoteRTCP: pbxRTCP.addr(), SendTo: true, Receive: true})
	br.Start()
	sr := &rtcp.SenderReport{SSRC: 7, PacketCount: 10, OctetCount: 1600}
	plain, _ := sr.Marshal()
	sealed, err := ctxOf(t, ck).EncryptRTCP(nil, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	rtcpA := netip.AddrPortFrom(loopback, br.LocalAddr(A).Port()+1)
	clientRTCP.send(rtcpA, sealed)
	got, _, ok := pbxRTCP.recv()
	if !ok || !bytes.Equal(got, plain) {
		t.Fatalf("bypassed RTCP: ok %v equal %v", ok, bytes.Equal(got, plain))
	}

	update(t, br, B, Params{Remote: pbx.addr(), RemoteRTCP: pbxRTCP.addr(), SendTo: true, Receive: true, RTCP: RTCPTerminate})
	pbx.send(br.LocalAddr(B), rtpPacket(t, 9, 1, 0, tone(160)))
	if _, _, ok := client.recv(); !ok {
		t.Fatal("RTP not relayed")
	}
	e.Check()
	got, _, ok = pbxRTCP.recv()
	if !ok {
		t.Fatal("no receiver report on the terminated leg")
	}
	pkts, err := rtcp.Unmarshal(got)
	if err != nil || len(pkts) != 1 {
		t.Fatalf("report: %v", err)
	}
	rr, isRR := pkts[0].(*rtcp.ReceiverReport)
	if !isRR || len(rr.Reports) != 1 || rr.Reports[0].SSRC != 9 || rr.Reports[0].LastSequenceNumber != 1 {
		t.Fatalf("report = %#v", pkts[0])
	}
}

func TestLossAndJitterFromSequence(t *testing.T) {
	e := newEngine(t, Config{})
	br := newBridge(t, e, nil)
	client, pbx := newEndpoint(t), newEndpoint(t)
	update(t, br, A, Params{Remote: client.addr(), SendTo: true, Receive: true})
	update(t, br, B, Params{Remote: pbx.addr(), SendTo: true, Receive: true})
	br.Start()
	for _, seq := range []uint16{65530, 65531, 65533, 65535, 0, 1, 4} { // 65532, 65534, 2, 3 lost across the wrap
		client.send(br.LocalAddr(A), rtpPacket(t, 7, seq, 0, tone(160)))
		if _, _, ok := pbx.recv(); !ok {
			t.Fatalf("packet %d not relayed", seq)
		}
	}
	st := br.Stats()[A]
	if st.Lost != 4 || st.PacketsIn != 7 {
		t.Errorf("lost %d of %d, want 4 of 7", st.Lost, st.PacketsIn)
	}
	if st.Jitter <= 0 {
		t.Errorf("jitter %s: packets sent back to back against 20 ms timestamps must show jitter", st.Jitter)
	}
	if time.Since(st.LastPacket) > 10*time.Second {
		t.Errorf("last packet %s", st.LastPacket)
	}
}

func TestMalformedAndHoldDropped(t *testing.T) {
	e := newEngine(t, Config{})
	br := newBridge(t, e, nil)
	client, pbx := newEndpoint(t), newEndpoint(t)
	update(t, br, A, Params{Remote: client.addr(), SendTo: true, Receive: true})
	update(t, br, B, Params{Remote: pbx.addr(), SendTo: false, Receive: true}) // the PBX put the call on hold
	br.Start()
	for _, junk := range [][]byte{{}, {0x80}, []byte("hello world, not rtp"), bytes.Repeat([]byte{0xff}, 3000)} {
		client.send(br.LocalAddr(A), junk)
	}
	client.send(br.LocalAddr(A), rtpPacket(t, 7, 1, 0, tone(160)))
	if !pbx.quiet(200 * time.Millisecond) {
		t.Fatal("media sent to a peer that holds the call")
	}
	if st := br.Stats()[A]; st.Malformed < 2 || st.PacketsIn != 1 {
		t.Errorf("malformed %d packets in %d", st.Malformed, st.PacketsIn)
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// TestLossAcrossASequenceRestart: a sender that starts its sequence
// numbers again with the same SSRC (a replayed recording) is not counted
// as having lost or gained packets; a real gap still counts.
func TestLossAcrossASequenceRestart(t *testing.T) {
	var r rxStats
	var c counters
	now := time.Now()
	send := func(from, to uint16) {
		for s := from; s != to; s++ {
			r.update(7, s, uint32(s)*160, now, 8000, &c)
		}
	}
	send(100, 336)
	send(100, 336) // the recording again
	if lost := c.lost.Load(); lost != 0 {
		t.Fatalf("lost %d across a restart, want 0", lost)
	}
	send(340, 400) // 4 packets missing
	if lost := c.lost.Load(); lost != 4 {
		t.Fatalf("lost %d after a gap of 4, want 4", lost)
	}
	send(65530, 10) // wraps: a jump, then in order
	if lost := c.lost.Load(); lost != 4 {
		t.Fatalf("lost %d after a restart across the wrap, want 4", lost)
	}
}
