package sbc

import (
	"bufio"
	"context"
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
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/psigate/psigate/sbc/sbctest"
	"github.com/psigate/psigate/sbc/signal"
)

// SIPp (Debian package sip-tester) is the load generator of the
// registration tests and benchmarks: it runs testdata/sipp/register.xml,
// one registration with digest authentication per call, each call taking
// its user and password from an injection file written by sippUsers.
// Everything stays on loopback. Debian's SIPp is built without TLS, so
// these runs are over UDP and TCP only.

// sippScenario is the registration scenario.
const sippScenario = "testdata/sipp/register.xml"

// sippUser is the name of the i-th user of a range; sippPassword its
// password at Kamailio.
func sippUser(i int) string           { return strconv.Itoa(i) }
func sippPassword(user string) string { return "pw-" + user }

// sippUsers returns the accounts first..first+n-1 for Kamailio and writes
// them as a SIPp injection file, one call per line in order: field0 the
// user, field1 its credentials as SIPp's [authentication] keyword (SIPp
// expands keywords in injected values; Debian's SIPp 3.6 cannot nest
// [field0] inside [authentication] in the scenario).
func sippUsers(tb testing.TB, first, n int) (users map[string]string, inf string) {
	tb.Helper()
	users = make(map[string]string, n)
	var b strings.Builder
	b.WriteString("SEQUENTIAL\n")
	for i := first; i < first+n; i++ {
		u := sippUser(i)
		users[u] = sippPassword(u)
		fmt.Fprintf(&b, "%s;[authentication username=%s password=%s]\n", u, u, users[u])
	}
	inf = filepath.Join(tb.TempDir(), fmt.Sprintf("users-%d-%d.csv", first, n))
	if err := os.WriteFile(inf, []byte(b.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	return users, inf
}

// sippOptions is one SIPp run of the registration scenario.
type sippOptions struct {
	// Target is the registrar: the SBC's access realm or Kamailio.
	Target netip.AddrPort
	// Transport is SIPp's -t: "u1" (UDP, one socket for all calls) or
	// "tn" (TCP, one connection per call).
	Transport string
	// Users is the injection file; Calls (-m) of its lines are used,
	// one per call, so Calls up to its length registers each user once.
	Users string
	Calls int
	// Rate is the number of new calls a second (-r); Limit the most calls
	// open at once (-l), 0 for Calls.
	Rate, Limit int
	// Hold is how long each call stays open after its 200 (-d): with
	// "tn" its connection stays open as long.
	Hold time.Duration
	// Timeout bounds the whole run (-timeout, counted as a failure); the
	// process is killed a little after it if it is still running.
	Timeout time.Duration
}

// sippStats are SIPp's own counters at its exit.
type sippStats struct {
	Created, Successful, Failed int
	// Retransmissions are SIPp's UDP retransmissions (after 500 ms
	// without an answer, doubling): a few of them stretch a short run.
	Retransmissions int
	// Elapsed is from SIPp's start to its last statistics row, written
	// when it exits after the last call, to the microsecond.
	Elapsed time.Duration
	// CPU is the processor time SIPp used (user and system).
	CPU time.Duration
}

// RegPerSecond is the successful registrations a second.
func (s sippStats) RegPerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Successful) / s.Elapsed.Seconds()
}

// sippProc is a running SIPp.
type sippProc struct {
	cmd    *exec.Cmd
	dir    string
	cancel context.CancelFunc
	done   chan struct{}
	err    error // cmd.Wait's, once done is closed
}

