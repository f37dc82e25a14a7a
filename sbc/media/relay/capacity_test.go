package relay

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/psigate/psigate/sbc/media/sdes"
	"golang.org/x/net/ipv4"
)

// The call capacity benchmark runs the relay and the load generator as
// two processes of this test binary, each pinned to its own core
// (taskset), the relay with GOMAXPROCS=1: what it measures is what one
// core of the relay carries.

const capacityModeEnv = "PSIGATE_RELAY_CAPACITY_MODE"

// capacityRequest is what the orchestrating benchmark tells a child.
type capacityRequest struct {
	Calls  int      `json:"calls"`
	Client string   `json:"client"` // generator's client-side socket
	PBX    string   `json:"pbx"`    // generator's PBX-side socket
	Key    string   `json:"key"`    // the clients' SRTP key (a=crypto value)
	RelayA []uint16 `json:"relayA"` // relay ports, for the generator
	RelayB []uint16 `json:"relayB"`
	Secs   float64  `json:"secs"`
}

// capacityResult is what the generator measured.
type capacityResult struct {
	Sent, Received uint64
	P50, P99, Max  time.Duration
}

// TestCapacityChild is the child process side; it does nothing in a
// normal test run.
func TestCapacityChild(t *testing.T) {
	switch os.Getenv(capacityModeEnv) {
	case "relay":
		relayChild()
		return
	case "generator":
		generatorChild()
	default:
		t.Skip("runs only as a child of BenchmarkCallCapacity")
	}
	os.Exit(0)
}

// relayChild builds bridges on request: one JSON request per line in,
// one JSON list of ports out; an empty line closes them.
func relayChild() {
	if path := os.Getenv("PSIGATE_RELAY_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fail(err)
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	e, err := New(Config{Drain: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Realms: []RealmPorts{
		{Name: "access", Bind: loopback, Min: 20000, Max: 29999},
		{Name: "core", Bind: loopback, Min: 30000, Max: 39999},
	}})
	if err != nil {
		fail(err)
	}
	in := bufio.NewScanner(os.Stdin)
	var bridges []*Bridge
	var closers []func()
	for in.Scan() {
		if in.Text() == "" {
			for _, br := range bridges {
				br.Close()
			}
			for _, c := range closers {
				c()
			}
			bridges, closers = bridges[:0], closers[:0]
			fmt.Println("{}")
			continue
		}
		var req capacityRequest
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			fail(err)
		}
		if os.Getenv("PSIGATE_RELAY_RAW") == "1" {
			closers = append(closers, rawCalls(req)...)
			continue
		}
		clientKey, err := sdes.Parse(req.Key)
		if err != nil {
			fail(err)
		}
		out := capacityRequest{}
		for range req.Calls {
			br, err := e.NewBridge("access", "core", nil)
			if err != nil {
				fail(err)
			}
			send, _ := sdes.New(1, sdes.AES128SHA1_80)
			br.Update(A, Params{Remote: netip.MustParseAddrPort(req.Client), Recv: &clientKey, Send: &send, SendTo: true, Receive: true, ClockRate: 8000})
			br.Update(B, Params{Remote: netip.MustParseAddrPort(req.PBX), SendTo: true, Receive: true, ClockRate: 8000})
			br.Start()
			bridges = append(bridges, br)
			out.RelayA = append(out.RelayA, br.LocalAddr(A).Port())
			out.RelayB = append(out.RelayB, br.LocalAddr(B).Port())
		}
		b, _ := json.Marshal(out)
		fmt.Println(string(b))
	}
}

// rawCalls is the reference relay: per call two sockets, each with a
// goroutine doing one ReadFrom and one WriteTo per packet, nothing else.
// It prints the ports like the real relay and returns the closers.
func rawCalls(req capacityRequest) []func() {
	client, pbx := netip.MustParseAddrPort(req.Client), netip.MustParseAddrPort(req.PBX)
	var out capacityRequest
	var closers []func()
	for range req.Calls {
		a, errA := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		b, errB := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if errA != nil || errB != nil {
			fail(fmt.Errorf("raw relay sockets: %v %v", errA, errB))
		}
		forward := func(in, outConn *net.UDPConn, to netip.AddrPort) {
			buf := make([]byte, 1500)
			for {
				n, _, err := in.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				outConn.WriteToUDPAddrPort(buf[:n], to)
			}
		}
		go forward(a, b, pbx)
		go forward(b, a, client)
		out.RelayA = append(out.RelayA, uint16(a.LocalAddr().(*net.UDPAddr).Port))
		out.RelayB = append(out.RelayB, uint16(b.LocalAddr().(*net.UDPAddr).Port))
		closers = append(closers, func() { a.Close(); b.Close() })
	}
	j, _ := json.Marshal(out)
	fmt.Println(string(j))
	return closers
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "capacity child:", err)
	os.Exit(3)
}

