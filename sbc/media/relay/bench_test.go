package relay

import (
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/psigate/psigate/sbc/media/sdes"
)

// window is how many packets the load generator keeps in flight, so that
// no socket buffer overflows and the figure is throughput, not loss.
const window = 64

// pump sends b.N RTP packets from src to dst, each built by next, and
// waits for them at sink; it reports packets per second. A packet lost
// (none should be) releases its window slot after a timeout.
func pump(b *testing.B, src *net.UDPConn, dst netip.AddrPort, sink *net.UDPConn, next func(seq uint16) []byte) {
	b.Helper()
	tokens := make(chan struct{}, window)
	for range window {
		tokens <- struct{}{}
	}
	var lost int
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for got := 0; got+lost < b.N; got++ {
			sink.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if _, _, err := sink.ReadFromUDPAddrPort(buf); err != nil {
				lost += window // the window's packets are gone; refill it
				got--
				for range window {
					tokens <- struct{}{}
				}
				continue
			}
			tokens <- struct{}{}
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		<-tokens
		if _, err := src.WriteToUDPAddrPort(next(uint16(i)), dst); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pps")
	if lost > 0 {
		b.ReportMetric(float64(lost), "lost")
	}
}

func benchEngine(b *testing.B) *Engine {
	e, err := New(Config{Drain: -1, Realms: []RealmPorts{
		{Name: "access", Bind: loopback, Min: 36000, Max: 36999},
		{Name: "core", Bind: loopback, Min: 37000, Max: 37999},
	}})
	if err != nil {
		b.Fatal(err)
	}
	return e
}

func udp(b *testing.B) *net.UDPConn {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	c.SetReadBuffer(4 << 20)
	c.SetWriteBuffer(4 << 20)
	b.Cleanup(func() { c.Close() })
	return c
}

func benchKey(b *testing.B) *sdes.Crypto {
	c, err := sdes.New(1, sdes.AES128SHA1_80)
	if err != nil {
		b.Fatal(err)
	}
	return &c
}

// packet160 is a 20 ms G.711 packet.
func packet160(seq uint16) []byte {
	p := make([]byte, 12+160)
	p[0], p[1] = 0x80, 8
	p[11] = 42
	setSeq(p, seq)
	return p
}

// setSeq sets an RTP packet's sequence number and a timestamp 20 ms per
// packet.
func setSeq(p []byte, seq uint16) {
	p[2], p[3] = byte(seq>>8), byte(seq)
	ts := uint32(seq) * 160
	p[4], p[5], p[6], p[7] = byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
}

// BenchmarkRelayRTPToSRTP: the PBX's plain RTP in, SRTP out to the client.
func BenchmarkRelayRTPToSRTP(b *testing.B) {
	e := benchEngine(b)
	br, err := e.NewBridge("access", "core", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	client, pbx := udp(b), udp(b)
	br.Update(A, Params{Remote: client.LocalAddr().(*net.UDPAddr).AddrPort(), Recv: benchKey(b), Send: benchKey(b), SendTo: true, Receive: true, ClockRate: 8000})
	br.Update(B, Params{Remote: pbx.LocalAddr().(*net.UDPAddr).AddrPort(), SendTo: true, Receive: true, ClockRate: 8000})
	br.Start()
	pkt := packet160(0)
	pump(b, pbx, br.LocalAddr(B), client, func(seq uint16) []byte {
		setSeq(pkt, seq)
		return pkt
	})
}

// BenchmarkRelaySRTPToRTP: the client's SRTP in, plain RTP out to the PBX.
// The generator encrypts each packet, which the reference run does not.
func BenchmarkRelaySRTPToRTP(b *testing.B) {
	e := benchEngine(b)
	br, err := e.NewBridge("access", "core", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	client, pbx := udp(b), udp(b)
	clientKey := benchKey(b)
	br.Update(A, Params{Remote: client.LocalAddr().(*net.UDPAddr).AddrPort(), Recv: clientKey, Send: benchKey(b), SendTo: true, Receive: true, ClockRate: 8000})
	br.Update(B, Params{Remote: pbx.LocalAddr().(*net.UDPAddr).AddrPort(), SendTo: true, Receive: true, ClockRate: 8000})
	br.Start()
	enc, err := clientKey.Context()
	if err != nil {
		b.Fatal(err)
	}
	out := make([]byte, 0, 256)
	plain := packet160(0)
	var hdr rtp.Header
	pump(b, client, br.LocalAddr(A), pbx, func(seq uint16) []byte {
		setSeq(plain, seq)
		sealed, err := enc.EncryptRTP(out[:0], plain, &hdr)
		if err != nil {
			b.Fatal(err)
		}
		return sealed
	})
}

// rawRelay is the reference: one goroutine, one ReadFrom and one WriteTo
// per packet, nothing else.
func rawRelay(b *testing.B, to netip.AddrPort) (in netip.AddrPort, stop func()) {
	c := udp(b)
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort(buf[:n], to)
		}
	})
	return c.LocalAddr().(*net.UDPAddr).AddrPort(), func() { c.Close(); wg.Wait() }
}

func benchRaw(b *testing.B) {
	src, sink := udp(b), udp(b)
	in, stop := rawRelay(b, sink.LocalAddr().(*net.UDPAddr).AddrPort())
	defer stop()
	pkt := packet160(0)
	pump(b, src, in, sink, func(seq uint16) []byte {
		setSeq(pkt, seq)
		return pkt
	})
}

// The references of the two directions: the same raw relay, measured
// next to each.
func BenchmarkRelayRTPToSRTPReference(b *testing.B) { benchRaw(b) }
func BenchmarkRelaySRTPToRTPReference(b *testing.B) { benchRaw(b) }

// BenchmarkMemoryPerCall opens 200 bridges with SRTP on one leg and
// reports the heap and stack they hold.
func BenchmarkMemoryPerCall(b *testing.B) {
	const calls = 200
	e := benchEngine(b)
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		bridges := make([]*Bridge, 0, calls)
		for range calls {
			br, err := e.NewBridge("access", "core", nil)
			if err != nil {
				b.Fatal(err)
			}
			br.Update(A, Params{Recv: benchKey(b), Send: benchKey(b), SendTo: true, Receive: true})
			br.Update(B, Params{SendTo: true, Receive: true})
			br.Start()
			bridges = append(bridges, br)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		used := (after.HeapInuse + after.StackInuse) - (before.HeapInuse + before.StackInuse)
		b.ReportMetric(float64(used)/calls, "bytes/call")
		for _, br := range bridges {
			br.Close()
		}
	}
}
