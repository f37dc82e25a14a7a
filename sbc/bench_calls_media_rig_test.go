package sbc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/psigate/psigate/sbc/b2bua"
	"github.com/psigate/psigate/sbc/sbctest"
	"golang.org/x/sys/unix"
)

// What the media benchmarks (bench_calls_media_test.go) run: SIPp's
// caller and its callee with the RTP echo, the SBC between them, and
// what they read of the kernel's accounting and of the capture played.

// Media port ranges of the SBC under test, on 127.0.0.1: 1,500 RTP/RTCP
// pairs each, one per call on each realm, for mediaSteps' 1,400 calls.
// They lie below the kernel's ephemeral ports (32768-60999 by default),
// which SIPp's and the SBC's other sockets get, and apart from SIPp's
// default ports (5060, 6000, 8888) and the ranges other tests of this
// package bind on 127.0.0.1. A port some other program holds is skipped
// by the SBC's pool.
const (
	mediaAccessMin, mediaAccessMax = 10000, 12999
	mediaCoreMin, mediaCoreMax     = 13000, 15999
)

// mediaRig is SIPp's callee and, for the SBC's benchmarks, the SBC in
// front of it.
type mediaRig struct {
	name string
	bin  string
	// target takes the caller's INVITEs.
	target netip.AddrPort
	callee *mediaCallee
	sbc    *mediaSBC // nil: the caller calls the callee directly
	// packets is the number of RTP packets of one play of the capture,
	// length the time from its first to its last.
	packets int
	length  time.Duration
}

// startMediaRig starts the callee and, withSBC, an SBC in front of it.
func startMediaRig(tb testing.TB, withSBC bool) *mediaRig {
	tb.Helper()
	bin := sbctest.FindPeer(tb, "sipp", "sip-tester")
	packets, length, err := readCapture(mediaCapture)
	if errors.Is(err, os.ErrNotExist) {
		sbctest.PeerMissing(tb, fmt.Sprintf("%s not found; install the Debian package sip-tester", mediaCapture))
	}
	if err != nil {
		tb.Fatal(err)
	}
	if length >= mediaPlayGap {
		tb.Fatalf("%s lasts %v: its two plays in %s, %v apart, would overlap", mediaCapture, length, mediaCallerScenario, mediaPlayGap)
	}
	rig := &mediaRig{name: "direct", bin: bin, packets: packets, length: length, callee: startMediaCallee(tb, bin)}
	rig.target = rig.callee.addr
	if withSBC {
		rig.sbc = startMediaSBC(tb, rig.callee.addr)
		rig.name, rig.target = "SBC", rig.sbc.access
	}
	return rig
}

// logs is the end of the callee's and the SBC's logs.
func (r *mediaRig) logs() string {
	s := r.callee.proc.output()
	if r.sbc != nil {
		s += "--- SBC log " + r.sbc.logPath + " (end):\n" + fileTail(r.sbc.logPath, 40)
	}
	return s
}

// mediaCallee is SIPp's callee with its RTP echo socket.
type mediaCallee struct {
	addr  netip.AddrPort
	media uint16
	proc  *sippProc
}

// startMediaCallee starts SIPp's callee over UDP on a free loopback port
// and waits until it answers OPTIONS. It runs until the test ends.
func startMediaCallee(tb testing.TB, bin string) *mediaCallee {
	tb.Helper()
	scenario, err := filepath.Abs(mediaCalleeScenario)
	if err != nil {
		tb.Fatal(err)
	}
	port, media := sippFreePort(tb), sippMediaPort(tb)
	const life = 20 * time.Minute // past any go test -timeout of these benchmarks
	c := &mediaCallee{addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), media: uint16(media)}
	name, args := bin, []string{
		"-sf", scenario, "-t", "u1", "-i", "127.0.0.1", "-p", strconv.Itoa(port),
		"-mi", "127.0.0.1", "-mp", strconv.Itoa(media), "-rtp_echo",
		"-timeout", strconv.Itoa(int(life/time.Second)) + "s",
	}
	// One thread echoes every call's packets: at a higher priority it
	// is not the first to wait when the machine's CPUs run short. nice
	// runs SIPp at the normal one when the user may not raise it.
	if nice, err := exec.LookPath("nice"); err == nil {
		name, args = nice, append([]string{"-n", strconv.Itoa(mediaEchoNice), bin}, args...)
	}
	c.proc = runSIPp(tb, name, args, life)
	sbctest.WaitOptions(tb, "udp", c.addr, 10*time.Second)
	if err := c.widenEcho(mediaEchoBuffer); err != nil {
		mediaProgress("the callee's echo socket keeps the default receive buffer (%v): bursts of the SBC's relayed packets may overflow it", err)
	}
	return c
}

