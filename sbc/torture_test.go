package sbc

// The SIP torture messages of RFC 4475 and RFC 5118 sent to a running SBC
// over UDP, TCP and TLS, to the core and to the access realm, each followed
// by an OPTIONS that must be answered 200: the SBC survives every message
// and keeps serving. The corpus and each message's expected outcome are in
// ../shared/testdata/sip-torture (README.md, MANIFEST.tsv).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/psigate/psigate/sbc/sbctest"
)

// tortureCorpus is the shared corpus, relative to this package.
const tortureCorpus = "../../shared/testdata/sip-torture"

const (
	// tortureQuiet is how long to wait for an answer to a message the
	// SBC may well drop (a response, a message its parser refuses):
	// silence is a legitimate outcome for those, so the wait is short.
	tortureQuiet = 300 * time.Millisecond
	// tortureAnswer bounds the wait for an answer that should come; it
	// is only reached when the SBC fails to answer.
	tortureAnswer = 3 * time.Second
	// tortureProbeWait bounds the OPTIONS that proves the SBC alive.
	tortureProbeWait = 5 * time.Second
	// tortureWorkers bounds the exchanges in flight: enough to finish
	// in a few seconds, few enough not to overrun the SBC's UDP socket
	// buffers.
	tortureWorkers = 48
)

var (
	tortureTransports = []string{"udp", "tcp", "tls"}
	tortureRealms     = []string{"core", "access"}
)

// tortureMsg is one file of the corpus.
type tortureMsg struct {
	name   string // subtest name: "valid.wsinv", "rfc5118-archive.ipv6-good"
	file   string // path in the corpus: "valid/wsinv.dat"
	entry  string // its manifest entry: "valid/wsinv"
	raw    []byte
	valid  bool   // in valid/ (an archived copy: its CRLF twin's class)
	lf     bool   // an archived RFC 5118 copy with LF line endings
	should string // the manifest's "a robust element should"

	response bool   // the start line is a status line
	method   string // the request method of the start line
	// frames counts the messages a stream receiver can delimit, read
	// by Content-Length (RFC 3261 section 18.3); 0 when the first one
	// cannot be, e.g. it has no Content-Length or no end of headers.
	frames int
	// framedAll: the frames take up all the octets; otherwise octets
	// that cannot be framed follow them on a stream.
	framedAll bool
	// viaPort is where an answer over UDP goes: RFC 3261 section 18.2.2
	// sends it to the source address and the port of the top Via
	// (5060 by default), or to the source port with rport.
	viaPort int
	// txKeys identify the server transactions the message starts
	// (branch and method, or the RFC 2543 identifiers).
	txKeys []string
}

// tortureRule says what a message may get back, from the manifest and
// RFC 4475/5118, beyond the rules every message of its class follows.
type tortureRule struct {
	// liberal: the RFC lets an element accept the message as if it were
	// well formed ("or accept liberally", "or ignore the ..."), so the
	// answer a well-formed request gets is fine too.
	liberal bool
	// also are further acceptable status codes (505 for an unknown SIP
	// version, 501 for an unknown method).
	also []int
	// must is the only acceptable final status, when the RFC leaves no
	// choice (a MUST of RFC 3261), and mustHeader a header it must carry.
	must       int
	mustHeader string
	// prefer is the answer the RFC recommends where another is allowed
	// (a SHOULD); a different one is noted in the log, not failed.
	prefer int
}

var tortureRules = map[string]tortureRule{
	// RFC 4475 3.2.1: reject with 400, or fall back to RFC 2543
	// transaction matching and answer.
	"valid/badbranch": {also: []int{400}},
	// The INVITE after the REGISTER has no Contact, which RFC 3261
	// 8.1.1.8 requires of a request that makes a dialog: 400. On a
	// stream the CRLF between the two usually ends the connection first.
	"valid/dblreq": {also: []int{400}},
	// RFC 3261 8.2.2.3: a UAS that does not understand an option tag in
	// Require MUST answer 420 (Bad Extension) listing it in Unsupported;
	// psigate answers OPTIONS itself, as a UAS.
	"valid/bext01": {must: 420, mustHeader: "Unsupported"},
	// RFC 3261 8.2.2.1: a Request-URI scheme the UAS does not support
	// SHOULD get 416 (Unsupported URI Scheme).
	"valid/unkscm":  {prefer: 416},
	"valid/novelsc": {prefer: 416},

	"invalid/quotbal":    {liberal: true}, // "400 (or a careful inference)"
	"invalid/ltgtruri":   {liberal: true}, // "or ignore the brackets"
	"invalid/lwsruri":    {liberal: true}, // "or ignore the LWS where unambiguous"
	"invalid/lwsstart":   {liberal: true}, // "or accept liberally"
	"invalid/trws":       {liberal: true}, // "or accept liberally"
	"invalid/escruri":    {liberal: true}, // "or ignore the headers"
	"invalid/baddate":    {liberal: true}, // "ignore the Date header or reject"
	"invalid/regbadct":   {liberal: true}, // "or infer the brackets"
	"invalid/badaspec":   {liberal: true}, // "or ignore the spaces"
	"invalid/badvers":    {also: []int{505}},
	"invalid/mismatch02": {also: []int{501}},
}

