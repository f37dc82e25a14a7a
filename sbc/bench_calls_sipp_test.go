package sbc

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/psigate/psigate/sbc/sbctest"
)

// SIPp as caller and callee of the call benchmarks (bench_calls_test.go),
// the SBC they run against, and what they read of the kernel's
// accounting.

const (
	callerScenario = "testdata/sipp/call-uac.xml"
	calleeScenario = "testdata/sipp/call-uas.xml"
)

// sippBuffer is the socket buffer size of SIPp's caller and callee
// (-buff_size), in bytes: SIPp's default of 64 kB overflows when the
// shared machine does not schedule SIPp for some milliseconds, and a
// 200 lost on its way to the caller over UDP is not retransmitted by a
// callee over TCP. The kernel caps it at net.core.rmem_max.
const sippBuffer = "4194304"

// callerRun is one run of SIPp's caller.
type callerRun struct {
	Target netip.AddrPort
	// Rate is the offered calls a second (-r); Calls how many (-m).
	Rate, Calls int
	// Limit is the most calls open at once (-l); Rate when 0, a second
	// of calls.
	Limit int
	// Hold is how long each call stays up after the ACK (-d).
	Hold time.Duration
	// Timeout bounds the run (-timeout): calls still open then count as
	// neither successful nor failed.
	Timeout time.Duration
}

// startCaller starts SIPp's caller over UDP from a socket of its own.
func startCaller(tb testing.TB, bin string, o callerRun) *sippProc {
	tb.Helper()
	scenario, err := filepath.Abs(callerScenario)
	if err != nil {
		tb.Fatal(err)
	}
	if o.Limit == 0 {
		o.Limit = o.Rate
	}
	return runSIPp(tb, bin, []string{
		o.Target.String(),
		"-sf", scenario,
		"-s", "2002",
		"-t", "u1",
		"-i", "127.0.0.1",
		"-p", strconv.Itoa(sippFreePort(tb)),
		"-m", strconv.Itoa(o.Calls),
		"-r", strconv.Itoa(o.Rate),
		"-rp", "1000",
		"-l", strconv.Itoa(o.Limit),
		"-d", strconv.FormatInt(o.Hold.Milliseconds(), 10),
		// A call waiting 5 s for its next message fails.
		"-recv_timeout", "5000",
		"-buff_size", sippBuffer,
		"-timeout", strconv.Itoa(int(o.Timeout/time.Second)) + "s",
		"-timeout_error",
	}, o.Timeout)
}

// sippCallee is SIPp's callee, answering every call.
type sippCallee struct {
	addr netip.AddrPort
	proc *sippProc
}

// startCallee starts SIPp's callee on a free loopback port over
// transport ("udp" or "tcp") and waits until it answers OPTIONS. It runs
// until the test ends or it is killed.
func startCallee(tb testing.TB, bin, transport string) *sippCallee {
	tb.Helper()
	scenario, err := filepath.Abs(calleeScenario)
	if err != nil {
		tb.Fatal(err)
	}
	port := sippFreePort(tb)
	args := []string{"-sf", scenario, "-i", "127.0.0.1", "-p", strconv.Itoa(port), "-buff_size", sippBuffer}
	if transport == "tcp" {
		// Connections from the SBC or Kamailio, and probes; below the
		// open file limit (see sippRaiseFiles).
		args = append(args, "-t", "t1", "-max_socket", "256")
	} else {
		args = append(args, "-t", "u1")
	}
	const life = 20 * time.Minute // past make bench-calls' -timeout
	c := &sippCallee{
		addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)),
		proc: runSIPp(tb, bin, append(args, "-timeout", strconv.Itoa(int(life/time.Second))+"s"), life),
	}
	sbctest.WaitOptions(tb, transport, c.addr, 10*time.Second)
	return c
}

// cpu is the callee's processor time so far.
func (c *sippCallee) cpu() time.Duration { return procCPU(c.proc.cmd.Process.Pid) }