// generatorChild: the first request line gives its sockets' job; it
// prints its two socket addresses, waits for the relay ports, runs the
// load and prints the result.
func generatorChild() {
	client, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	pbx, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	for _, c := range []*net.UDPConn{client, pbx} {
		c.SetReadBuffer(8 << 20)
		c.SetWriteBuffer(8 << 20)
	}
	addrs, _ := json.Marshal(capacityRequest{Client: client.LocalAddr().String(), PBX: pbx.LocalAddr().String()})
	fmt.Println(string(addrs))
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	for in.Scan() {
		var req capacityRequest
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			fail(err)
		}
		res := generate(client, pbx, req)
		b, _ := json.Marshal(res)
		fmt.Println(string(b))
	}
}

// warmupSeq: the first second of every step (stacks growing, first
// latches) is sent but not measured.
const warmupSeq = 50

// histogram of latencies in 10 µs buckets up to 100 ms.
type histogram struct{ buckets [10001]atomic.Uint64 }

func (h *histogram) add(d time.Duration) {
	i := min(int(d/(10*time.Microsecond)), len(h.buckets)-1)
	h.buckets[max(i, 0)].Add(1)
}

func (h *histogram) quantile(q float64, total uint64) time.Duration {
	want := uint64(q * float64(total))
	var seen uint64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen > want {
			return time.Duration(i+1) * 10 * time.Microsecond
		}
	}
	return 100 * time.Millisecond
}

// generate sends 50 packets per second each way for every call, spread
// evenly over each 20 ms, and measures the relay's delivery.
func generate(client, pbx *net.UDPConn, req capacityRequest) capacityResult {
	n := req.Calls
	key, _ := sdes.Parse(req.Key)
	enc, _ := key.Context()
	sentAt := make([][2][256]atomic.Int64, n) // per call, per direction, by sequence number
	callOf := map[uint16]int{}
	for i := range n {
		callOf[req.RelayA[i]], callOf[req.RelayB[i]] = i, i
	}
	var hist histogram
	var received, sent atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for dir, c := range []*net.UDPConn{client, pbx} {
		wg.Go(func() { receive(ipv4.NewPacketConn(c), stop, callOf, sentAt, 1-dir, &hist, &received) })
	}
	// Buffers and addresses are made once; each millisecond slot sends the
	// packets of the calls whose 20 ms phase it is, catching up on slots
	// the ticker skipped.
	plain := make([][]byte, n)
	sealed := make([][]byte, n)
	upAddr := make([]*net.UDPAddr, n)
	downAddr := make([]*net.UDPAddr, n)
	for i := range n {
		p := make([]byte, 12+160)
		p[0], p[1] = 0x80, 8
		p[8], p[9], p[10], p[11] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		plain[i], sealed[i] = p, make([]byte, 0, 256)
		upAddr[i] = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(req.RelayA[i])}
		downAddr[i] = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(req.RelayB[i])}
	}
	up := make([]ipv4.Message, 0, n/20+1)
	down := make([]ipv4.Message, 0, n/20+1)
	var hdr rtp.Header
	cw, pw := ipv4.NewPacketConn(client), ipv4.NewPacketConn(pbx)
	ticker := time.NewTicker(time.Millisecond)
	start := time.Now()
	total := int(req.Secs*1000) + warmupSeq*20
	for slot := 0; slot < total; {
		<-ticker.C
		for due := int(time.Since(start) / time.Millisecond); slot <= due && slot < total; slot++ {
			seq := uint16(slot / 20)
			up, down = up[:0], down[:0]
			for i := slot % 20; i < n; i += 20 {
				setSeq(plain[i], seq)
				var err error
				if sealed[i], err = enc.EncryptRTP(sealed[i][:0], plain[i], &hdr); err != nil {
					fail(err)
				}
				now := time.Now().UnixNano()
				sentAt[i][0][seq&0xff].Store(now)
				sentAt[i][1][seq&0xff].Store(now)
				up = append(up, ipv4.Message{Buffers: [][]byte{sealed[i]}, Addr: upAddr[i]})
				down = append(down, ipv4.Message{Buffers: [][]byte{plain[i]}, Addr: downAddr[i]})
			}
			k := writeAll(cw, up) + writeAll(pw, down)
			if seq >= warmupSeq {
				sent.Add(uint64(k))
			}
		}
	}
	ticker.Stop()
	time.Sleep(300 * time.Millisecond) // the last packets' flight; then count
	close(stop)
	client.SetReadDeadline(time.Now())
	pbx.SetReadDeadline(time.Now())
	wg.Wait()
	client.SetReadDeadline(time.Time{})
	pbx.SetReadDeadline(time.Time{})
	r := received.Load()
	return capacityResult{Sent: sent.Load(), Received: r, P50: hist.quantile(0.5, r), P99: hist.quantile(0.99, r), Max: hist.quantile(1, r)}
}

func writeAll(c *ipv4.PacketConn, msgs []ipv4.Message) int {
	done := 0
	for done < len(msgs) {
		k, err := c.WriteBatch(msgs[done:], 0)
		if err != nil {
			return done
		}
		done += k
	}
	return done
}

