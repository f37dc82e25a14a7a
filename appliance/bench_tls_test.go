package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/psigate/psigate/sbc/sbctest"
)

// How many TLS subscribers one appliance holds, and what each costs it in
// memory: the real appliance binary relays the registrations of many TLS
// clients (sbctest's TLS load tool, one connection per subscriber, kept
// open) from its access realm to Kamailio behind its core realm (TCP),
// everything on loopback. Run it with -benchtime 1x (make bench-register);
// everything in it is bounded in count and time.
//
// The memory figure is the growth of the appliance process's resident set
// (VmRSS) from before the clients connect to when its status API counts
// them all registered, per subscriber: the TLS connection (kernel socket
// buffers are not in it), its reading goroutine and buffers, the binding,
// the relay's transactions still held, the store's copy of the bindings
// (its memory-mapped file pages count as resident), and whatever garbage
// the Go runtime has not collected or returned yet. It is measured in two
// steps, so the TLS connections alone (bytes/tls-conn) and then the
// registrations on them (bytes/binding) have a figure each. The Go
// runtime lets its heap grow to about twice what is live before it
// collects (GOGC=100, no memory limit), so the resident figure is about
// twice the live one: the log shows the live heap and the goroutine
// stacks from the appliance's GC trace (GODEBUG=gctrace=1).
// PSIGATE_TLS_HOLD (a duration) keeps the subscribers registered that
// much longer, refreshing, and logs the memory as it settles.
//
// The aim (the issue): 10,000 TLS subscribers within the memory of a
// 1 GB Raspberry Pi, with room to spare. projected-subscribers-1GB is how
// many subscribers half of 1 GiB holds at the measured cost per
// subscriber: the other half is the headroom for the kernel, the
// appliance's own base (logged as "baseline"), media and calls.

const (
	// tlsBenchDefault is the number of subscribers unless
	// PSIGATE_TLS_SUBSCRIBERS says otherwise. Each takes a file
	// descriptor in this process (its client connection) and one in the
	// appliance's (its server connection); the hard RLIMIT_NOFILE of the
	// development machines and CI is 20000 per process.
	tlsBenchDefault = 5000
	// tlsBenchWarm subscribers register before the measurement: the
	// appliance's connection to Kamailio, its code paths and its TLS
	// server state are warm when it starts, so the figures per
	// subscriber carry none of those one-time costs.
	tlsBenchWarm = 20
	// tlsBenchFDs are the descriptors either process needs beside the
	// subscribers' connections.
	tlsBenchFDs = 256
	// tlsBenchTimeout bounds the whole measured part.
	tlsBenchTimeout = 5 * time.Minute
	// tlsBenchSettle is the wait before a memory reading, for the
	// appliance to finish handshakes or registrations in flight.
	tlsBenchSettle = time.Second
)