// tortureKnown are the valid messages the SBC is known to refuse or
// leave unanswered because of its SIP stack, sipgo (not psigate's code),
// by manifest entry, optionally with a transport. They are logged, not
// failed, so that the test fails on anything new; an entry that no longer
// happens is logged too, to be removed.
var tortureKnown = map[string]string{
	"valid/wsinv": "sipgo's header parameter parser keeps the LWS around ';' and '=' " +
		`(From: ...CRLF  ;CRLF  tag = 98asjd8 gives the parameters " " and " tag "=" 98asjd8"), so the From tag is lost; ` +
		"the branch has no magic cookie, and sipgo's RFC 2543 transaction matching " +
		"needs a From tag, so its transaction layer answers 400 statelessly",
	"valid/inv2543 udp": "an RFC 2543 request without a From tag: sipgo's RFC 2543 transaction " +
		"matching needs one, so its transaction layer answers 400 statelessly",
	"valid/novelsc": "sipgo's URI parser refuses the Request-URI scheme soap.beep " +
		`("invalid uri scheme"), so the transport drops the message`,
	"valid/longreq udp": "the answer (it copies the long To, From, Call-ID and Vias) is " +
		"over sipgo's UDP limit (sip.UDPMTUSize-200 = 1300 octets): sipgo refuses to send it " +
		`("size of packet larger than MTU") and the client gets nothing`,
}

// loadTortureCorpus reads the corpus and its manifest; it skips the test
// when the corpus is not there.
func loadTortureCorpus(t *testing.T) []*tortureMsg {
	t.Helper()
	manifest, err := os.ReadFile(filepath.Join(tortureCorpus, "MANIFEST.tsv"))
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("the SIP torture corpus is not at %s", tortureCorpus)
	}
	if err != nil {
		t.Fatal(err)
	}
	should := map[string]string{}
	for line := range strings.Lines(string(manifest)) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 6 {
			t.Fatalf("MANIFEST.tsv: %d fields in %q", len(f), line)
		}
		should[f[0]] = f[5]
	}
	// SHA256SUMS pins the bytes: a fixture changed by an editor (line
	// endings, trailing spaces) would not torture anything.
	sums := map[string]string{}
	if b, err := os.ReadFile(filepath.Join(tortureCorpus, "SHA256SUMS")); err == nil {
		for line := range strings.Lines(string(b)) {
			if sum, file, ok := strings.Cut(strings.TrimSpace(line), "  "); ok {
				sums[file] = sum
			}
		}
	}
	var msgs []*tortureMsg
	seen := map[string]bool{}
	for _, dir := range []string{"valid", "invalid", "rfc5118-archive"} {
		files, err := os.ReadDir(filepath.Join(tortureCorpus, dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			base := strings.TrimSuffix(f.Name(), ".dat")
			m := &tortureMsg{name: dir + "." + base, file: dir + "/" + f.Name(), lf: dir == "rfc5118-archive"}
			if m.raw, err = os.ReadFile(filepath.Join(tortureCorpus, m.file)); err != nil {
				t.Fatal(err)
			}
			if want, ok := sums[m.file]; ok {
				if got := fmt.Sprintf("%x", sha256.Sum256(m.raw)); got != want {
					t.Fatalf("%s: SHA-256 %s, SHA256SUMS says %s", m.file, got, want)
				}
			}
			switch {
			case !m.lf:
				m.entry = dir + "/" + base
			case should["valid/"+base] != "":
				m.entry = "valid/" + base
			default:
				m.entry = "invalid/" + base
			}
			s, ok := should[m.entry]
			if !ok {
				t.Fatalf("%s has no entry in MANIFEST.tsv", m.file)
			}
			seen[m.entry] = true
			m.should, m.valid = s, strings.HasPrefix(m.entry, "valid/")
			m.classify()
			msgs = append(msgs, m)
		}
	}
	for e := range should {
		if !seen[e] {
			t.Errorf("MANIFEST.tsv lists %s, which is not in the corpus", e)
		}
	}
	if len(msgs) == 0 {
		t.Fatal("empty corpus")
	}
	return msgs
}