// receive counts packets arriving from the relay and their latency: the
// relay's source port names the call, the sequence number the send time.
func receive(c *ipv4.PacketConn, stop <-chan struct{}, callOf map[uint16]int, sentAt [][2][256]atomic.Int64, dir int, hist *histogram, received *atomic.Uint64) {
	msgs := make([]ipv4.Message, 64)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 1500)}
	}
	for {
		k, err := c.ReadBatch(msgs, 0)
		if err != nil {
			select {
			case <-stop:
				return
			default:
				continue
			}
		}
		now := time.Now().UnixNano()
		for _, m := range msgs[:k] {
			b := m.Buffers[0][:m.N]
			call, ok := callOf[uint16(m.Addr.(*net.UDPAddr).Port)]
			if !ok || len(b) < 12 {
				continue
			}
			seq := uint16(b[2])<<8 | uint16(b[3])
			if seq < warmupSeq {
				continue
			}
			hist.add(time.Duration(now - sentAt[call][dir][seq&0xff].Load()))
			received.Add(1)
		}
	}
}

// child starts this test binary as a child in a mode, pinned to cpu.
func child(b *testing.B, mode string, cpu int, env ...string) (io.Writer, *json.Encoder, *json.Decoder) {
	args := []string{os.Args[0], "-test.run=^TestCapacityChild$", "-test.count=1"}
	name := args[0]
	if path, err := exec.LookPath("taskset"); err == nil {
		name, args = path, append([]string{"-c", fmt.Sprint(cpu)}, args...)
	} else {
		args = args[1:]
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(append(os.Environ(), capacityModeEnv+"="+mode), env...)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close() // the child ends on end of input
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return stdin, json.NewEncoder(stdin), json.NewDecoder(stdout)
}

// relayProcs is the relay child's GOMAXPROCS on its one core: with a
// single P the runtime polls the network only every 10 ms while busy
// (sysmon), which shows as latency; a few Ps on the same core let an idle
// one poll at once.
const relayProcs = "GOMAXPROCS=4"

// capacity steps the number of calls up until the relay loses a packet
// or its p99 latency reaches 5 ms, and returns the last good step.
func capacity(b *testing.B, raw bool) (int, time.Duration) {
	env := []string{relayProcs}
	if raw {
		env = append(env, "PSIGATE_RELAY_RAW=1")
	}
	relayPipe, relayIn, relayOut := child(b, "relay", 0, env...)
	_, genIn, genOut := child(b, "generator", 1, "GOMAXPROCS=2")
	var addrs capacityRequest
	if err := genOut.Decode(&addrs); err != nil {
		b.Fatal(err)
	}
	key, _ := sdes.New(1, sdes.AES128SHA1_80)
	step := func(calls int) (bool, time.Duration) {
		req := capacityRequest{Calls: calls, Client: addrs.Client, PBX: addrs.PBX, Key: key.String()}
		if err := relayIn.Encode(req); err != nil {
			b.Fatal(err)
		}
		var ports capacityRequest
		if err := relayOut.Decode(&ports); err != nil {
			b.Fatal(err)
		}
		req.RelayA, req.RelayB, req.Secs = ports.RelayA, ports.RelayB, 3
		if err := genIn.Encode(req); err != nil {
			b.Fatal(err)
		}
		var res capacityResult
		if err := genOut.Decode(&res); err != nil {
			b.Fatal(err)
		}
		b.Logf("raw=%v %d calls: sent %d received %d, latency p50 %s p99 %s", raw, calls, res.Sent, res.Received, res.P50, res.P99)
		fmt.Fprintln(relayPipe) // an empty line closes the calls
		var closed struct{}
		if err := relayOut.Decode(&closed); err != nil {
			b.Fatal(err)
		}
		return res.Received >= res.Sent && res.P99 < 5*time.Millisecond, res.P99
	}
	// Coarse steps of 250 calls, then halve the gap between the last good
	// and the first bad step down to 50 calls.
	best, bestP99, bad := 0, time.Duration(0), 0
	for calls := 250; calls <= 4000; calls += 250 {
		ok, p99 := step(calls)
		if !ok {
			bad = calls
			break
		}
		best, bestP99 = calls, p99
	}
	for bad-best > 50 {
		mid := (best + bad) / 2
		if ok, p99 := step(mid); ok {
			best, bestP99 = mid, p99
		} else {
			bad = mid
		}
	}
	return best, bestP99
}

// BenchmarkCallCapacity finds how many concurrent SRTP<->RTP calls (20 ms
// G.711, 50 packets per second each way) one core of the relay carries
// with no loss and a p99 latency under 5 ms. Run it with -benchtime 1x.
func BenchmarkCallCapacity(b *testing.B) {
	calls, p99 := capacity(b, false)
	b.ReportMetric(float64(calls), "calls")
	b.ReportMetric(float64(p99.Microseconds()), "p99-us")
}

// BenchmarkCallCapacityReference is the same with the raw relay (plain
// RTP both ways, no checks), measured in the same run.
func BenchmarkCallCapacityReference(b *testing.B) {
	calls, p99 := capacity(b, true)
	b.ReportMetric(float64(calls), "calls")
	b.ReportMetric(float64(p99.Microseconds()), "p99-us")
}