// sippMediaPort is an even port free on 127.0.0.1 with the one two above
// it free too, for SIPp's -mp: SIPp binds both (audio and video).
func sippMediaPort(tb testing.TB) int {
	tb.Helper()
	free := func(port int) bool {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	for range 50 {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			tb.Fatal(err)
		}
		port := c.LocalAddr().(*net.UDPAddr).Port &^ 1
		c.Close()
		if free(port) && free(port+2) {
			return port
		}
	}
	tb.Fatal("no pair of UDP ports free on 127.0.0.1 for SIPp's media")
	return 0
}

// mediaSBC is the SBC under test, in this process.
type mediaSBC struct {
	svc     *Service
	access  netip.AddrPort
	logPath string
	// records gets every ended call's record.
	records chan b2bua.Record
}

// startMediaSBC runs an SBC on 127.0.0.1 whose one PBX node is the
// callee over UDP: access and core realms on UDP, with the media port
// ranges above. Its log, from Info up, goes to a file.
func startMediaSBC(tb testing.TB, callee netip.AddrPort) *mediaSBC {
	tb.Helper()
	cfg := Default()
	cfg.SIPServer.NodeGroups = []NodeGroup{{Name: "PBX", Nodes: []Node{
		{Name: "sipp", Priority: 1, Address: callee.Addr().String(), Transport: TransportUDP, Port: int(callee.Port())},
	}}}
	cfg.Calls.OpenToUnregistered = true // SIPp's caller does not register
	lo := netip.MustParseAddr("127.0.0.1")
	accessPort, core := sippFreePort(tb), sippFreePort(tb)
	for core == accessPort {
		core = sippFreePort(tb)
	}
	s := &mediaSBC{access: netip.AddrPortFrom(lo, uint16(accessPort)), logPath: filepath.Join(tb.TempDir(), "sbc.log"),
		records: make(chan b2bua.Record, 2*mediaSteps()[len(mediaSteps())-1])}
	logFile, err := os.Create(s.logPath)
	if err != nil {
		tb.Fatal(err)
	}
	s.svc = NewService(slog.New(slog.NewTextHandler(logFile, nil)), nil, nil)
	s.svc.OnCallEnd(func(r b2bua.Record) {
		select {
		case s.records <- r:
		default: // more than a step's calls: the step fails on their count
		}
	})
	err = s.svc.Apply(context.Background(), Desired{Config: cfg, Realms: []Realm{
		{Name: "access", Role: "access", Bind: lo, Advertise: lo.String(), UDP: accessPort, MediaMin: mediaAccessMin, MediaMax: mediaAccessMax},
		{Name: "core", Role: "core", Bind: lo, Advertise: lo.String(), UDP: core, MediaMin: mediaCoreMin, MediaMax: mediaCoreMax},
	}})
	if err != nil {
		logFile.Close()
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.svc.Run(ctx); close(done) }()
	var once sync.Once
	tb.Cleanup(func() { once.Do(func() { cancel(); <-done; logFile.Close() }) })
	return s
}

// settle waits until the SBC has no call and every media port is back
// in its pool, past the drain period.
func (s *mediaSBC) settle(timeout time.Duration) error {
	if err := waitNoCalls(s.svc, timeout); err != nil {
		return err
	}
	e := s.svc.engine.Load()
	deadline := time.Now().Add(timeout)
	for _, realm := range []string{"access", "core"} {
		p := e.Pool(realm)
		for p.Free() < p.Size() {
			if time.Now().After(deadline) {
				return fmt.Errorf("%s media ports: %d of %d free after %v", realm, p.Free(), p.Size(), timeout)
			}
			time.Sleep(50 * time.Millisecond) // polling interval
		}
	}
	return nil
}

// startMediaCaller starts SIPp's caller for n calls at rate against
// target, from a SIP socket and a media socket of its own.
func startMediaCaller(tb testing.TB, bin string, target netip.AddrPort, n, rate int, timeout time.Duration) *sippProc {
	tb.Helper()
	scenario, err := filepath.Abs(mediaCallerScenario)
	if err != nil {
		tb.Fatal(err)
	}
	// The scenario's last pause (-d) runs from the second play's start:
	// the capture, then the quiet tail.
	hold := mediaPlayGap + mediaTail
	return runSIPp(tb, bin, []string{
		target.String(),
		"-sf", scenario, "-s", "2002", "-t", "u1",
		"-i", "127.0.0.1", "-p", strconv.Itoa(sippFreePort(tb)),
		"-mi", "127.0.0.1", "-mp", strconv.Itoa(sippMediaPort(tb)),
		"-m", strconv.Itoa(n), "-l", strconv.Itoa(n),
		"-r", strconv.Itoa(rate), "-rp", "1000",
		"-d", strconv.FormatInt(hold.Milliseconds(), 10),
		// Call-IDs name this SIPp (%p, its pid): see addRecords.
		"-cid_str", "%u-%p@%s",
		// A call waiting 10 s for its next message fails.
		"-recv_timeout", "10000",
		"-timeout", strconv.Itoa(int(timeout/time.Second)) + "s",
		"-timeout_error",
	}, timeout)
}

