package sbctest

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// KamailioRealm is the SIP domain of the users of a Kamailio started here,
// and the realm of its digest challenges.
const KamailioRealm = "psigate.test"

// Kamailio is a running Kamailio registrar with digest authentication: a
// stand-in for the PBX behind the SBC. It answers
//
//   - OPTIONS with 200;
//   - REGISTER without valid credentials with 401 and a challenge
//     (WWW-Authenticate, realm KamailioRealm, qop=auth, MD5);
//   - REGISTER with a wrong password, for an unknown user, or whose
//     authentication user differs from the To user, with 403;
//   - an authenticated REGISTER by saving its contacts (200 with the
//     bindings, as a registrar does; Expires 0 removes them);
//   - anything else but ACK with 501.
//
// With KamailioOptions.Calls it also connects calls between its users, as
// a small PBX does; see KamailioOptions.Calls.
//
// The location table is in memory only: Stop loses it. Kamailio closes idle
// TCP connections only after an hour, so a connection the SBC opens stays up
// for the test.
//
// Its methods may be called from any goroutine.
type Kamailio struct {
	// Addr is where Kamailio takes SIP, over both UDP and TCP. It stays
	// the same across Stop and Start.
	Addr netip.AddrPort

	bin      string
	dir      string // configuration, db_text tables, run dir, log
	cfgPath  string
	logPath  string
	fifoPath string // JSON-RPC requests
	replyDir string // JSON-RPC reply FIFOs; short, see rpcMaxPath
	rpcSeq   atomic.Int64

	calls   bool
	trusted []netip.Addr

	mu   sync.Mutex
	proc *kamailioProc // nil while stopped
}

// KamailioOptions configures StartKamailio.
type KamailioOptions struct {
	// Users maps a user name to its password: the accounts that may
	// register, all in domain KamailioRealm. A user name is letters,
	// digits and ._~+-; a password is printable and has no ':' or '\'.
	Users map[string]string
	// Listen is the loopback address to listen on; 127.0.0.1 when not set.
	// Another address in 127.0.0.0/8 (such as 127.0.0.3) gives a second
	// node an address of its own.
	Listen netip.Addr
	// Port is the port for both UDP and TCP; 0 picks one that is free on
	// Listen for both.
	Port int
	// Calls makes Kamailio a small PBX that connects calls between its
	// users, a stateful proxy (RFC 3261 section 16):
	//
	//   - an INVITE that starts a dialog is challenged (407,
	//     Proxy-Authenticate, realm KamailioRealm) unless it comes from
	//     a Trusted address; a wrong password or unknown caller gets
	//     403, as does a caller whose From user is not the one it
	//     authenticated as;
	//   - an INVITE for a user not in Users gets 404, for a user
	//     without a binding 480; else it goes to every contact the
	//     user registered, record-routed (two Record-Routes when the
	//     transport changes, one per side);
	//   - requests within a dialog (ACK, BYE, re-INVITE, UPDATE, INFO,
	//     REFER, NOTIFY, OPTIONS) follow their Route set; one that
	//     names no route through Kamailio gets 404, but for the ACK of
	//     a failed INVITE, which ends its transaction;
	//   - a CANCEL goes on to the branches of its INVITE's transaction.
	//
	// When a callee sends no provisional response within 5 seconds,
	// Kamailio answers the caller 408. Without Calls an INVITE gets
	// 501.
	Calls bool
	// Trusted are the source addresses whose calls Kamailio takes
	// without a challenge, as a PBX trusts the SIP trunks and gateways
	// it is configured with (an SBC's core address, e.g. 127.0.0.1):
	// such a peer cannot answer a challenge for the callers it relays.
	// Their REGISTERs are challenged all the same. Only with Calls; all
	// on loopback.
	Trusted []netip.Addr
}

// Location is one binding in Kamailio's location table (usrloc).
type Location struct {
	// AOR is the user part of the registered To URI, lower-cased
	// ("alice"): the table keys on the user only, whatever the domain.
	AOR string
	// Contact is the contact URI as registered, without display name
	// and header parameters.
	Contact string
	// Expires is when the binding lapses, from the seconds Kamailio had
	// left for it when asked (so to within a second); zero for a
	// permanent binding.
	Expires time.Time
	// UserAgent is the User-Agent of the REGISTER that made the binding;
	// empty when it had none.
	UserAgent string
	// Received is where that REGISTER came from, as a URI
	// ("sip:127.0.0.1:40312;transport=tcp", no transport for UDP).
	Received string
	// Socket is Kamailio's own socket the REGISTER arrived on
	// ("tcp:127.0.0.1:35060").
	Socket string
	// CallID and CSeq are those of the REGISTER that last refreshed the
	// binding.
	CallID string
	CSeq   int
}