// classify reads what the test needs from the message: the start line,
// the stream framing, the Via port and the transaction keys. It reads the
// bytes itself but for the keys, which follow sipgo's parser (the SBC's
// own) so that two messages the SBC would take for one transaction never
// reach the same SBC.
func (m *tortureMsg) classify() {
	start, _, _ := bytes.Cut(m.raw, []byte("\n"))
	fields := strings.Fields(string(start))
	switch {
	case len(fields) > 0 && strings.HasPrefix(fields[0], "SIP/"):
		m.response = true
	case len(fields) > 0:
		m.method = fields[0]
	}
	m.frames, m.framedAll = tortureFrames(m.raw)
	m.viaPort = 5060
	keys := map[string]bool{}
	add := func(msg sip.Message) {
		req, ok := msg.(*sip.Request)
		if !ok {
			return
		}
		if k := tortureTxKey(req); k != "" {
			keys[k] = true
		}
	}
	if msg, err := sip.ParseMessage(m.raw); err == nil {
		add(msg)
		if req, ok := msg.(*sip.Request); ok && req.Via() != nil {
			v := req.Via()
			if v.Port > 0 {
				m.viaPort = v.Port
			}
			if rport, ok := v.Params.Get("rport"); ok && rport != "" {
				if p, err := strconv.Atoi(rport); err == nil {
					m.viaPort = p
				}
			}
		}
	}
	_ = sip.NewParser().NewSIPStream().ParseSIPStream(m.raw, add)
	for k := range keys {
		m.txKeys = append(m.txKeys, k)
	}
	slices.Sort(m.txKeys)
}

// tortureTxKey approximates the server transaction key of RFC 3261
// section 17.2.3 (sipgo's matching): branch, sent-by and method, or the
// RFC 2543 identifiers when the branch has no magic cookie. Coarser is
// fine: it only spreads messages over SBCs.
func tortureTxKey(req *sip.Request) string {
	cseq, via := req.CSeq(), req.Via()
	if cseq == nil || via == nil {
		return ""
	}
	method := cseq.MethodName
	if method == sip.ACK {
		method = sip.INVITE
	}
	if b, _ := via.Params.Get("branch"); strings.HasPrefix(b, sip.RFC3261BranchMagicCookie) && len(b) > len(sip.RFC3261BranchMagicCookie) {
		port := via.Port
		if port <= 0 {
			port = sip.DefaultPort(via.Transport)
		}
		return fmt.Sprintf("%s %s %s:%d", method, b, via.Host, port)
	}
	callID := ""
	if c := req.CallID(); c != nil {
		callID = c.Value()
	}
	return string(method) + " rfc2543 " + callID
}

// tortureFrames counts the messages in raw that a stream receiver can
// delimit: headers ending in an empty line, exactly one Content-Length
// (long or compact form) that is a number, and that many body octets.
// all says whether they take up all of raw.
func tortureFrames(raw []byte) (n int, all bool) {
	for len(raw) > 0 {
		end := bytes.Index(raw, []byte("\r\n\r\n"))
		if end < 0 {
			return n, false
		}
		var lengths []string
		for _, line := range strings.Split(string(raw[:end]), "\r\n") {
			if line == "" || line[0] == ' ' || line[0] == '\t' {
				continue // a folded line continues the previous header
			}
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			if name = strings.ToLower(strings.TrimSpace(name)); name == "content-length" || name == "l" {
				lengths = append(lengths, strings.TrimSpace(value))
			}
		}
		if len(lengths) != 1 {
			return n, false
		}
		size, err := strconv.ParseUint(lengths[0], 10, 31)
		body := raw[end+4:]
		if err != nil || int(size) > len(body) {
			return n, false
		}
		n++
		raw = body[size:]
	}
	return n, true
}

// tortureSBC is one SBC under test with its listeners.
type tortureSBC struct {
	svc   *Service
	addrs map[string]map[string]netip.AddrPort // realm -> transport -> listener
}

// tortureHarness holds the SBCs, the PBX and the client TLS settings.
type tortureHarness struct {
	sbcs []*tortureSBC
	// assign says which SBC takes a message over a transport.
	assign map[string]int // name + " " + transport -> index in sbcs
	tls    *tls.Config
	seq    atomic.Int64
	sem    chan struct{}

	mu      sync.Mutex
	results map[string]string // subtest name -> what happened
}

