package sbctest

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// KamailioProxy is a running Kamailio stateful proxy with topology
// hiding: the reference the SBC's call benchmarks measure it against. It
// takes every request that starts a dialog and relays it, statefully
// (tm) and record-routing (rr), to one next hop; requests within a
// dialog follow the Route set. The topoh module encodes Via,
// Record-Route and Contact, so neither side learns the other's
// addresses, which is what the SBC does as a B2BUA. It answers an
// OPTIONS to itself with 200.
//
// It needs no file beyond t.TempDir() and no system-wide name, like
// StartKamailio's registrar.
type KamailioProxy struct {
	// Addr is where it takes SIP, over both UDP and TCP.
	Addr netip.AddrPort

	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	err     error // cmd.Wait's, once exited is closed
	once    sync.Once
}

// KamailioProxyOptions configures StartKamailioProxy.
type KamailioProxyOptions struct {
	// Next is the next hop of every new dialog, such as a SIPp callee,
	// on loopback.
	Next netip.AddrPort
	// NextTransport is how the proxy reaches Next: "udp" or "tcp".
	NextTransport string
	// Listen is the loopback address to listen on; 127.0.0.1 when not
	// set. The port is picked free for UDP and TCP.
	Listen netip.Addr
	// Workers is the number of worker processes per UDP socket and of TCP
	// workers; 4 when not set.
	Workers int
}

// StartKamailioProxy starts the proxy, waits until it answers OPTIONS
// over UDP and TCP, and stops it when the test ends. It fails the test
// if the proxy does not come up within 20 seconds, showing its log.
// Without the kamailio program it skips the test, or fails it when
// PSIGATE_REQUIRE_PEERS=1.
func StartKamailioProxy(t testing.TB, opts KamailioProxyOptions) *KamailioProxy {
	t.Helper()
	bin := FindPeer(t, "kamailio", "kamailio", "/usr/sbin", "/usr/local/sbin")
	listen := opts.Listen
	if !listen.IsValid() {
		listen = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	if !listen.IsLoopback() || !opts.Next.Addr().IsLoopback() {
		t.Fatalf("sbctest: the proxy works on loopback only, not %s to %s", listen, opts.Next)
	}
	if opts.NextTransport != "udp" && opts.NextTransport != "tcp" {
		t.Fatalf("sbctest: next hop transport %q, want udp or tcp", opts.NextTransport)
	}
	if opts.Workers == 0 {
		opts.Workers = 4
	}
	dir := t.TempDir()
	if strings.ContainsAny(dir, "\"\\\n") {
		t.Fatalf("sbctest: temporary directory %q has characters Kamailio's configuration cannot quote", dir)
	}
	for attempt := 1; ; attempt++ {
		k := &KamailioProxy{
			Addr:    netip.AddrPortFrom(listen, uint16(freePort(t, listen))),
			logPath: filepath.Join(dir, fmt.Sprintf("kamailio-%d.log", attempt)),
		}
		err := k.start(bin, dir, opts)
		if err == nil {
			t.Cleanup(k.Stop)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("sbctest: end of the Kamailio proxy's log %s:\n%s", k.logPath, k.LogTail(60))
				}
			})
			return k
		}
		// A port picked here can be taken by someone else before
		// Kamailio binds it: pick another.
		if errors.Is(err, errAddrInUse) && attempt < 5 {
			continue
		}
		t.Fatalf("sbctest: the Kamailio proxy did not start on %s: %v", k.Addr, err)
	}
}