// BenchmarkTLSSubscribers: see the top of the file. Needs kamailio; skipped
// without it unless PSIGATE_REQUIRE_PEERS=1.
func BenchmarkTLSSubscribers(b *testing.B) {
	n := tlsBenchSubscribers(b)
	users := map[string]string{}
	names := make([]string, 0, tlsBenchWarm+n)
	for i := range tlsBenchWarm + n {
		u := fmt.Sprintf("tls%06d", 100000+i)
		users[u] = "pw-" + u
		names = append(names, u)
	}
	k := sbctest.StartKamailio(b, sbctest.KamailioOptions{Users: users})

	// Set up and configure, then restart: setting the password and
	// logging in hash it with Argon2id, 64 MiB each time, which the Go
	// runtime keeps (and later reuses) for minutes. The restarted
	// appliance runs the stored configuration, and the session (kept in
	// the store) still answers the status API, with no password hashed.
	bin := tlsBenchBuild(b)
	data := b.TempDir()
	a := tlsBenchStart(b, bin, data)
	api := tlsBenchLogin(b, a.url)
	lo := netip.MustParseAddr("127.0.0.1")
	corePort := tlsBenchFreePort(b)
	tlsPort := tlsBenchFreePort(b, corePort)
	api.configure(b, k.Addr, corePort, tlsPort)
	a.stop(b)
	a = tlsBenchStart(b, bin, data)
	api.base = strings.TrimSuffix(a.url, "/") + "/api/v1"
	pid := a.cmd.Process.Pid
	if soft := tlsBenchFileLimit(b, pid); soft < tlsBenchWarm+n+tlsBenchFDs {
		b.Fatalf("the appliance may open %d files, too few for %d TLS subscribers; lower PSIGATE_TLS_SUBSCRIBERS", soft, n)
	}
	target := netip.AddrPortFrom(lo, uint16(tlsPort))
	tlsBenchWaitListener(b, a, target)

	// The SIP listener presents the appliance's certificate, the one its
	// portal showed (it names 127.0.0.1): trusted as the only root, it is
	// verified rather than skipped.
	roots := x509.NewCertPool()
	roots.AddCert(api.cert)
	opts := func(who []string) sbctest.TLSLoadOptions {
		return sbctest.TLSLoadOptions{
			Target: target, Users: who, Password: func(u string) string { return users[u] },
			Domain: sbctest.KamailioRealm, Concurrency: 64, Expires: 3600, RootCAs: roots,
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), tlsBenchTimeout)
	defer cancel()

	warm := tlsBenchRegister(b, ctx, a, opts(names[:tlsBenchWarm]))
	api.waitSubscribers(b, ctx, a, tlsBenchWarm)
	time.Sleep(tlsBenchSettle)
	before := tlsBenchMem(b, pid)

	b.ResetTimer()
	t0 := time.Now()
	load, err := sbctest.ConnectTLS(ctx, opts(names[tlsBenchWarm:]))
	if err != nil {
		b.Fatalf("connecting: %v\n%s", err, a.log.String())
	}
	b.Cleanup(func() { load.Close() })
	connectTime := time.Since(t0)
	if load.Connected() != n {
		res, _ := load.Register(ctx) // for the failures' reasons
		b.Fatalf("%d of %d TLS connections opened: %v\n%s", load.Connected(), n, res, a.log.String())
	}
	time.Sleep(tlsBenchSettle)
	connected := tlsBenchMem(b, pid)

	res, err := load.Register(ctx)
	if err != nil || res.Registered != n {
		b.Fatalf("registering: %v (%v)\n%s", res, err, a.log.String())
	}
	b.Logf("%d TLS connections in %v (%.0f/s); %d registered in %v (%.0f/s), granted %ds",
		n, connectTime.Round(time.Millisecond), float64(n)/connectTime.Seconds(),
		res.Registered, res.Elapsed.Round(time.Millisecond), res.Rate(), res.Granted)
	// With register throttling a binding lapses after the short timer the
	// SBC granted its client. When the run took more than half of it,
	// everyone refreshes (the SBC answers on the same connections), as
	// clients would, so that no binding lapses before the count.
	if g := time.Duration(res.Granted) * time.Second; g > 0 && time.Since(t0) > g/2 {
		b.Logf("the run took %v, more than half the granted %v: refreshing", time.Since(t0).Round(time.Millisecond), g)
		for _, l := range []*sbctest.TLSLoad{warm, load} {
			if r, err := l.Register(ctx); err != nil || r.Failed != 0 {
				b.Fatalf("refresh: %v (%v)", r, err)
			}
		}
	}
	api.waitSubscribers(b, ctx, a, tlsBenchWarm+n)
	time.Sleep(tlsBenchSettle)
	after := tlsBenchMem(b, pid)
	b.StopTimer()

	b.Logf("appliance memory, kB: baseline %v; %d connected %v; %d registered %v", before, n, connected, n, after)
	b.Logf("the appliance's last garbage collection: %s", lastGC(a.log.String()))

	perSub := float64(after.rss-before.rss) / float64(n)
	b.ReportMetric(float64(res.Registered), "subscribers")
	b.ReportMetric(perSub, "bytes/subscriber")
	b.ReportMetric(float64(connected.rss-before.rss)/float64(n), "bytes/tls-conn")
	b.ReportMetric(float64(after.rss-connected.rss)/float64(n), "bytes/binding")
	b.ReportMetric(res.Rate(), "reg/s")
	b.ReportMetric(float64(n)/connectTime.Seconds(), "handshakes/s")
	if perSub > 0 {
		const half = 1 << 30 / 2 // of 1 GiB; the other half is headroom
		b.ReportMetric(half/perSub, "projected-subscribers-1GB")
	}

	// PSIGATE_TLS_HOLD keeps everyone registered that much longer,
	// refreshing as clients do, and logs the memory on the way: what the
	// Go runtime gives back once the registration burst is over (it
	// forces a collection every two minutes and returns free memory
	// slowly). It changes no figure above.
	hold := tlsBenchHold(b)
	for end := time.Now().Add(hold); time.Now().Before(end); {
		time.Sleep(min(20*time.Second, time.Until(end)))
		for _, l := range []*sbctest.TLSLoad{warm, load} {
			rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
			r, err := l.Register(rctx)
			rcancel()
			if err != nil || r.Failed != 0 {
				b.Fatalf("refresh: %v (%v)", r, err)
			}
		}
		b.Logf("%v after registering: %v; last collection: %s",
			time.Since(t0).Round(time.Second), tlsBenchMem(b, pid), lastGC(a.log.String()))
	}
}