// TestSIPTorture sends every message of the RFC 4475 and RFC 5118 corpus
// to the SBC over UDP, TCP and TLS and to both realms, and checks what
// comes back against the manifest; after each message an OPTIONS on the
// same transport must be answered 200.
//
// Messages a stream transport cannot frame (no Content-Length, a
// Content-Length larger than the message or given twice, no empty line
// ending the headers) are sent over TCP and TLS as well: they are exactly
// the framing errors RFC 4475 discusses for TCP (3.1.2.2, 3.1.2.3, 3.1.2.15,
// 3.3.9, 3.4.1), and the SBC must survive them there too. On a stream no
// answer is required for them (the receiver waits for more data or closes
// the connection), but any answer must be a refusal; the OPTIONS then goes
// on a fresh connection, since the first one may be waiting for a body.
//
// The corpus reuses transaction identifiers: several messages share a
// branch, sent-by and method (the RFC 5118 ones all use
// z9hG4bKas3-111), and each message goes out over three transports. The
// SBC rightly takes a request matching a live server transaction for a
// retransmission (RFC 3261 section 17.2.3) and answers it where the
// first one came from, so every SBC here gets each transaction at most
// once: the test runs as many SBCs as needed (each with both realms and
// all three transports), sharing one Kamailio as the PBX.
func TestSIPTorture(t *testing.T) {
	msgs := loadTortureCorpus(t)
	k := sbctest.StartKamailio(t, sbctest.KamailioOptions{Users: map[string]string{"user": "torture-4475"}})
	tc := sbctest.NewCertificate(t)
	cert, tlsClient := tc.TLS, &tls.Config{RootCAs: tc.Pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}

	var logs tortureLog
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("end of the SBCs' log:\n%s", logs.tail(80))
		}
	})
	h := &tortureHarness{assign: map[string]int{}, tls: tlsClient, sem: make(chan struct{}, tortureWorkers), results: map[string]string{}}
	var used []map[string]bool
	for _, m := range msgs {
		for _, tr := range tortureTransports {
			i := 0
			for ; i < len(used); i++ {
				if !slices.ContainsFunc(m.txKeys, func(k string) bool { return used[i][k] }) {
					break
				}
			}
			if i == len(used) {
				used = append(used, map[string]bool{})
			}
			for _, k := range m.txKeys {
				used[i][k] = true
			}
			h.assign[m.name+" "+tr] = i
		}
	}
	for i := range used {
		h.sbcs = append(h.sbcs, startTortureSBC(t, k.Addr, cert, slog.New(slog.NewTextHandler(&logs, nil)).With("sbc", i)))
	}
	t.Logf("%d messages x %d transports x %d realms on %d SBCs", len(msgs), len(tortureTransports), len(tortureRealms), len(h.sbcs))

	start := time.Now()
	var wg sync.WaitGroup
	for _, m := range msgs {
		wg.Go(func() {
			t.Run(m.name, func(t *testing.T) {
				var wg sync.WaitGroup
				for _, tr := range tortureTransports {
					wg.Go(func() {
						t.Run(tr, func(t *testing.T) {
							var wg sync.WaitGroup
							for _, realm := range tortureRealms {
								wg.Go(func() {
									t.Run(realm, func(t *testing.T) { h.exercise(t, m, tr, realm) })
								})
							}
							wg.Wait()
						})
					})
				}
				wg.Wait()
			})
		})
	}
	wg.Wait()
	t.Logf("exchanges done in %s", time.Since(start).Round(time.Millisecond))

	// What reached the PBX: REGISTERs that passed psigate's checks.
	registers := 0
	for _, r := range k.Requests(t) {
		if r.Method == "REGISTER" {
			registers++
		}
	}
	t.Logf("Kamailio received %d relayed REGISTERs", registers)

	names := make([]string, 0, len(h.results))
	for n := range h.results {
		names = append(names, n)
	}
	slices.Sort(names)
	var sb strings.Builder
	for _, n := range names {
		fmt.Fprintf(&sb, "%-58s %s\n", n, h.results[n])
	}
	t.Logf("outcomes:\n%s", sb.String())

	// Whatever the corpus's INVITEs got, none may leave a call or a
	// media session behind on any SBC: nothing stays half-open.
	deadline := time.Now().Add(10 * time.Second)
	for i, sbc := range h.sbcs {
		for {
			calls, sessions := sbc.svc.calls.Load().Active(), sbc.svc.engine.Load().Active()
			if calls == 0 && sessions == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("SBC %d holds %d calls and %d media sessions after the corpus, want none", i, calls, sessions)
				break
			}
			time.Sleep(10 * time.Millisecond) // polling interval
		}
	}
}

// tortureSBCs counts the realms given media ranges, so each gets its own.
var tortureSBCs atomic.Int32