// Request is one SIP request as it reached Kamailio, before Kamailio did
// anything with it.
type Request struct {
	// Time is when Kamailio took it in (its clock, to the microsecond).
	Time time.Time
	// Transport is "udp" or "tcp".
	Transport string
	// Source is the address it came from.
	Source netip.AddrPort
	// Method, CallID and CSeq are taken from the message.
	Method string
	CallID string
	CSeq   uint32
	// Raw is the whole message as it arrived.
	Raw string
	// Msg is Raw parsed by sipgo, for reading any header; nil when sipgo
	// could not parse it.
	Msg *sip.Request
}

// String gives the request on one line, for test logs.
func (r Request) String() string {
	return fmt.Sprintf("%s %s from %s/%s Call-ID %s CSeq %d", r.Time.Format("15:04:05.000000"), r.Method, r.Source, r.Transport, r.CallID, r.CSeq)
}

// StartKamailio starts Kamailio on opts.Listen and opts.Port with the
// users in opts, waits until it answers OPTIONS over UDP and TCP and its
// control FIFO answers, and stops it when the test ends. It fails the test
// if Kamailio does not come up within 20 seconds, showing Kamailio's log.
//
// Without the kamailio program (Debian package kamailio) it skips the test,
// or fails it when PSIGATE_REQUIRE_PEERS=1.
//
// Everything it writes is under t.TempDir() (and, when that path is long,
// in one short directory under /tmp); it needs no root-only path and takes
// no system-wide name, so it runs beside a system Kamailio and beside other
// Kamailios started here.
func StartKamailio(t testing.TB, opts KamailioOptions) *Kamailio {
	t.Helper()
	bin := FindPeer(t, "kamailio", "kamailio", "/usr/sbin", "/usr/local/sbin")

	listen := opts.Listen
	if !listen.IsValid() {
		listen = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	if !listen.IsLoopback() {
		t.Fatalf("sbctest: Kamailio listens on loopback only, not %s", listen)
	}
	if opts.Port < 0 || opts.Port > 65535 {
		t.Fatalf("sbctest: port %d out of range", opts.Port)
	}
	for user, pass := range opts.Users {
		if err := checkUser(user, pass); err != nil {
			t.Fatalf("sbctest: %v", err)
		}
	}
	for _, a := range opts.Trusted {
		if !a.IsLoopback() {
			t.Fatalf("sbctest: trusted address %s is not on loopback", a)
		}
	}
	if len(opts.Trusted) > 0 && !opts.Calls {
		t.Fatalf("sbctest: Trusted is for calls, and Calls is not set")
	}

	dir := t.TempDir()
	if strings.ContainsAny(dir, "\"\\\n") {
		t.Fatalf("sbctest: temporary directory %q has characters Kamailio's configuration cannot quote", dir)
	}
	k := &Kamailio{
		bin:      bin,
		dir:      dir,
		cfgPath:  filepath.Join(dir, "kamailio.cfg"),
		logPath:  filepath.Join(dir, "kamailio.log"),
		fifoPath: filepath.Join(dir, "run", "rpc.fifo"),
		replyDir: filepath.Join(dir, "run"),
		calls:    opts.Calls,
		trusted:  slices.Clone(opts.Trusted),
	}
	if len(k.replyDir)+1+len("r0000000000") >= rpcMaxPath {
		short, err := os.MkdirTemp("/tmp", "sbctest")
		if err != nil {
			t.Fatalf("sbctest: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(short) })
		k.replyDir = short
	}
	for _, d := range []string{filepath.Join(dir, "run"), filepath.Join(dir, "db")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatalf("sbctest: %v", err)
		}
	}
	if err := k.writeTables(opts.Users); err != nil {
		t.Fatalf("sbctest: %v", err)
	}
	t.Cleanup(k.Stop)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sbctest: end of the Kamailio log %s:\n%s", k.logPath, k.logTail(60))
		}
	})

	for attempt := 1; ; attempt++ {
		port := opts.Port
		if port == 0 {
			port = freePort(t, listen)
		}
		k.Addr = netip.AddrPortFrom(listen, uint16(port))
		k.mu.Lock()
		err := k.startLocked()
		k.mu.Unlock()
		if err == nil {
			return k
		}
		// A port picked here can be taken by someone else before
		// Kamailio binds it: pick another.
		if opts.Port == 0 && errors.Is(err, errAddrInUse) && attempt < 5 {
			continue
		}
		t.Fatalf("sbctest: Kamailio did not start on %s: %v", k.Addr, err)
	}
}