// tlsBenchHold is PSIGATE_TLS_HOLD, a duration up to 30 minutes; 0 when
// not set.
func tlsBenchHold(b *testing.B) time.Duration {
	b.Helper()
	v := os.Getenv("PSIGATE_TLS_HOLD")
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > 30*time.Minute {
		b.Fatalf("PSIGATE_TLS_HOLD=%q: want a duration up to 30m", v)
	}
	return d
}

// gcTrace matches a line of GODEBUG=gctrace=1: heap at the start and end
// of the collection and live after it, the next goal, the stacks.
var gcTrace = regexp.MustCompile(`(?m)^gc \d+ @[\d.]+s .*?, (\d+)->(\d+)->(\d+) MB, (\d+) MB goal, (\d+) MB stacks`)

// lastGC sums up the last collection the appliance's trace shows.
func lastGC(log string) string {
	m := gcTrace.FindAllStringSubmatch(log, -1)
	if m == nil {
		return "none traced"
	}
	g := m[len(m)-1]
	return fmt.Sprintf("heap %s MB live after it, next goal %s MB, goroutine stacks %s MB", g[3], g[4], g[5])
}

// tlsBenchSubscribers is PSIGATE_TLS_SUBSCRIBERS, else tlsBenchDefault.
func tlsBenchSubscribers(b *testing.B) int {
	b.Helper()
	v := os.Getenv("PSIGATE_TLS_SUBSCRIBERS")
	if v == "" {
		return tlsBenchDefault
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 100000 {
		b.Fatalf("PSIGATE_TLS_SUBSCRIBERS=%q: want a number of subscribers, 1-100000", v)
	}
	return n
}

// tlsBenchRegister connects and registers a load whose every user must
// register; it stays connected until the benchmark ends.
func tlsBenchRegister(b *testing.B, ctx context.Context, a *tlsBenchProc, opts sbctest.TLSLoadOptions) *sbctest.TLSLoad {
	b.Helper()
	l, err := sbctest.ConnectTLS(ctx, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	res, err := l.Register(ctx)
	if err != nil || res.Registered != len(opts.Users) {
		b.Fatalf("%v (%v)\n%s", res, err, a.log.String())
	}
	return l
}

// tlsBenchBuild compiles the appliance, as buildAppliance does for tests.
func tlsBenchBuild(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "appliance")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// tlsBenchStart runs the appliance on a free loopback port, as start does
// for tests, and kills it when the benchmark ends if it still runs.
func tlsBenchStart(b *testing.B, bin, data string) *tlsBenchProc {
	b.Helper()
	cmd := exec.Command(bin, "-data", data, "-http", "127.0.0.1:0", "-drain", "5s")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	a := &tlsBenchProc{cmd: cmd, log: tailWriter{max: 64 << 10}, exited: make(chan struct{})}
	// Its log is kept for a failure's message, to the last 64 KiB or so;
	// it traces garbage collections, for the memory figures.
	cmd.Stderr = &a.log
	godebug := "gctrace=1"
	if v := os.Getenv("GODEBUG"); v != "" {
		godebug = v + "," + godebug
	}
	cmd.Env = append(os.Environ(), "GODEBUG="+godebug)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "psigate: admin portal at "); ok {
				urls <- u
			}
		}
	}()
	go func() {
		a.err = cmd.Wait()
		close(a.exited)
	}()
	b.Cleanup(func() {
		select {
		case <-a.exited:
		default:
			cmd.Process.Kill()
			<-a.exited
		}
	})
	select {
	case a.url = <-urls:
	case <-a.exited:
		b.Fatalf("appliance exited before serving: %v\n%s", a.err, a.log.String())
	case <-time.After(30 * time.Second):
		b.Fatalf("appliance printed no portal URL within 30s\n%s", a.log.String())
	}
	return a
}