// startSIPp starts SIPp with o in its own temporary directory, where it
// writes its screens, errors and statistics. It is stopped when the test
// ends if it is still running.
func startSIPp(tb testing.TB, bin string, o sippOptions) *sippProc {
	tb.Helper()
	scenario, err := filepath.Abs(sippScenario)
	if err != nil {
		tb.Fatal(err)
	}
	if o.Limit == 0 {
		o.Limit = o.Calls
	}
	var extra []string
	if o.Transport == "tn" {
		// One socket per call, and SIPp's own: below the open file limit
		// (SIPp refuses to start when its default 50000 is not).
		extra = append(extra, "-max_socket", strconv.Itoa(o.Limit+16))
		sippRaiseFiles(tb, o.Limit+64)
	}
	args := []string{
		o.Target.String(),
		"-sf", scenario,
		"-inf", o.Users,
		"-t", o.Transport,
		"-i", "127.0.0.1",
		// The digest uri is the Request-URI (SIPp's default is the
		// remote address).
		"-auth_uri", sbctest.KamailioRealm,
		"-p", strconv.Itoa(sippFreePort(tb)),
		"-m", strconv.Itoa(o.Calls),
		"-r", strconv.Itoa(o.Rate),
		"-rp", "1000",
		"-l", strconv.Itoa(o.Limit),
		"-d", strconv.FormatInt(o.Hold.Milliseconds(), 10),
		// A call whose next message does not come within 10 s fails.
		"-recv_timeout", "10000",
		"-timeout", strconv.Itoa(int(o.Timeout/time.Second)) + "s",
		"-timeout_error",
	}
	return runSIPp(tb, bin, append(args, extra...), o.Timeout)
}

// runSIPp starts SIPp with args in its own temporary directory, adding
// the options that write its screens, errors and statistics there (read
// by wait, stats and output). It is killed a little after timeout, and
// when the test ends, if it is still running.
func runSIPp(tb testing.TB, bin string, args []string, timeout time.Duration) *sippProc {
	tb.Helper()
	dir := tb.TempDir()
	args = append(args,
		"-nostdin",
		"-trace_stat", "-stf", filepath.Join(dir, "stats.csv"), "-fd", "1",
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
		"-trace_screen", "-screen_file", filepath.Join(dir, "screen.log"),
	)
	out, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		tb.Fatal(err)
	}
	defer out.Close()
	// A backstop past SIPp's own -timeout.
	ctx, cancel := context.WithTimeout(context.Background(), timeout+15*time.Second)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	// If the test binary dies, SIPp goes too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		cancel()
		tb.Fatalf("starting sipp: %v", err)
	}
	p := &sippProc{cmd: cmd, dir: dir, cancel: cancel, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		cancel()
		close(p.done)
	}()
	tb.Cleanup(p.kill)
	return p
}

// kill ends SIPp if it is still running and waits for it.
func (p *sippProc) kill() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Kill() // our own child, by its pid
		<-p.done
	}
}

// wait waits for SIPp to exit and returns its statistics. It fails the
// test, showing what SIPp printed, when SIPp could not run the scenario
// or its statistics cannot be read; calls that failed are for the caller
// to judge (SIPp then exits 1).
func (p *sippProc) wait(tb testing.TB) sippStats {
	tb.Helper()
	<-p.done
	st, serr := p.stats()
	var exit *exec.ExitError
	switch {
	case p.err == nil:
	case errors.As(p.err, &exit) && exit.ExitCode() == 1 && serr == nil && st.Failed > 0:
		// Some calls failed: SIPp's exit status for it.
	default:
		tb.Fatalf("sipp: %v\n%s", errors.Join(p.err, serr), p.output())
	}
	if serr != nil {
		tb.Fatalf("sipp: %v\n%s", serr, p.output())
	}
	st.CPU = p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
	return st
}

// output is the end of what SIPp wrote, for a failed test's log.
func (p *sippProc) output() string {
	var b strings.Builder
	for _, name := range []string{"stdout.log", "errors.log", "screen.log"} {
		data, err := os.ReadFile(filepath.Join(p.dir, name))
		if err != nil || len(data) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		fmt.Fprintf(&b, "--- sipp %s (end):\n%s\n", name, strings.Join(lines, "\n"))
	}
	return b.String()
}