// startTortureSBC runs an SBC on loopback with both realms on UDP, TCP and
// TLS, and the Kamailio at pbx as its only PBX node (over TCP).
func startTortureSBC(t *testing.T, pbx netip.AddrPort, cert tls.Certificate, log *slog.Logger) *tortureSBC {
	t.Helper()
	cfg := Default()
	cfg.Calls.OpenToUnregistered = true // the corpus's INVITEs come from no subscriber
	cfg.SIPServer.NodeGroups = []NodeGroup{{Name: "kamailio", Nodes: []Node{{
		Name: "node1", Priority: 1, Address: pbx.Addr().String(), Transport: TransportTCP, Port: int(pbx.Port()),
	}}}}
	lo := netip.MustParseAddr("127.0.0.1")
	for attempt := 1; ; attempt++ {
		ports := tortureFreePorts(t, 2)
		sbc := &tortureSBC{svc: NewService(log, nil, nil), addrs: map[string]map[string]netip.AddrPort{}}
		var realms []Realm
		for i, name := range tortureRealms {
			p := ports[i]
			// Media ports from a range of the SBC's own: a real
			// deployment has them, and INVITEs need them.
			base := 36000 + int(tortureSBCs.Add(1))*40
			realms = append(realms, Realm{Name: name, Role: name, Bind: lo, Advertise: "127.0.0.1", UDP: p[0], TCP: p[1], TLS: p[2],
				MediaMin: base, MediaMax: base + 39})
			sbc.addrs[name] = map[string]netip.AddrPort{}
			for j, tr := range tortureTransports {
				sbc.addrs[name][tr] = netip.AddrPortFrom(lo, uint16(p[j]))
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		err := sbc.svc.Apply(ctx, Desired{Config: cfg, Realms: realms, Certificate: cert})
		if err != nil {
			// A port picked free may have been taken since: try others.
			// Run with its context ended closes what did open.
			cancel()
			_ = sbc.svc.Run(ctx)
			if attempt < 5 {
				continue
			}
			t.Fatalf("starting the SBC: %v", err)
		}
		done := make(chan error, 1)
		go func() { done <- sbc.svc.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("SBC Run: %v", err)
			}
		})
		return sbc
	}
}

// tortureFreePorts returns, n times, a UDP, a TCP and a TCP port (for
// TLS) free on 127.0.0.1, all different.
func tortureFreePorts(t *testing.T, n int) [][3]int {
	t.Helper()
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	out := make([][3]int, n)
	for i := range out {
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		closers = append(closers, u)
		out[i][0] = u.LocalAddr().(*net.UDPAddr).Port
		for j := 1; j <= 2; j++ {
			l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			closers = append(closers, l)
			out[i][j] = l.Addr().(*net.TCPAddr).Port
		}
	}
	return out
}

// tortureLog collects the SBCs' log, for a failing test.
type tortureLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *tortureLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *tortureLog) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.SplitAfter(l.buf.String(), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "")
}

// tortureExchange is what came back for a torture message.
type tortureExchange struct {
	responses []*sip.Response
	garbage   int  // received octets that were no SIP message
	requests  int  // requests received instead of responses
	closed    bool // the SBC closed the connection
}

func (x *tortureExchange) finals() []*sip.Response {
	var out []*sip.Response
	for _, r := range x.responses {
		if r.StatusCode >= 200 {
			out = append(out, r)
		}
	}
	return out
}

func (x *tortureExchange) String() string {
	var parts []string
	for _, r := range x.responses {
		parts = append(parts, fmt.Sprintf("%d %s", r.StatusCode, r.Reason))
	}
	if len(parts) == 0 {
		parts = append(parts, "no answer")
	}
	if x.garbage > 0 {
		parts = append(parts, fmt.Sprintf("%d octets of non-SIP", x.garbage))
	}
	if x.requests > 0 {
		parts = append(parts, fmt.Sprintf("%d requests", x.requests))
	}
	if x.closed {
		parts = append(parts, "connection closed")
	}
	return strings.Join(parts, ", ")
}