// Stop stops Kamailio (SIGTERM, which closes its TCP connections; SIGKILL
// after 10 seconds) and waits until it has exited. The location table is
// lost. Stopping a stopped Kamailio does nothing.
func (k *Kamailio) Stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopLocked()
}

// Start starts a stopped Kamailio again, on the same address and port with
// the same users, and waits until it is ready as StartKamailio does. Its
// location table starts empty. If the port is still held (by a process of
// the previous run on its way out), it retries for up to 20 seconds. It
// fails the test if Kamailio is running.
//
// Digest nonces from before are no longer accepted (Kamailio makes a new
// secret at each start), so a client that reuses one is challenged again.
func (k *Kamailio) Start(t testing.TB) {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.proc != nil {
		t.Fatalf("sbctest: Kamailio on %s is already running", k.Addr)
	}
	deadline := time.Now().Add(startTimeout)
	for {
		err := k.startLocked()
		if err == nil {
			return
		}
		if errors.Is(err, errAddrInUse) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond) // bounded retry until the port is free
			continue
		}
		t.Fatalf("sbctest: Kamailio did not start again on %s: %v", k.Addr, err)
	}
}

// Locations returns Kamailio's location table as it is now: every binding
// that has not expired, in no particular order. It fails the test when
// Kamailio is stopped or does not answer within 5 seconds.
func (k *Kamailio) Locations(t testing.TB) []Location {
	t.Helper()
	raw, err := k.rpc("ul.dump", rpcTimeout)
	if err != nil {
		t.Fatalf("sbctest: reading Kamailio's location table: %v", err)
	}
	locs, err := parseULDump(raw, time.Now())
	if err != nil {
		t.Fatalf("sbctest: reading Kamailio's location table: %v", err)
	}
	return locs
}

// Requests returns every SIP request Kamailio has received since
// StartKamailio, across Stop and Start, oldest first, but for the OPTIONS
// this kit sends to see that it is up. Kamailio logs a request before it
// answers it, so once a test has the answer the request is listed: no
// waiting is needed. Tests use it to count what reached the PBX (such as
// registration refreshes) and to look at what crossed the SBC.
func (k *Kamailio) Requests(t testing.TB) []Request {
	t.Helper()
	data, err := os.ReadFile(k.logPath)
	if err != nil {
		t.Fatalf("sbctest: reading Kamailio's log: %v", err)
	}
	// A line still being written has no newline yet: leave it for later.
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1]
	} else {
		data = nil
	}
	var reqs []Request
	for line := range bytes.Lines(data) {
		r, ok, err := parseRequestLine(line)
		if err != nil {
			t.Fatalf("sbctest: Kamailio's log: %v: %q", err, line)
		}
		if ok && !strings.HasPrefix(r.CallID, probeCallIDPrefix) {
			reqs = append(reqs, r)
		}
	}
	// Workers write in turn; order by Kamailio's clock.
	slices.SortStableFunc(reqs, func(a, b Request) int { return a.Time.Compare(b.Time) })
	return reqs
}

const (
	startTimeout = 20 * time.Second
	stopTimeout  = 10 * time.Second
	rpcTimeout   = 5 * time.Second

	// rpcMaxPath bounds the path of a reply FIFO: Kamailio's jsonrpcs
	// module keeps it in a 128-byte buffer.
	rpcMaxPath = 120

	// requestMarker starts the xlog line Kamailio writes for every
	// request it receives; see kamailioConfig.
	requestMarker = "SBCTEST-REQ "

	// probeCallIDPrefix marks the OPTIONS this kit sends to see whether
	// Kamailio is up; Requests leaves them out.
	probeCallIDPrefix = "sbctest-probe-"
)

var errAddrInUse = errors.New("address already in use")