// stats reads the last row of SIPp's statistics file (-trace_stat):
// fields separated by ';', times as "date<TAB>time<TAB>epoch.micros".
func (p *sippProc) stats() (sippStats, error) {
	f, err := os.Open(filepath.Join(p.dir, "stats.csv"))
	if err != nil {
		return sippStats{}, err
	}
	defer f.Close()
	var header, last []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ";")
		if header == nil {
			header = fields
		} else if len(fields) >= len(header)-1 {
			last = fields
		}
	}
	if err := sc.Err(); err != nil {
		return sippStats{}, err
	}
	if last == nil {
		return sippStats{}, errors.New("no statistics row")
	}
	col := func(name string) (string, error) {
		for i, h := range header {
			if h == name && i < len(last) {
				return last[i], nil
			}
		}
		return "", fmt.Errorf("statistics: no column %s", name)
	}
	count := func(name string) (int, error) {
		v, err := col(name)
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(v)
	}
	epoch := func(name string) (time.Time, error) {
		v, err := col(name)
		if err != nil {
			return time.Time{}, err
		}
		f := strings.Split(v, "\t")
		sec, frac, ok := strings.Cut(f[len(f)-1], ".")
		s, err1 := strconv.ParseInt(sec, 10, 64)
		us, err2 := strconv.ParseInt(frac, 10, 64)
		if !ok || len(frac) != 6 || err1 != nil || err2 != nil {
			return time.Time{}, fmt.Errorf("statistics: %s %q", name, v)
		}
		return time.Unix(s, us*1000), nil
	}
	var st sippStats
	var start, end time.Time
	var errs [6]error
	st.Created, errs[0] = count("TotalCallCreated")
	st.Successful, errs[1] = count("SuccessfulCall(C)")
	st.Failed, errs[2] = count("FailedCall(C)")
	start, errs[3] = epoch("StartTime")
	end, errs[4] = epoch("CurrentTime")
	st.Retransmissions, errs[5] = count("Retransmissions(C)")
	st.Elapsed = end.Sub(start)
	return st, errors.Join(errs[:]...)
}

// sippRaiseFiles lets SIPp, a child of this process, open n files. Go
// raised this process's soft limit to the hard one at its start but
// gives children the original soft limit (often 1024), unless the process
// sets the limit itself, as here.
func sippRaiseFiles(tb testing.TB, n int) {
	tb.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		tb.Fatal(err)
	}
	if rl.Max < uint64(n) {
		tb.Fatalf("the hard limit of open files, %d, is below the %d SIPp needs here (ulimit -Hn)", rl.Max, n)
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		tb.Fatal(err)
	}
}

// sippFreePort is a port free on 127.0.0.1 for both UDP and TCP, for
// SIPp's own socket (it would try 5060 first).
func sippFreePort(tb testing.TB) int {
	tb.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return port
	}
	tb.Fatal("no port free for both UDP and TCP on 127.0.0.1")
	return 0
}

// sippSBC runs an SBC on loopback in front of one Kamailio node (over
// TCP) as startService does, for benchmarks too: access realm on UDP and,
// with accessTCP, TCP on the same port; core realm on TCP. It returns the
// access address and the core realm's TCP port.
func sippSBC(tb testing.TB, k *sbctest.Kamailio, accessTCP bool) (s *Service, access netip.AddrPort, corePort int) {
	tb.Helper()
	cfg := Default()
	cfg.Calls.OpenToUnregistered = true // SIPp callers do not register
	cfg.SIPServer.NodeGroups = []NodeGroup{{Name: "PBX", Nodes: []Node{
		{Name: "kamailio", Priority: 1, Address: k.Addr.Addr().String(), Transport: TransportTCP, Port: int(k.Addr.Port())},
	}}}
	cfg.SIPServer.Keepalive = Keepalive{IntervalSeconds: 30, FailureThreshold: 3}
	cfg.RemoteSubscribers.MinIntervalSeconds = 60
	lo := netip.MustParseAddr("127.0.0.1")
	// Two picks may give the same port (each is free when picked).
	accessPort, core := sippFreePort(tb), sippFreePort(tb)
	for core == accessPort {
		core = sippFreePort(tb)
	}
	access = netip.AddrPortFrom(lo, uint16(accessPort))
	accessRealm := Realm{Name: "access", Role: "access", Bind: lo, Advertise: "127.0.0.1", UDP: accessPort}
	if accessTCP {
		accessRealm.TCP = accessPort
	}
	s = NewService(slog.New(slog.NewTextHandler(io.Discard, nil)), nil, nil)
	err := s.Apply(context.Background(), Desired{Config: cfg, Realms: []Realm{
		accessRealm,
		{Name: "core", Role: "core", Bind: lo, Advertise: "127.0.0.1", TCP: core},
	}})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	var once sync.Once
	tb.Cleanup(func() { once.Do(func() { cancel(); <-done }) })
	return s, access, core
}