// finish waits for SIPp to exit and returns its statistics, whatever its
// exit status (it is not 0 when calls failed or the run timed out); the
// error is for statistics that cannot be read.
func (p *sippProc) finish() (sippStats, error) {
	<-p.done
	st, err := p.stats()
	if err != nil {
		return st, fmt.Errorf("%w (sipp: %v)", err, p.err)
	}
	st.CPU = p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
	return st, nil
}

// failures lists SIPp's non-zero cumulative failure counters from the
// last statistics row, as ", MaxUDPRetrans 3, ...": empty without
// failures.
func (p *sippProc) failures() string {
	header, rows := p.statRows()
	if len(rows) == 0 {
		return ""
	}
	last := rows[len(rows)-1]
	var b strings.Builder
	for i, h := range header {
		name, ok := strings.CutPrefix(h, "Failed")
		if !ok || !strings.HasSuffix(name, "(C)") || name == "Call(C)" || i >= len(last) {
			continue
		}
		if n, _ := strconv.Atoi(last[i]); n > 0 {
			fmt.Fprintf(&b, ", %s %d", strings.TrimSuffix(name, "(C)"), n)
		}
	}
	return b.String()
}

// created is how long SIPp took to start all of its calls: from its
// start to the first statistics row (written every second and at its
// end, -fd 1) that counts calls created, to within a second; ok is
// false when no row does.
func (p *sippProc) created(calls int) (d time.Duration, ok bool) {
	header, rows := p.statRows()
	col := func(row []string, name string) string {
		for i, h := range header {
			if h == name && i < len(row) {
				return row[i]
			}
		}
		return ""
	}
	// Times are "date<TAB>time<TAB>epoch.micros".
	epoch := func(v string) float64 {
		f := strings.Split(v, "\t")
		e, _ := strconv.ParseFloat(f[len(f)-1], 64)
		return e
	}
	for _, row := range rows {
		if n, _ := strconv.Atoi(col(row, "OutgoingCall(C)")); n >= calls {
			secs := epoch(col(row, "CurrentTime")) - epoch(col(row, "StartTime"))
			return time.Duration(secs * float64(time.Second)), true
		}
	}
	return 0, false
}

// statRows reads SIPp's statistics file (-trace_stat): its header and
// its rows, fields separated by ';'.
func (p *sippProc) statRows() (header []string, rows [][]string) {
	f, err := os.Open(filepath.Join(p.dir, "stats.csv"))
	if err != nil {
		return nil, nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if fields := strings.Split(sc.Text(), ";"); header == nil {
			header = fields
		} else if len(fields) >= len(header)-1 {
			rows = append(rows, fields)
		}
	}
	return header, rows
}

// callSBC is an SBC under test in this process.
type callSBC struct {
	svc *Service
	// access is the access realm's address, for the caller.
	access netip.AddrPort
	// core is the core realm's port, for UDP and TCP.
	core    uint16
	logPath string
	// stop ends the SBC; it may be called more than once.
	stop func()
}

// The SBC under test has a loopback address of its own per realm, so
// each realm's media range can be wide without meeting the other's or
// the ports of programs on 127.0.0.1. A call holds an RTP/RTCP pair on
// each realm while it lasts and for the pool's drain period (2 s) after:
// at r calls a second some 2r pairs per realm are taken, and 11,000
// pairs carry some 5,000 calls a second, more than SIPp generates here.
// A range of the portal's default size (10,000 ports) would run out near
// 2,400 calls a second and answer 503.
var (
	callAccessAddr = netip.AddrFrom4([4]byte{127, 0, 0, 2})
	callCoreAddr   = netip.AddrFrom4([4]byte{127, 0, 0, 3})
)

const callMediaMin, callMediaMax = 10000, 31999