// exercise sends one message to one realm over one transport, checks what
// came back and that the SBC still answers OPTIONS there.
func (h *tortureHarness) exercise(t *testing.T, m *tortureMsg, tr, realm string) {
	h.sem <- struct{}{}
	defer func() { <-h.sem }()
	sbc := h.sbcs[h.assign[m.name+" "+tr]]
	to := sbc.addrs[realm][tr]
	id := fmt.Sprintf("torture-%d-%08x", h.seq.Add(1), mrand.Uint32())

	// How many answers to wait for: one per request the SBC can
	// delimit. The wait is short when none is due.
	want := 1
	if tr != "udp" {
		want = m.frames
	}
	if m.response || m.lf {
		want = 0
	}
	wait := tortureQuiet
	_, known := tortureKnown[m.entry+" "+tr]
	if _, all := tortureKnown[m.entry]; want > 0 && tortureParses(m.raw, tr) && !known && !all {
		wait = tortureAnswer
	}

	var ex tortureExchange
	var probe *sip.Response
	var visible = true
	var err error
	if tr == "udp" {
		ex, probe, visible, err = h.udp(m, to, id, wait, max(want, 1))
	} else {
		ex, probe, err = h.stream(m, tr, to, id, wait, max(want, 1))
	}
	outcome := ex.String()
	if !visible {
		outcome += " (answers to the Via port not observable)"
	}
	h.mu.Lock()
	h.results[t.Name()] = outcome
	h.mu.Unlock()
	t.Logf("%s: %s", m.file, outcome)
	if err != nil {
		t.Fatalf("after %s, OPTIONS over %s to the %s realm: %v", m.file, tr, realm, err)
	}
	if probe.StatusCode != 200 {
		t.Errorf("after %s, OPTIONS over %s to the %s realm: %d %s, want 200", m.file, tr, realm, probe.StatusCode, probe.Reason)
	}
	if !visible {
		return
	}
	problems, notes := m.check(tr, realm, &ex)
	for _, p := range problems {
		t.Errorf("%s over %s to the %s realm: %s\n(RFC: %s)", m.file, tr, realm, p, m.should)
	}
	for _, n := range notes {
		t.Logf("note: %s", n)
		h.mu.Lock()
		if len(n) > 90 {
			n = n[:90] + "..."
		}
		h.results[t.Name()] += "; " + n
		h.mu.Unlock()
	}
}

// tortureParses says whether sipgo (the SBC's parser) takes the message,
// only to choose how long to wait for its answer.
func tortureParses(raw []byte, tr string) bool {
	if tr == "udp" {
		msg, err := sip.ParseMessage(raw)
		_, req := msg.(*sip.Request)
		return err == nil && req
	}
	n := 0
	_ = sip.NewParser().NewSIPStream().ParseSIPStream(raw, func(msg sip.Message) {
		if _, ok := msg.(*sip.Request); ok {
			n++
		}
	})
	return n > 0
}

// check returns what is wrong with the answers to m (problems) and what
// is worth noting (known deviations, answers the RFC does not prefer).
func (m *tortureMsg) check(tr, realm string, ex *tortureExchange) (problems, notes []string) {
	finals := ex.finals()
	if m.response {
		// RFC 3261 section 18.1.2: a response matching no transaction
		// is dropped; it is never answered.
		for _, r := range ex.responses {
			problems = append(problems, fmt.Sprintf("answered a response with %d %s", r.StatusCode, r.Reason))
		}
		return problems, nil
	}
	// The requests a receiver must take: over UDP the datagram's first
	// message (RFC 3261 section 18.3: trailing octets are ignored); on
	// a stream each message it can delimit. Answers are owed on a
	// stream only when no octets it cannot frame follow: at such a
	// framing error the receiver may close the connection at once (RFC
	// 4475 3.1.2.2) and so lose the answers.
	framed, owed := 1, 1
	if tr != "udp" {
		framed, owed = m.frames, m.frames
		if !m.framedAll {
			owed = 0
		}
	}
	wellFormed := m.valid && !m.lf && framed > 0
	rule := tortureRules[m.entry]
	known, ok := tortureKnown[m.entry+" "+tr]
	if !ok {
		known = tortureKnown[m.entry]
	}
	var deviations []string
	for i, r := range finals {
		method := m.method
		if cs := r.CSeq(); cs != nil {
			method = string(cs.MethodName)
		}
		p, refused := m.judge(r, method, realm, wellFormed && i < framed, rule)
		switch {
		case p == "":
		case refused:
			deviations = append(deviations, p)
		default:
			problems = append(problems, p)
		}
		if rule.prefer != 0 && r.StatusCode != rule.prefer {
			notes = append(notes, fmt.Sprintf("answered %d %s where RFC 4475 prefers %d", r.StatusCode, r.Reason, rule.prefer))
		}
	}
	if wellFormed && len(finals) < owed {
		deviations = append(deviations, fmt.Sprintf("a well-formed request got %d final answers, want %d", len(finals), owed))
	}
	if wellFormed && len(finals) < framed && owed == 0 {
		notes = append(notes, fmt.Sprintf("%d requests framed before octets that cannot be; %d answered", framed, len(finals)))
	}
	switch {
	case len(deviations) > 0 && known != "":
		for _, d := range deviations {
			notes = append(notes, "known sipgo deviation: "+d+": "+known)
		}
	case len(deviations) > 0:
		problems = append(problems, deviations...)
	case known != "":
		notes = append(notes, "known sipgo deviation no longer seen, drop it from tortureKnown: "+known)
	}
	return problems, notes
}