// start writes the configuration, starts kamailio and waits until it is
// ready; on failure nothing is left running.
func (k *KamailioProxy) start(bin, dir string, opts KamailioProxyOptions) error {
	cfgPath := filepath.Join(dir, "proxy.cfg")
	if err := k.writeConfig(cfgPath, opts); err != nil {
		return err
	}
	run := filepath.Join(dir, "run")
	if err := os.MkdirAll(run, 0o700); err != nil {
		return err
	}
	logFile, err := os.OpenFile(k.logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	k.cmd = exec.Command(bin,
		"-f", cfgPath,
		"-DD", // in the foreground (its workers are still forked)
		"-E",  // log to stderr, here the log file
		"-P", filepath.Join(run, "kamailio.pid"),
		"-Y", run,
		"-w", run,
		// Transactions, each with a copy of its request and its replies,
		// stay in shared memory for tm's wait timer (5 s) after their
		// end: at 2,500 calls a second 256 MB runs out, and tm answers
		// 500 (out of memory).
		"-m", "1024", // shared memory, MB
		"-M", "16", // private memory per process, MB
	)
	k.cmd.Dir = run
	k.cmd.Stdout, k.cmd.Stderr = logFile, logFile
	// Its own process group, as in startLocked: Stop kills any worker
	// left over, and CPU finds them all.
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	err = k.cmd.Start()
	logFile.Close()
	if err != nil {
		return err
	}
	k.exited = make(chan struct{})
	go func() {
		k.err = k.cmd.Wait()
		close(k.exited)
	}()
	if err := k.waitReady(); err != nil {
		k.Stop()
		log := k.LogTail(40)
		if strings.Contains(log, "Address already in use") {
			return fmt.Errorf("%w: %v", errAddrInUse, err)
		}
		return fmt.Errorf("%v\n--- kamailio log:\n%s", err, log)
	}
	return nil
}

// waitReady polls until the proxy answers OPTIONS over UDP and TCP.
func (k *KamailioProxy) waitReady() error {
	deadline := time.Now().Add(startTimeout)
	var lastErr error
	for n, network := 1, "udp"; ; n++ {
		select {
		case <-k.exited:
			return fmt.Errorf("kamailio exited while starting: %v", k.err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %v", startTimeout, lastErr)
		}
		if lastErr = probeOptions(network, k.Addr, n, 250*time.Millisecond); lastErr == nil {
			if network == "tcp" {
				return nil
			}
			network = "tcp"
			continue
		}
		select {
		case <-k.exited:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop ends the proxy and its workers (SIGTERM, SIGKILL after 10
// seconds) and waits until it has exited. Stopping twice does nothing.
func (k *KamailioProxy) Stop() {
	k.once.Do(func() {
		pgid := k.cmd.Process.Pid // its own group: see start
		k.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-k.exited:
		case <-time.After(stopTimeout):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-k.exited
		}
		syscall.Kill(-pgid, syscall.SIGKILL)
	})
}

// CPU is the processor time (user and system) the proxy's processes have
// used so far: every process of its process group still running, read
// from /proc. Kamailio's workers live as long as it does, so differences
// of two readings are the proxy's work between them.
func (k *KamailioProxy) CPU() time.Duration {
	pgid := k.cmd.Process.Pid
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	var ticks int64
	for _, path := range dirs {
		data, err := os.ReadFile(path)
		if err != nil {
			continue // gone meanwhile
		}
		// "pid (comm) state ppid pgrp ... utime stime ...": comm may
		// hold spaces, so fields count from its closing parenthesis.
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 13 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += utime + stime
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// LogTail is the end of the proxy's log, n lines at most.
func (k *KamailioProxy) LogTail(n int) string {
	data, err := os.ReadFile(k.logPath)
	if err != nil {
		return ""
	}
	return lastLines(string(data), n)
}

func (k *KamailioProxy) writeConfig(path string, opts KamailioProxyOptions) error {
	var b bytes.Buffer
	err := kamailioProxyConfig.Execute(&b, map[string]any{
		"Listen":  k.Addr.String(),
		"Workers": opts.Workers,
		"Next":    fmt.Sprintf("sip:%s;transport=%s", opts.Next, opts.NextTransport),
		"MaskKey": strconv.FormatInt(time.Now().UnixNano(), 36),
		"MaskIP":  k.Addr.Addr().String(),
	})
	if err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o600)
}

// kamailioProxyConfig is the proxy's configuration. Every module is in
// Debian's kamailio package. Logging is at warnings only: a log line per
// request would cost the proxy more than relaying it.
var kamailioProxyConfig = template.Must(template.New("proxy.cfg").Parse(`#!KAMAILIO
# Written by github.com/psigate/psigate/sbc/sbctest: a stateful proxy with
# topology hiding, the reference of the SBC's call benchmarks.

debug=0
log_stderror=yes
children={{.Workers}}
tcp_children={{.Workers}}
auto_aliases=no
dns=no
rev_dns=no
use_dns_cache=no
tcp_connection_lifetime=3605

listen=udp:{{.Listen}}
listen=tcp:{{.Listen}}

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "topoh.so"

# Via, Record-Route and Contact leave encoded with this run's key; the
# masked address is the proxy's own.
modparam("topoh", "mask_key", "{{.MaskKey}}")
modparam("topoh", "mask_ip", "{{.MaskIP}}")
# UDP on one side, TCP on the other: two Record-Routes, one per side.
modparam("rr", "enable_double_rr", 1)

request_route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (has_totag()) {
		# Within a dialog: along the Route set, or the ACK of a
		# non-2xx answer to its transaction.
		if (loose_route() || (method == "ACK" && t_check_trans())) {
			route(RELAY);
		}
		sl_send_reply("404", "Not Here");
		exit;
	}
	if (method == "CANCEL") {
		if (t_check_trans()) {
			route(RELAY);
		}
		exit;
	}
	if (method == "OPTIONS" && uri == myself && $rU == $null) {
		sl_send_reply("200", "OK");
		exit;
	}
	# A retransmission of a request in progress is absorbed here.
	t_check_trans();
	if (method == "INVITE") {
		record_route();
	}
	$du = "{{.Next}}";
	route(RELAY);
}

route[RELAY] {
	if (!t_relay()) {
		sl_reply_error();
	}
	exit;
}
`))