// startCallSBC runs an SBC whose one PBX node is the callee over
// transport: access realm on UDP at callAccessAddr, core realm on UDP and
// TCP on one port at callCoreAddr, both with media ports callMediaMin to
// callMediaMax. Its log, from Info up, goes to a file (logTail).
func startCallSBC(tb testing.TB, callee netip.AddrPort, transport Transport) *callSBC {
	tb.Helper()
	cfg := Default()
	cfg.SIPServer.NodeGroups = []NodeGroup{{Name: "PBX", Nodes: []Node{
		{Name: "sipp", Priority: 1, Address: callee.Addr().String(), Transport: transport, Port: int(callee.Port())},
	}}}
	// SIPp's caller calls without registering first.
	cfg.Calls.OpenToUnregistered = true
	accessPort, core := callFreePort(tb, callAccessAddr), callFreePort(tb, callCoreAddr)
	c := &callSBC{access: netip.AddrPortFrom(callAccessAddr, uint16(accessPort)), core: uint16(core), logPath: filepath.Join(tb.TempDir(), "sbc.log")}
	logFile, err := os.Create(c.logPath)
	if err != nil {
		tb.Fatal(err)
	}
	c.svc = NewService(slog.New(slog.NewTextHandler(logFile, nil)), nil, nil)
	err = c.svc.Apply(context.Background(), Desired{Config: cfg, Realms: []Realm{
		{Name: "access", Role: "access", Bind: callAccessAddr, Advertise: callAccessAddr.String(), UDP: accessPort,
			MediaMin: callMediaMin, MediaMax: callMediaMax},
		{Name: "core", Role: "core", Bind: callCoreAddr, Advertise: callCoreAddr.String(), UDP: core, TCP: core,
			MediaMin: callMediaMin, MediaMax: callMediaMax},
	}})
	if err != nil {
		logFile.Close()
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.svc.Run(ctx); close(done) }()
	var once sync.Once
	c.stop = func() { once.Do(func() { cancel(); <-done; logFile.Close() }) }
	tb.Cleanup(c.stop)
	return c
}

// callFreePort is a port free on addr for both UDP and TCP.
func callFreePort(tb testing.TB, addr netip.Addr) int {
	tb.Helper()
	port, err := sbctest.FreePort(addr)
	if err != nil {
		tb.Fatal(err)
	}
	return port
}

// logTail is the end of the SBC's log, for a failed benchmark.
func (c *callSBC) logTail() string {
	return "--- SBC log " + c.logPath + " (end):\n" + fileTail(c.logPath, 40)
}

// waitNoCalls waits until the SBC has no call in progress.
func waitNoCalls(s *Service, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		n := len(s.Calls())
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d calls still in progress after %v", n, timeout)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// fileTail is the last n lines of a file.
func fileTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

// udpDrops is how many datagrams the kernel has dropped for want of
// receive buffer space: in all (RcvbufErrors in /proc/net/snmp, this
// network namespace) and per local port of the UDP sockets open now
// (/proc/net/udp).
func udpDrops() (total uint64, byPort map[uint16]uint64) {
	byPort = map[uint16]uint64{}
	if data, err := os.ReadFile("/proc/net/snmp"); err == nil {
		var header []string
		for line := range strings.Lines(string(data)) {
			f := strings.Fields(line)
			if len(f) == 0 || f[0] != "Udp:" {
				continue
			}
			if header == nil {
				header = f
				continue
			}
			for i, h := range header {
				if h == "RcvbufErrors" && i < len(f) {
					total, _ = strconv.ParseUint(f[i], 10, 64)
				}
			}
		}
	}
	data, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return total, byPort
	}
	for line := range strings.Lines(string(data)) {
		// sl local_address rem_address st ... drops
		f := strings.Fields(line)
		if len(f) < 13 || !strings.HasSuffix(f[0], ":") {
			continue
		}
		_, hexPort, _ := strings.Cut(f[1], ":")
		port, err1 := strconv.ParseUint(hexPort, 16, 16)
		drops, err2 := strconv.ParseUint(f[len(f)-1], 10, 64)
		if err1 == nil && err2 == nil {
			byPort[uint16(port)] += drops
		}
	}
	return total, byPort
}

// procCPU is the processor time (user and system) of a process so far,
// from /proc; 0 when it cannot be read.
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// "pid (comm) state ...": comm may hold spaces, so fields count from
	// its closing parenthesis; utime and stime are the 14th and 15th.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// residentBytes is the test process's resident memory (VmRSS) after Go
// has returned the memory it does not use to the system; 0 when it
// cannot be read.
func residentBytes() uint64 {
	debug.FreeOSMemory()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}