// judge checks one final answer to a request with the given method (as
// its CSeq says); wellFormed says whether the corpus holds the request
// valid (and it came in a frame a receiver can delimit). refused says the
// problem is a valid request refused as malformed, which tortureKnown may
// excuse.
func (m *tortureMsg) judge(r *sip.Response, method, realm string, wellFormed bool, rule tortureRule) (problem string, refused bool) {
	code := r.StatusCode
	got := fmt.Sprintf("%d %s", code, r.Reason)
	if rule.must != 0 {
		if code != rule.must {
			return fmt.Sprintf("answered %s, want %d", got, rule.must), false
		}
		if rule.mustHeader != "" && r.GetHeader(rule.mustHeader) == nil {
			return fmt.Sprintf("answered %s without %s", got, rule.mustHeader), false
		}
		return "", false
	}
	if slices.Contains(rule.also, code) {
		return "", false
	}
	if method == "REGISTER" && m.method == "REGISTER" && (wellFormed || rule.liberal) {
		// psigate takes registrations on the access realm only; there
		// it refuses what it cannot relay with a 4xx of its own or
		// relays to the PBX, whose answer (a challenge from Kamailio)
		// comes back. Never a 5xx: the relay and the PBX are up.
		if realm == "core" {
			if code != 403 {
				return fmt.Sprintf("REGISTER on the core realm answered %s, want 403", got), false
			}
			return "", false
		}
		if code >= 500 {
			return fmt.Sprintf("REGISTER answered %s, want the PBX's answer or a 4xx refusal", got), false
		}
		if code == 401 && r.GetHeader("WWW-Authenticate") == nil {
			return fmt.Sprintf("REGISTER answered %s without the PBX's WWW-Authenticate", got), false
		}
		return "", false
	}
	if wellFormed || rule.liberal {
		// Accepted as well formed: any answer but a refusal of its
		// syntax (400) or a server error; 501 is the answer to methods
		// not implemented yet, psigate's or, for INVITEs it relays, the
		// Kamailio stand-in's.
		switch {
		case code == 400 && !rule.liberal:
			return fmt.Sprintf("refused a well-formed request: %s", got), true
		case code >= 500 && code != 501:
			return fmt.Sprintf("answered %s", got), false
		}
		return "", false
	}
	// Invalid: refused with a 4xx, or dropped.
	if code < 400 || code >= 500 {
		return fmt.Sprintf("answered an invalid request with %s, want a 4xx or no answer", got), false
	}
	return "", false
}

// udp sends the message in one datagram from 127.x.y.z:viaPort and reads
// the answers there, then probes with an OPTIONS from the same socket.
// visible is false when no socket could take that port, so answers sent
// to the Via port cannot be seen.
func (h *tortureHarness) udp(m *tortureMsg, to netip.AddrPort, id string, wait time.Duration, want int) (ex tortureExchange, probe *sip.Response, visible bool, err error) {
	conn, visible := tortureUDPSocket(m.viaPort)
	if conn == nil {
		return ex, nil, false, errors.New("no UDP socket")
	}
	defer conn.Close()
	// When an answer is due, the datagram is retransmitted as an RFC
	// 3261 client transaction would (Timer E/A: 500 ms, doubling), so
	// a datagram lost in a full socket buffer is no false failure; the
	// SBC takes the copies for retransmissions.
	buf := make([]byte, 65536)
	deadline := time.Now().Add(wait)
	next, interval := time.Now(), 500*time.Millisecond
	for len(ex.finals()) < want && time.Now().Before(deadline) {
		if !time.Now().Before(next) {
			if _, err := conn.WriteToUDPAddrPort(m.raw, to); err != nil {
				return ex, nil, visible, err
			}
			next, interval = time.Now().Add(interval), 2*interval
			if wait <= tortureQuiet {
				next = deadline // nothing due: send once
			}
		}
		conn.SetReadDeadline(tortureEarlier(next, deadline))
		n, _, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			continue
		}
		if res, ok := tortureResponse(buf[:n]); ok {
			ex.responses = append(ex.responses, res)
		} else {
			ex.garbage += n
		}
	}

	// The OPTIONS, retransmitted as RFC 3261 Timer E would (500 ms, then
	// doubling), until its 200 comes or tortureProbeWait passes.
	opts := tortureOptions("UDP", conn.LocalAddr().String(), to, id)
	end := time.Now().Add(tortureProbeWait)
	interval = 500 * time.Millisecond
	for next := time.Now(); time.Now().Before(end); {
		if !time.Now().Before(next) {
			if _, err := conn.WriteToUDPAddrPort(opts, to); err != nil {
				return ex, nil, visible, err
			}
			next = time.Now().Add(interval)
			interval = min(2*interval, 4*time.Second)
		}
		conn.SetReadDeadline(tortureEarlier(next, end))
		n, _, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			continue
		}
		res, ok := tortureResponse(buf[:n])
		switch {
		case !ok:
			ex.garbage += n
		case res.CallID() != nil && res.CallID().Value() == id:
			if res.StatusCode >= 200 {
				return ex, res, visible, nil
			}
		default:
			// A late answer to the torture message, or its
			// retransmission (an INVITE's final answer is resent
			// until ACKed).
			if !slices.ContainsFunc(ex.responses, func(r *sip.Response) bool { return r.StatusCode == res.StatusCode }) {
				ex.responses = append(ex.responses, res)
			}
		}
	}
	return ex, nil, visible, fmt.Errorf("no answer within %s", tortureProbeWait)
}

func tortureEarlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// tortureUDPSocket binds a UDP socket to port on a random address of
// 127.0.0.0/8 other than 127.0.0.1, so that answers sent to the top Via's
// port (which is 5060 for most messages) reach it while parallel
// exchanges, and other processes, keep apart. Failing that, it binds any
// port on 127.0.0.1 and says the Via port's answers are not visible.
func tortureUDPSocket(port int) (*net.UDPConn, bool) {
	for range 20 {
		ip := net.IPv4(127, byte(1+mrand.IntN(254)), byte(mrand.IntN(256)), byte(1+mrand.IntN(254)))
		if c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: port}); err == nil {
			return c, true
		}
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, false
	}
	return c, false
}

// stream sends the message on a fresh TCP or TLS connection and reads the
// answers, then probes with an OPTIONS on another fresh connection (the
// first may be waiting for the rest of a body).
func (h *tortureHarness) stream(m *tortureMsg, tr string, to netip.AddrPort, id string, wait time.Duration, want int) (ex tortureExchange, probe *sip.Response, err error) {
	conn, err := h.dial(tr, to)
	if err != nil {
		return ex, nil, err
	}
	if _, err := conn.Write(m.raw); err != nil {
		// The SBC may close as soon as it sees garbage.
		ex.closed = true
	} else {
		ex = tortureRead(conn, time.Now().Add(wait), want, "")
	}
	conn.Close()

	conn, err = h.dial(tr, to)
	if err != nil {
		return ex, nil, fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write(tortureOptions(strings.ToUpper(tr), conn.LocalAddr().String(), to, id)); err != nil {
		return ex, nil, err
	}
	px := tortureRead(conn, time.Now().Add(tortureProbeWait), 1, id)
	if f := px.finals(); len(f) > 0 {
		return ex, f[0], nil
	}
	return ex, nil, fmt.Errorf("no answer within %s (%s)", tortureProbeWait, px.String())
}

func (h *tortureHarness) dial(tr string, to netip.AddrPort) (net.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if tr == "tls" {
		conn, err := tls.DialWithDialer(d, "tcp", to.String(), h.tls)
		if err != nil {
			return nil, err
		}
		return conn, nil
	}
	return d.Dial("tcp", to.String())
}

// tortureRead reads SIP responses from a stream until want final ones
// (with Call-ID callID, if set) came, the deadline passed or the peer
// closed the connection.
func tortureRead(conn net.Conn, deadline time.Time, want int, callID string) tortureExchange {
	var ex tortureExchange
	par := sip.NewParser().NewSIPStream()
	buf := make([]byte, 65536)
	finals := 0
	for finals < want {
		conn.SetReadDeadline(deadline)
		n, err := conn.Read(buf)
		if n > 0 {
			perr := par.ParseSIPStream(buf[:n], func(msg sip.Message) {
				res, ok := msg.(*sip.Response)
				if !ok {
					ex.requests++
					return
				}
				if callID != "" && (res.CallID() == nil || res.CallID().Value() != callID) {
					return
				}
				ex.responses = append(ex.responses, res)
				if res.StatusCode >= 200 {
					finals++
				}
			})
			if perr != nil && !errors.Is(perr, sip.ErrParseSipPartial) {
				ex.garbage += n
				par = sip.NewParser().NewSIPStream()
			}
		}
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				ex.closed = true
			}
			break
		}
	}
	return ex
}

// tortureResponse parses a datagram as a SIP response.
func tortureResponse(b []byte) (*sip.Response, bool) {
	msg, err := sip.ParseMessage(b)
	if err != nil {
		return nil, false
	}
	res, ok := msg.(*sip.Response)
	return res, ok
}

// tortureOptions is a well-formed OPTIONS to the SBC at to, sent from
// local, with id as its Call-ID, tag and branch.
func tortureOptions(transport, local string, to netip.AddrPort, id string) []byte {
	return []byte("OPTIONS sip:" + to.String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/" + transport + " " + local + ";rport;branch=z9hG4bK-" + id + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:probe@psigate.test>;tag=" + id + "\r\n" +
		"To: <sip:" + to.String() + ">\r\n" +
		"Call-ID: " + id + "\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Accept: application/sdp\r\n" +
		"Content-Length: 0\r\n\r\n")
}