// kamailioProc is one run of the kamailio program.
type kamailioProc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait has returned
	err    error         // cmd.Wait's error, set before exited closes
}

func checkUser(user, pass string) error {
	if user == "" {
		return errors.New("empty user name")
	}
	for _, c := range user {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._~+-", c)) {
			return fmt.Errorf("user name %q: only letters, digits and ._~+- are allowed", user)
		}
	}
	if pass == "" {
		return fmt.Errorf("user %q: empty password", user)
	}
	for _, c := range pass {
		if c < 0x20 || c == 0x7f || c == ':' || c == '\\' {
			return fmt.Errorf("user %q: the password may not have control characters, ':' or '\\'", user)
		}
	}
	return nil
}

// writeTables writes the db_text database auth_db reads the users from.
func (k *Kamailio) writeTables(users map[string]string) error {
	db := filepath.Join(k.dir, "db")
	version := "id(int,auto) table_name(string) table_version(int)\n" +
		"1:version:1\n" +
		"2:subscriber:7\n"
	var sub strings.Builder
	sub.WriteString("id(int,auto) username(string) domain(string) password(string)\n")
	id := 1
	for user, pass := range users {
		fmt.Fprintf(&sub, "%d:%s:%s:%s\n", id, user, KamailioRealm, pass)
		id++
	}
	if err := os.WriteFile(filepath.Join(db, "version"), []byte(version), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(db, "subscriber"), []byte(sub.String()), 0o600)
}