// stop ends the appliance with SIGTERM, as gokrazy would, and waits.
func (a *tlsBenchProc) stop(b *testing.B) {
	b.Helper()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		b.Fatal(err)
	}
	select {
	case <-a.exited:
		if a.err != nil {
			b.Fatalf("the appliance exited after SIGTERM with %v\n%s", a.err, a.log.String())
		}
	case <-time.After(30 * time.Second):
		b.Fatalf("the appliance did not exit within 30s of SIGTERM\n%s", a.log.String())
	}
}

// tlsBenchProc is a running appliance process.
type tlsBenchProc struct {
	cmd    *exec.Cmd
	url    string
	log    tailWriter    // its stderr
	exited chan struct{} // closed when it has exited, err set
	err    error
}

// tailWriter keeps the last max bytes or so written to it.
type tailWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.buf.Len() > 2*w.max {
		w.buf.Next(w.buf.Len() - w.max)
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// tlsBenchFileLimit is the soft RLIMIT_NOFILE of process pid.
func tlsBenchFileLimit(b *testing.B, pid int) int {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if n, err := strconv.Atoi(f[0]); err == nil {
				return n
			}
		}
	}
	b.Fatalf("no open file limit in /proc/%d/limits", pid)
	return 0
}

// tlsBenchFreePort is a free TCP port on 127.0.0.1 outside the media
// ranges of the default configuration (20000-29999) and not one of not.
func tlsBenchFreePort(b *testing.B, not ...int) int {
	b.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if (p < 20000 || p > 29999) && !slices.Contains(not, p) {
			return p
		}
	}
	b.Fatal("no free TCP port on 127.0.0.1")
	return 0
}

// tlsBenchWaitListener waits until the SIP TLS listener completes a
// handshake.
func tlsBenchWaitListener(b *testing.B, a *tlsBenchProc, target netip.AddrPort) {
	b.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		d := &net.Dialer{Timeout: time.Second}
		c, err := tls.DialWithDialer(d, "tcp", target.String(), &tls.Config{InsecureSkipVerify: true}) // only a probe
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the appliance's SIP TLS listener on %s: %v\n%s", target, err, a.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tlsBenchAPI is the appliance's API with a bearer token.
type tlsBenchAPI struct {
	http  *http.Client
	base  string
	token string
	cert  *x509.Certificate // what the portal presented
}

// tlsBenchLogin sets the admin password and logs in.
func tlsBenchLogin(b *testing.B, url string) *tlsBenchAPI {
	b.Helper()
	api := &tlsBenchAPI{base: strings.TrimSuffix(url, "/") + "/api/v1"}
	api.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		// Self-signed: the certificate is taken as presented, and then
		// trusted as the root of the SIP TLS listener's.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			api.cert = cs.PeerCertificates[0]
			return nil
		},
	}}}
	b.Cleanup(api.http.CloseIdleConnections)
	const password = "tls bench: a long passphrase"
	api.must(b, "POST", "/setup", map[string]string{"password": password}, nil, 201)
	var login struct{ Token string }
	api.must(b, "POST", "/session", map[string]string{"username": "admin", "password": password}, &login, 200)
	api.token = login.Token
	return api
}

// must sends a request with a JSON body and decodes the JSON answer into
// out (if not nil); any status but want fails the benchmark.
func (api *tlsBenchAPI) must(b *testing.B, method, path string, body, out any, want int) {
	b.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			b.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, api.base+path, rd)
	if err != nil {
		b.Fatal(err)
	}
	if api.token != "" {
		req.Header.Set("Authorization", "Bearer "+api.token)
	}
	resp, err := api.http.Do(req)
	if err != nil {
		b.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		b.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			b.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
}