// TestSIPpRegistersHundredsOfUsers: 300 users register once each through
// the SBC (SIPp over UDP on the access realm, digest authentication
// passed through) to Kamailio behind it (over TCP). Every user ends up in
// Kamailio's location table with the SBC's token Contact on the core
// realm, and the SBC holds the 300 bindings.
func TestSIPpRegistersHundredsOfUsers(t *testing.T) {
	const first, n = 2000, 300
	bin := sbctest.FindPeer(t, "sipp", "sip-tester")
	users, inf := sippUsers(t, first, n)
	k := sbctest.StartKamailio(t, sbctest.KamailioOptions{Users: users})
	s, sbcAddr, _ := startService(t, []Node{
		{Name: "pbx", Priority: 1, Address: "127.0.0.1", Transport: TransportTCP, Port: int(k.Addr.Port())},
	}, 30, 3)
	corePort := s.stack.Realm("core").Port(signal.TCP)
	if corePort == 0 {
		t.Fatal("the core realm has no TCP port")
	}

	p := startSIPp(t, bin, sippOptions{
		Target: netip.MustParseAddrPort(sbcAddr), Transport: "u1", Users: inf,
		Calls: n, Rate: 150, Limit: 50, Timeout: 60 * time.Second,
	})
	st := p.wait(t)
	t.Logf("sipp: %d calls, %d successful, %d failed in %v (%.0f reg/s)", st.Created, st.Successful, st.Failed, st.Elapsed, st.RegPerSecond())
	if st.Successful != n || st.Failed != 0 {
		t.Fatalf("sipp: %d of %d registrations succeeded, %d failed\n%s", st.Successful, n, st.Failed, p.output())
	}

	// The SBC: one binding per user, from SIPp's UDP flow.
	bindings := s.Bindings()
	if len(bindings) != n {
		t.Errorf("the SBC lists %d bindings, want %d", len(bindings), n)
	}
	tokens := map[string]string{} // user -> token
	for _, b := range bindings {
		user := strings.TrimSuffix(strings.TrimPrefix(b.AOR, "sip:"), "@"+sbctest.KamailioRealm)
		if _, ok := users[user]; !ok {
			t.Errorf("binding of an unknown AOR %q", b.AOR)
			continue
		}
		if _, dup := tokens[user]; dup {
			t.Errorf("user %s has more than one binding", user)
		}
		tokens[user] = b.Token
		if b.Flow.Transport != "UDP" || b.Flow.Realm != "access" || !strings.Contains(b.Contact, "sip:"+user+"@127.0.0.1:") {
			t.Errorf("binding of %s: flow %+v, contact %q", user, b.Flow, b.Contact)
		}
	}

	// Kamailio: each user once, at the SBC's token Contact on the core
	// realm, never at SIPp's own address.
	locs := k.Locations(t)
	if len(locs) != n {
		t.Errorf("Kamailio has %d locations, want %d", len(locs), n)
	}
	seen := map[string]bool{}
	for _, l := range locs {
		if seen[l.AOR] {
			t.Errorf("user %s is in Kamailio's location table more than once", l.AOR)
		}
		seen[l.AOR] = true
		var u sip.Uri
		if err := sip.ParseUri(l.Contact, &u); err != nil {
			t.Errorf("location of %s: contact %q: %v", l.AOR, l.Contact, err)
			continue
		}
		tr, _ := u.UriParams.Get("transport")
		if u.Host != "127.0.0.1" || u.Port != corePort || !strings.EqualFold(tr, "tcp") {
			t.Errorf("location of %s: contact %q, want the SBC's core realm 127.0.0.1:%d over TCP", l.AOR, l.Contact, corePort)
		}
		if tok, ok := tokens[l.AOR]; !ok || u.User != tok {
			t.Errorf("location of %s: contact user %q, want the SBC's binding token %q", l.AOR, u.User, tok)
		}
		if l.UserAgent != "SIPp" {
			t.Errorf("location of %s: User-Agent %q, want SIPp's", l.AOR, l.UserAgent)
		}
	}
	for user := range users {
		if !seen[user] {
			t.Errorf("user %s is not in Kamailio's location table", user)
		}
	}
}