// freePort returns a port that is free on addr for both TCP and UDP.
func freePort(t testing.TB, addr netip.Addr) int {
	t.Helper()
	port, err := FreePort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// startLocked writes the configuration for k.Addr, starts kamailio and
// waits until it is ready. On failure nothing is left running. k.mu is
// held.
func (k *Kamailio) startLocked() error {
	if err := k.writeConfig(); err != nil {
		return err
	}
	os.Remove(k.fifoPath) // left by a Kamailio that was killed

	logFile, err := os.OpenFile(k.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	logStart, _ := logFile.Seek(0, io.SeekEnd)
	fmt.Fprintf(logFile, "=== sbctest: starting kamailio on %s at %s\n", k.Addr, time.Now().Format(time.RFC3339Nano))

	run := filepath.Join(k.dir, "run")
	cmd := exec.Command(k.bin,
		"-f", k.cfgPath,
		"-DD", // stay in the foreground (its workers are still forked)
		"-E",  // log to stderr, here the log file
		"-P", filepath.Join(run, "kamailio.pid"),
		"-Y", run, // runtime dir, instead of /run/kamailio
		"-w", run, // working dir
		"-m", "32", // shared memory, MB
		"-M", "8", // private memory per process, MB
	)
	cmd.Dir = run
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group: Stop can kill any worker left over,
		// and Kamailio's own kill(0, ...) at shutdown stays within it.
		Setpgid: true,
		// If the test binary dies without cleaning up, Kamailio goes too.
		Pdeathsig: syscall.SIGTERM,
	}
	err = cmd.Start()
	logFile.Close()
	if err != nil {
		return err
	}
	p := &kamailioProc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	k.proc = p

	if err := k.waitReady(p); err != nil {
		k.stopLocked()
		log := k.logSince(logStart)
		if strings.Contains(log, "Address already in use") {
			return fmt.Errorf("%w: %v", errAddrInUse, err)
		}
		return fmt.Errorf("%v\n--- kamailio log:\n%s", err, lastLines(log, 40))
	}
	return nil
}

// waitReady polls until Kamailio answers OPTIONS over UDP and over TCP and
// answers on its JSON-RPC FIFO, or fails once it has exited or
// startTimeout has passed.
func (k *Kamailio) waitReady(p *kamailioProc) error {
	deadline := time.Now().Add(startTimeout)
	var udpOK, tcpOK bool
	var lastErr error
	for n := 1; ; n++ {
		select {
		case <-p.exited:
			return fmt.Errorf("kamailio exited while starting: %v", p.err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %v", startTimeout, lastErr)
		}
		switch {
		case !udpOK:
			lastErr = probeOptions("udp", k.Addr, n, 250*time.Millisecond)
			udpOK = lastErr == nil
		case !tcpOK:
			lastErr = probeOptions("tcp", k.Addr, n, time.Second)
			tcpOK = lastErr == nil
		default:
			_, lastErr = k.rpc("core.version", time.Second)
			if lastErr == nil {
				return nil
			}
		}
		if lastErr != nil {
			select {
			case <-p.exited:
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// probeOptions sends one OPTIONS to addr and waits for a 200.
func probeOptions(network string, addr netip.AddrPort, n int, timeout time.Duration) error {
	conn, err := net.DialTimeout(network, addr.String(), timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	local := conn.LocalAddr().String()
	msg := fmt.Sprintf("OPTIONS sip:%s;transport=%s SIP/2.0\r\n"+
		"Via: SIP/2.0/%s %s;branch=z9hG4bK-sbctest-%d-%d;rport\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:sbctest@%s>;tag=sbctest-%d\r\n"+
		"To: <sip:%s>\r\n"+
		"Call-ID: %s%d-%d\r\n"+
		"CSeq: 1 OPTIONS\r\n"+
		"Content-Length: 0\r\n\r\n",
		addr, network, strings.ToUpper(network), local, os.Getpid(), n,
		local, n, addr, probeCallIDPrefix, os.Getpid(), n)
	if _, err := conn.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	got := 0
	for {
		m, err := conn.Read(buf[got:])
		got += m
		if bytes.Contains(buf[:got], []byte("\r\n")) || err != nil || network == "udp" {
			if err != nil && got == 0 {
				return err
			}
			break
		}
	}
	status, _, _ := strings.Cut(string(buf[:got]), "\r\n")
	if !strings.HasPrefix(status, "SIP/2.0 200 ") {
		return fmt.Errorf("OPTIONS over %s answered %q", network, status)
	}
	return nil
}

// stopLocked ends the running kamailio, if any, and its workers. k.mu is
// held.
func (k *Kamailio) stopLocked() {
	p := k.proc
	if p == nil {
		return
	}
	k.proc = nil
	pgid := p.cmd.Process.Pid // its own group: see startLocked
	// The main process stops its workers and waits for them.
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.exited
	}
	// Any worker left over goes now.
	syscall.Kill(-pgid, syscall.SIGKILL)
}

// rpc runs a JSON-RPC command on Kamailio's FIFO (jsonrpcs module) and
// returns its result.
func (k *Kamailio) rpc(method string, timeout time.Duration) (json.RawMessage, error) {
	name := fmt.Sprintf("r%d", k.rpcSeq.Add(1)) // jsonrpcs takes no '.' or '/' here
	reply := filepath.Join(k.replyDir, name)
	if err := syscall.Mkfifo(reply, 0o600); err != nil {
		return nil, fmt.Errorf("making reply FIFO: %w", err)
	}
	defer os.Remove(reply)
	// Read-write: the open does not wait for Kamailio, and the FIFO
	// always has a writer, so reads wait for data instead of ending.
	rf, err := os.OpenFile(reply, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer rf.Close()

	// Non-blocking: fails (ENXIO) at once when no Kamailio reads it.
	wf, err := os.OpenFile(k.fifoPath, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("Kamailio's control FIFO: %w", err)
	}
	req, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": method, "id": 1, "reply_name": name})
	_, err = wf.Write(req) // under PIPE_BUF: written whole, at once
	wf.Close()
	if err != nil {
		return nil, fmt.Errorf("writing to Kamailio's control FIFO: %w", err)
	}

	if err := rf.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, fmt.Errorf("reply FIFO: %w", err)
	}
	var resp struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.NewDecoder(rf).Decode(&resp); err != nil {
		return nil, fmt.Errorf("%s: reading the reply: %w", method, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("%s: error %d: %s", method, resp.Error.Code, resp.Error.Message)
	}
	return resp.Result, nil
}

// parseULDump reads the result of usrloc's ul.dump.
func parseULDump(raw json.RawMessage, now time.Time) ([]Location, error) {
	var dump struct {
		Domains []struct {
			Domain struct {
				AoRs []struct {
					Info struct {
						AoR      string `json:"AoR"`
						Contacts []struct {
							Contact struct {
								Address   string          `json:"Address"`
								Expires   json.RawMessage `json:"Expires"`
								CallID    string          `json:"Call-ID"`
								CSeq      int             `json:"CSeq"`
								UserAgent string          `json:"User-Agent"`
								Received  string          `json:"Received"`
								Socket    string          `json:"Socket"`
							} `json:"Contact"`
						} `json:"Contacts"`
					} `json:"Info"`
				} `json:"AoRs"`
			} `json:"Domain"`
		} `json:"Domains"`
	}
	if err := json.Unmarshal(raw, &dump); err != nil {
		return nil, fmt.Errorf("ul.dump: %w: %s", err, raw)
	}
	notSet := func(s string) string {
		if s == "[not set]" {
			return ""
		}
		return s
	}
	var locs []Location
	for _, d := range dump.Domains {
		for _, a := range d.Domain.AoRs {
			for _, c := range a.Info.Contacts {
				loc := Location{
					AOR:       a.Info.AoR,
					Contact:   c.Contact.Address,
					UserAgent: notSet(c.Contact.UserAgent),
					Received:  notSet(c.Contact.Received),
					Socket:    notSet(c.Contact.Socket),
					CallID:    c.Contact.CallID,
					CSeq:      c.Contact.CSeq,
				}
				// Seconds left, or "permanent", "expired", "deleted".
				var secs int
				var word string
				if err := json.Unmarshal(c.Contact.Expires, &secs); err == nil {
					loc.Expires = now.Add(time.Duration(secs) * time.Second)
				} else if err := json.Unmarshal(c.Contact.Expires, &word); err != nil {
					return nil, fmt.Errorf("ul.dump: Expires %s", c.Contact.Expires)
				} else if word != "permanent" {
					continue
				}
				locs = append(locs, loc)
			}
		}
	}
	return locs, nil
}

// parseRequestLine reads one line of Kamailio's log: ok is false for a line
// that is not a request logged by kamailioConfig's request_route.
func parseRequestLine(line []byte) (r Request, ok bool, err error) {
	i := bytes.Index(line, []byte(requestMarker))
	if i < 0 {
		return r, false, nil
	}
	f := strings.Fields(string(line[i+len(requestMarker):]))
	// seconds microseconds transport source-IP source-port message
	if len(f) != 6 {
		return r, false, errors.New("request line of an unexpected form")
	}
	s, err1 := strconv.ParseInt(f[0], 10, 64)
	us, err2 := strconv.ParseInt(f[1], 10, 64)
	ip, err3 := netip.ParseAddr(strings.Trim(f[3], "[]"))
	port, err4 := strconv.ParseUint(f[4], 10, 16)
	raw, err5 := base64.StdEncoding.DecodeString(f[5])
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return r, false, err
	}
	r = Request{
		Time:      time.Unix(s, us*1000),
		Transport: f[2],
		Source:    netip.AddrPortFrom(ip, uint16(port)),
		Raw:       string(raw),
	}
	if m, err := sip.ParseMessage(raw); err == nil {
		if req, isReq := m.(*sip.Request); isReq {
			r.Msg = req
			r.Method = req.Method.String()
			if h := req.CallID(); h != nil {
				r.CallID = h.Value()
			}
			if h := req.CSeq(); h != nil {
				r.CSeq = h.SeqNo
			}
		}
	}
	if r.Msg == nil {
		// Still give what the start line and headers show.
		r.Method, _, _ = strings.Cut(r.Raw, " ")
		sc := bufio.NewScanner(strings.NewReader(r.Raw))
		for sc.Scan() {
			name, value, found := strings.Cut(sc.Text(), ":")
			if !found {
				continue
			}
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "call-id", "i":
				r.CallID = strings.TrimSpace(value)
			case "cseq":
				n, _, _ := strings.Cut(strings.TrimSpace(value), " ")
				if v, err := strconv.ParseUint(n, 10, 32); err == nil {
					r.CSeq = uint32(v)
				}
			}
		}
	}
	return r, true, nil
}

func (k *Kamailio) logSince(offset int64) string {
	data, err := os.ReadFile(k.logPath)
	if err != nil || offset > int64(len(data)) {
		return ""
	}
	return string(data[offset:])
}

// logTail is the end of Kamailio's log without the request lines, for a
// failed test's output.
func (k *Kamailio) logTail(n int) string {
	var keep []string
	for line := range strings.Lines(k.logSince(0)) {
		if !strings.Contains(line, requestMarker) {
			keep = append(keep, line)
		}
	}
	return lastLines(strings.Join(keep, ""), n)
}

func lastLines(s string, n int) string {
	lines := strings.SplitAfter(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}