// configure puts SIP on loopback and Kamailio behind it, and applies: the
// core realm on TCP corePort, the access realm on TLS tlsPort, both on
// 127.0.0.1 (the default configuration listens on all addresses on 5060,
// 5061 and 65061); Kamailio the only PBX node, over TCP. Everything else,
// register throttling included, stays at its default.
func (api *tlsBenchAPI) configure(b *testing.B, pbx netip.AddrPort, corePort, tlsPort int) {
	b.Helper()
	var cand map[string]any
	api.must(b, "GET", "/config/candidate", nil, &cand, 200)
	network, _ := cand["network"].(map[string]any)
	realms, _ := network["realms"].([]any)
	var core, access bool
	for _, r := range realms {
		realm, _ := r.(map[string]any)
		ports := map[string]any{"udp": 0, "tcp": 0, "tls": 0, "mtls": 0}
		switch realm["role"] {
		case "core":
			ports["tcp"], core = corePort, true
		case "access":
			if access {
				continue // the first access realm takes the registrations
			}
			ports["tls"], access = tlsPort, true
		default:
			continue
		}
		realm["interface"], realm["dhcp"], realm["addresses"] = "lo", false, []string{"127.0.0.1/8"}
		realm["advertisedAddress"], realm["sipPorts"] = "", ports
	}
	if !core || !access {
		b.Fatalf("the default configuration has no core or no access realm: %v", realms)
	}
	sbcCfg, _ := cand["sbc"].(map[string]any)
	server, _ := sbcCfg["sipServer"].(map[string]any)
	if server == nil {
		b.Fatalf("no sbc.sipServer in the candidate")
	}
	server["nodeGroups"] = []any{map[string]any{
		"name": "PBX", "stickWithNode": false,
		"nodes": []any{map[string]any{
			"name": "kamailio", "priority": 1, "address": pbx.Addr().String(), "transport": "tcp", "port": int(pbx.Port()),
		}},
	}}
	api.must(b, "PUT", "/config/candidate", cand, nil, 200)
	api.must(b, "POST", "/config/apply", map[string]any{"comment": "TLS subscriber benchmark", "confirmMinutes": 0}, nil, 200)
}

// waitSubscribers waits until the status API counts want registered
// subscribers, for at most a minute.
func (api *tlsBenchAPI) waitSubscribers(b *testing.B, ctx context.Context, a *tlsBenchProc, want int) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var st struct {
			Subscribers int `json:"registeredSubscribers"`
		}
		api.must(b, "GET", "/status", nil, &st, 200)
		if st.Subscribers == want {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			b.Fatalf("the appliance counts %d registered subscribers, want %d\n%s", st.Subscribers, want, a.log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tlsBenchMemory is a process's memory from /proc/<pid>/status, in bytes.
type tlsBenchMemory struct {
	rss, anon, file, shmem, hwm int64
	threads                     int64
}

func (m tlsBenchMemory) String() string {
	return fmt.Sprintf("VmRSS %d (anon %d, file %d, shmem %d; peak %d), %d threads",
		m.rss>>10, m.anon>>10, m.file>>10, m.shmem>>10, m.hwm>>10, m.threads)
}

func tlsBenchMem(b *testing.B, pid int) tlsBenchMemory {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	var m tlsBenchMemory
	fields := map[string]*int64{"VmRSS": &m.rss, "RssAnon": &m.anon, "RssFile": &m.file, "RssShmem": &m.shmem, "VmHWM": &m.hwm, "Threads": &m.threads}
	for line := range strings.Lines(string(data)) {
		name, value, ok := strings.Cut(line, ":")
		p := fields[name]
		if !ok || p == nil {
			continue
		}
		f := strings.Fields(value)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			b.Fatalf("/proc/%d/status: %s", pid, line)
		}
		if len(f) > 1 && f[1] == "kB" {
			v <<= 10
		}
		*p = v
	}
	if m.rss == 0 {
		b.Fatalf("no VmRSS in /proc/%d/status", pid)
	}
	return m
}