// udpSocket is a UDP socket as /proc/net/udp lists it.
type udpSocket struct {
	inode string
	// drops are the datagrams the kernel dropped for it, mostly for a
	// full receive buffer.
	drops uint64
}

// loopbackUDP lists the UDP sockets bound to 127.0.0.1 (this network
// namespace's), by port: others, on other addresses, may have the same
// port.
func loopbackUDP() map[uint16]udpSocket {
	out := map[uint16]udpSocket{}
	data, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return out
	}
	for line := range strings.Lines(string(data)) {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
		f := strings.Fields(line)
		if len(f) < 13 {
			continue
		}
		host, hexPort, _ := strings.Cut(f[1], ":")
		port, err1 := strconv.ParseUint(hexPort, 16, 16)
		drops, err2 := strconv.ParseUint(f[12], 10, 64)
		if host == "0100007F" && err1 == nil && err2 == nil {
			out[uint16(port)] = udpSocket{inode: f[9], drops: drops}
		}
	}
	return out
}

// widenEcho gives the callee's echo socket a receive buffer of n bytes.
// It is one socket for all calls, with the kernel's default buffer
// (SIPp's -rtp_buffsize does not reach it): the SBC's relay loops, one
// per call, send it their packets in bursts whenever they have waited
// for a CPU, and a burst of some hundred calls overflows the default
// 208 kB while the SBC's own sockets, one per call leg, drop nothing. A
// PBX's phones have a socket each. The socket is taken from SIPp for
// the call with pidfd_getfd (Linux 5.6; SIPp is this process's child)
// and the buffer set with SO_RCVBUFFORCE, or SO_RCVBUF up to the
// kernel's rmem_max.
func (c *mediaCallee) widenEcho(n int) error {
	so, ok := loopbackUDP()[c.media]
	if !ok {
		return fmt.Errorf("no socket on 127.0.0.1:%d", c.media)
	}
	pid := c.proc.cmd.Process.Pid
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if link, _ := os.Readlink(filepath.Join(dir, e.Name())); link != "socket:["+so.inode+"]" {
			continue
		}
		target, _ := strconv.Atoi(e.Name())
		pidfd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			return fmt.Errorf("pidfd_open: %w", err)
		}
		defer unix.Close(pidfd)
		fd, err := unix.PidfdGetfd(pidfd, target, 0)
		if err != nil {
			return fmt.Errorf("pidfd_getfd: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n); err != nil {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, n); err != nil {
				return fmt.Errorf("SO_RCVBUF: %w", err)
			}
		}
		got, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
		mediaProgress("the callee's echo socket 127.0.0.1:%d has a receive buffer of %d bytes (%v)", c.media, got, err)
		return nil
	}
	return fmt.Errorf("SIPp (pid %d) holds no socket of inode %s", pid, so.inode)
}

// cpu is the callee's processor time so far.
func (c *mediaCallee) cpu() time.Duration { return procCPU(c.proc.cmd.Process.Pid) }

// readCapture counts the packets of a classic pcap file (either byte
// order, micro- or nanosecond timestamps) and the time from its first
// packet to its last.
func readCapture(path string) (packets int, length time.Duration, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var hdr [24]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	var order binary.ByteOrder = binary.LittleEndian
	unit := time.Microsecond
	switch binary.LittleEndian.Uint32(hdr[:4]) {
	case 0xa1b2c3d4:
	case 0xa1b23c4d:
		unit = time.Nanosecond
	case 0xd4c3b2a1:
		order = binary.BigEndian
	case 0x4d3cb2a1:
		order, unit = binary.BigEndian, time.Nanosecond
	default:
		return 0, 0, fmt.Errorf("%s: not a pcap file", path)
	}
	var first, last time.Duration
	for {
		var rec [16]byte // seconds, fraction, captured length, original length
		if _, err := io.ReadFull(f, rec[:]); errors.Is(err, io.EOF) {
			return packets, last - first, nil
		} else if err != nil {
			return 0, 0, fmt.Errorf("%s: packet %d: %w", path, packets+1, err)
		}
		at := time.Duration(order.Uint32(rec[0:]))*time.Second + time.Duration(order.Uint32(rec[4:]))*unit
		if packets == 0 {
			first = at
		}
		last = at
		packets++
		if _, err := f.Seek(int64(order.Uint32(rec[8:])), io.SeekCurrent); err != nil {
			return 0, 0, fmt.Errorf("%s: packet %d: %w", path, packets, err)
		}
	}
}
