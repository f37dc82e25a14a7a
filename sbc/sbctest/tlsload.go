package sbctest

import (
	"bufio"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// TLS registration load: many SIP clients, each on a TLS connection of its
// own, register with digest authentication and keep their connections
// open, as Zoom PSI clients do with the SBC's access realm. Debian's SIPp
// is built without TLS, hence this small client. It speaks just enough
// SIP for REGISTER: it writes its requests by hand and reads responses
// framed by Content-Length.

// TLSLoadOptions configures ConnectTLS and RegisterTLS.
type TLSLoadOptions struct {
	// Target is the TLS listener to register at, e.g. the SBC's access
	// realm.
	Target netip.AddrPort
	// Users register once each, on a TLS connection of their own.
	Users []string
	// Passwords maps a user to its password; Password, when set, is
	// asked instead.
	Passwords map[string]string
	Password  func(user string) string
	// Domain is the host of the AOR and the Request-URI; KamailioRealm
	// when empty.
	Domain string
	// Concurrency is how many users connect (or register) at once; 50
	// when 0.
	Concurrency int
	// Expires is the registration expiry asked for, in seconds; 3600
	// when 0 (the SBC refuses less than its minIntervalSeconds, 300 by
	// default, and with register throttling grants TLS clients less).
	Expires int
	// RootCAs verifies the server's certificate; with InsecureSkipVerify
	// it is not verified at all, which a test against a self-signed
	// certificate it did not make (the appliance's own) may do: the load
	// is on loopback, and what is measured is the server, not the
	// client's checks.
	RootCAs            *x509.CertPool
	InsecureSkipVerify bool
	// ServerName is the name verified in the certificate; Target's
	// address when empty.
	ServerName string
	// Timeout bounds each connect (TCP and TLS handshake) and each wait
	// for a response; 10 seconds when 0.
	Timeout time.Duration
	// UserAgent is sent in every REGISTER; "sbctest-tlsload" when empty.
	UserAgent string
}

// TLSLoadResult counts what a run did.
type TLSLoadResult struct {
	// Users is how many users the run was for.
	Users int
	// Connected is how many TLS connections are open (handshake done);
	// Registered how many users got a 200 for their REGISTER; Failed
	// how many did not (connect failures included).
	Connected, Registered, Failed int
	// Failures counts the failed users by reason, such as "connect:
	// connection refused", "register: status 403 Forbidden" or
	// "register: timeout".
	Failures map[string]int
	// Examples are the first few failures in full, with the user.
	Examples []string
	// Elapsed is the time the call took.
	Elapsed time.Duration
	// Granted is the shortest expiry a 200 granted, in seconds (with
	// register throttling, the SBC's client timer); 0 when none said.
	Granted int

	load *TLSLoad
}

// Close closes the run's connections: the server sees its clients go.
func (r TLSLoadResult) Close() error {
	if r.load == nil {
		return nil
	}
	return r.load.Close()
}

// Rate is the registrations a second over Elapsed.
func (r TLSLoadResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Registered) / r.Elapsed.Seconds()
}

// String gives the counts on one line, for test logs.
func (r TLSLoadResult) String() string {
	s := fmt.Sprintf("%d users: %d connected, %d registered, %d failed in %v", r.Users, r.Connected, r.Registered, r.Failed, r.Elapsed.Round(time.Millisecond))
	if len(r.Failures) > 0 {
		s += fmt.Sprintf("; failures %v; e.g. %s", r.Failures, strings.Join(r.Examples, "; "))
	}
	return s
}

// TLSLoad is a set of TLS SIP clients with their connections open. Its
// methods are not for concurrent use.
type TLSLoad struct {
	opts   TLSLoadOptions
	tlsCfg *tls.Config
	subs   []*tlsSub // connected, in the order of opts.Users
	// connect failures, carried into every result
	connFailures map[string]int
	connExamples []string
	connFailed   int
}

// tlsSub is one client: a user on its TLS connection, with its
// registration dialog.
type tlsSub struct {
	user, pass string
	conn       *tls.Conn
	r          *bufio.Reader
	local      string // host:port of the connection's own end
	callID     string
	fromTag    string
	cseq       uint32
	registered bool
	granted    int
}

const (
	defaultLoadConcurrency = 50
	defaultLoadExpires     = 3600
	defaultLoadTimeout     = 10 * time.Second
	maxExamples            = 5
	// fdHeadroom are the descriptors a test needs beside the clients'
	// connections (its own files, pipes, listeners, other peers).
	fdHeadroom = 256
)

// RegisterTLS connects every user of opts (ConnectTLS) and registers it
// (Register), and leaves the connections open: the result's Close closes
// them. Elapsed covers both steps. The error is for bad options, a file
// descriptor limit too low for the load, or ctx ending; a user that fails
// is counted in the result instead.
func RegisterTLS(ctx context.Context, opts TLSLoadOptions) (TLSLoadResult, error) {
	start := time.Now()
	l, err := ConnectTLS(ctx, opts)
	if err != nil {
		return TLSLoadResult{}, err
	}
	res, err := l.Register(ctx)
	res.Elapsed = time.Since(start)
	return res, err
}

// ConnectTLS opens one TLS connection (TCP, then the TLS handshake) per
// user of opts to opts.Target, Concurrency at a time, and sends nothing on
// them yet. A user whose connection fails is counted in the results of
// Register; the error is for bad options, a file descriptor limit too low,
// or ctx ending (the connections made so far are then closed).
//
// One connection is one file descriptor: ConnectTLS raises the process's
// soft RLIMIT_NOFILE to its hard limit when the users need more (Go
// programs start with the soft limit at the hard one already, but a
// parent may have lowered it); on the development machines and CI the hard
// limit is 20000, so one process holds at most about 19,700 clients.
func ConnectTLS(ctx context.Context, opts TLSLoadOptions) (*TLSLoad, error) {
	if !opts.Target.IsValid() {
		return nil, errors.New("sbctest: TLS load without a target")
	}
	if opts.Passwords == nil && opts.Password == nil {
		return nil, errors.New("sbctest: TLS load without passwords")
	}
	if opts.Domain == "" {
		opts.Domain = KamailioRealm
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = defaultLoadConcurrency
	}
	if opts.Expires == 0 {
		opts.Expires = defaultLoadExpires
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultLoadTimeout
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "sbctest-tlsload"
	}
	if opts.ServerName == "" {
		opts.ServerName = opts.Target.Addr().String()
	}
	if err := raiseFileLimit(len(opts.Users) + fdHeadroom); err != nil {
		return nil, err
	}
	l := &TLSLoad{
		opts: opts,
		tlsCfg: &tls.Config{
			MinVersion:         tls.VersionTLS12,
			RootCAs:            opts.RootCAs,
			ServerName:         opts.ServerName,
			InsecureSkipVerify: opts.InsecureSkipVerify,
		},
		connFailures: map[string]int{},
	}
	subs := make([]*tlsSub, len(opts.Users))
	var mu sync.Mutex
	l.each(ctx, len(opts.Users), func(i int) {
		user := opts.Users[i]
		pass := ""
		if opts.Password != nil {
			pass = opts.Password(user)
		} else {
			pass = opts.Passwords[user]
		}
		s, err := l.connect(ctx, user, pass)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			l.connFailed++
			l.connFailures[reason("connect", err)]++
			if len(l.connExamples) < maxExamples {
				l.connExamples = append(l.connExamples, fmt.Sprintf("%s: connect: %v", user, err))
			}
			return
		}
		subs[i] = s
	})
	for _, s := range subs {
		if s != nil {
			l.subs = append(l.subs, s)
		}
	}
	if err := ctx.Err(); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// raiseFileLimit makes sure the process may hold need file descriptors.
func raiseFileLimit(need int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("sbctest: reading RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur >= uint64(need) {
		return nil
	}
	if lim.Max < uint64(need) {
		return fmt.Errorf("sbctest: the load needs about %d file descriptors, but RLIMIT_NOFILE's hard limit is %d", need, lim.Max)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("sbctest: raising RLIMIT_NOFILE to %d: %w", lim.Max, err)
	}
	return nil
}

// each runs f for 0..n-1, Concurrency at a time, until ctx ends.
func (l *TLSLoad) each(ctx context.Context, n int, f func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(l.opts.Concurrency, n) {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
}

// connect opens a user's TLS connection.
func (l *TLSLoad) connect(ctx context.Context, user, pass string) (*tlsSub, error) {
	ctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: l.tlsCfg}
	c, err := d.DialContext(ctx, "tcp", l.opts.Target.String())
	if err != nil {
		return nil, err
	}
	conn := c.(*tls.Conn)
	return &tlsSub{
		user: user, pass: pass, conn: conn,
		r:       bufio.NewReader(conn),
		local:   conn.LocalAddr().String(),
		callID:  token() + "@sbctest",
		fromTag: token(),
	}, nil
}

// Connected is how many connections are open.
func (l *TLSLoad) Connected() int { return len(l.subs) }

// Register registers every connected user over its own connection,
// Concurrency at a time: a REGISTER, the 401 (or 407) challenge, the
// REGISTER with credentials, the 200. A user already registered refreshes
// its registration instead (same Call-ID, next CSeq), as a client does
// before its expiry; a server that relays the refresh and challenges it
// gets credentials again. The connections stay open. Elapsed is this
// call's time; the error is for ctx ending.
func (l *TLSLoad) Register(ctx context.Context) (TLSLoadResult, error) {
	start := time.Now()
	type outcome struct {
		reason, example string
	}
	outcomes := make([]outcome, len(l.subs))
	l.each(ctx, len(l.subs), func(i int) {
		s := l.subs[i]
		if err := l.register(ctx, s); err != nil {
			s.registered = false
			outcomes[i] = outcome{reason: reason("register", err), example: fmt.Sprintf("%s: register: %v", s.user, err)}
			return
		}
		s.registered = true
		outcomes[i] = outcome{reason: "ok"}
	})
	res := TLSLoadResult{
		Users: len(l.opts.Users), Connected: len(l.subs), Failed: l.connFailed,
		Failures: map[string]int{}, Examples: slices.Clone(l.connExamples), load: l,
	}
	for k, v := range l.connFailures {
		res.Failures[k] = v
	}
	for i, o := range outcomes {
		switch o.reason {
		case "ok":
			res.Registered++
			if g := l.subs[i].granted; g > 0 && (res.Granted == 0 || g < res.Granted) {
				res.Granted = g
			}
		case "":
			res.Failed++ // not tried: ctx ended
			res.Failures["register: not tried"]++
		default:
			res.Failed++
			res.Failures[o.reason]++
			if len(res.Examples) < maxExamples {
				res.Examples = append(res.Examples, o.example)
			}
		}
	}
	res.Elapsed = time.Since(start)
	return res, ctx.Err()
}

// Close closes every connection.
func (l *TLSLoad) Close() error {
	var errs []error
	for _, s := range l.subs {
		if err := s.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	l.subs = nil
	return errors.Join(errs...)
}

// register runs one registration transaction chain on s's connection.
func (l *TLSLoad) register(ctx context.Context, s *tlsSub) error {
	// A deadline in the past ends a blocked read or write when ctx ends.
	stop := context.AfterFunc(ctx, func() { s.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var auth, authHeader string
	authorized := false
	for attempt := 0; attempt < 3; attempt++ {
		s.cseq++
		if err := s.conn.SetDeadline(time.Now().Add(l.opts.Timeout)); err != nil {
			return err
		}
		if _, err := io.WriteString(s.conn, l.request(s, authHeader, auth)); err != nil {
			return err
		}
		res, err := s.readResponse()
		if err != nil {
			return err
		}
		switch {
		case res.status >= 200 && res.status < 300:
			s.granted = grantedExpiry(res, s.contactURI(), l.opts.Expires)
			return s.conn.SetDeadline(time.Time{})
		case res.status == 401 || res.status == 407:
			header, answer := "WWW-Authenticate", "Authorization"
			if res.status == 407 {
				header, answer = "Proxy-Authenticate", "Proxy-Authorization"
			}
			ch, err := pickChallenge(res.all(header))
			if err != nil {
				return fmt.Errorf("status %d: %w", res.status, err)
			}
			if authorized && !strings.EqualFold(ch.params["stale"], "true") {
				return fmt.Errorf("status %d %s after credentials", res.status, res.reason)
			}
			auth, err = digestAuthorization(ch, "REGISTER", l.requestURI(), s.user, s.pass, token(), "00000001")
			if err != nil {
				return err
			}
			authHeader, authorized = answer, true
		default:
			return fmt.Errorf("status %d %s", res.status, res.reason)
		}
	}
	return errors.New("still challenged after 3 REGISTERs")
}

func (l *TLSLoad) requestURI() string { return "sip:" + l.opts.Domain }

func (s *tlsSub) contactURI() string { return "sip:" + s.user + "@" + s.local + ";transport=tls" }

// request is s's next REGISTER.
func (l *TLSLoad) request(s *tlsSub, authHeader, auth string) string {
	aor := "sip:" + s.user + "@" + l.opts.Domain
	var b strings.Builder
	fmt.Fprintf(&b, "REGISTER %s SIP/2.0\r\n", l.requestURI())
	fmt.Fprintf(&b, "Via: SIP/2.0/TLS %s;branch=z9hG4bK-%s;rport\r\n", s.local, token())
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <%s>;tag=%s\r\n", aor, s.fromTag)
	fmt.Fprintf(&b, "To: <%s>\r\n", aor)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", s.callID)
	fmt.Fprintf(&b, "CSeq: %d REGISTER\r\n", s.cseq)
	fmt.Fprintf(&b, "Contact: <%s>\r\n", s.contactURI())
	fmt.Fprintf(&b, "Expires: %d\r\n", l.opts.Expires)
	if auth != "" {
		fmt.Fprintf(&b, "%s: %s\r\n", authHeader, auth)
	}
	fmt.Fprintf(&b, "User-Agent: %s\r\n", l.opts.UserAgent)
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

// response is a SIP response, read minimally.
type response struct {
	status  int
	reason  string
	headers [][2]string // canonical lower-case name, value
}

// all returns the values of every header of that name.
func (r *response) all(name string) []string {
	var out []string
	for _, h := range r.headers {
		if h[0] == strings.ToLower(name) {
			out = append(out, h[1])
		}
	}
	return out
}

func (r *response) first(name string) string {
	if v := r.all(name); len(v) > 0 {
		return v[0]
	}
	return ""
}

// readResponse reads messages from s's connection until the final
// response to its current REGISTER: provisional responses, responses to
// other requests, requests from the server and keepalive CRLFs are
// skipped.
func (s *tlsSub) readResponse() (*response, error) {
	for {
		start, headers, err := readMessage(s.r)
		if err != nil {
			return nil, err
		}
		version, rest, _ := strings.Cut(start, " ")
		if version != "SIP/2.0" {
			continue // a request from the server; not answered here
		}
		code, reasonPhrase, _ := strings.Cut(rest, " ")
		status, err := strconv.Atoi(code)
		if err != nil || status < 100 || status > 699 {
			return nil, fmt.Errorf("bad status line %q", start)
		}
		res := &response{status: status, reason: reasonPhrase, headers: headers}
		num, method, _ := strings.Cut(strings.TrimSpace(res.first("cseq")), " ")
		if strings.TrimSpace(res.first("call-id")) != s.callID || num != strconv.FormatUint(uint64(s.cseq), 10) || strings.TrimSpace(method) != "REGISTER" {
			continue
		}
		if status < 200 {
			continue
		}
		return res, nil
	}
}

// compactHeaders are the compact header names of RFC 3261 section 7.3.3
// that matter here.
var compactHeaders = map[string]string{"i": "call-id", "l": "content-length", "m": "contact", "v": "via", "f": "from", "t": "to"}

// maxHeaderBytes bounds a message's start line and headers.
const maxHeaderBytes = 64 << 10

// readMessage reads one SIP message from a stream: the start line, the
// headers (folded lines joined, names lower-cased and compact forms
// expanded) and the body, whose length Content-Length gives (it is
// discarded). Empty lines before the start line (RFC 5626 keepalives) are
// skipped.
func readMessage(r *bufio.Reader) (start string, headers [][2]string, err error) {
	read := 0
	line := func() (string, error) {
		s, err := r.ReadString('\n')
		read += len(s)
		if err == nil && read > maxHeaderBytes {
			err = errors.New("message header too long")
		}
		if err != nil {
			if errors.Is(err, io.EOF) && s != "" {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		return strings.TrimRight(s, "\r\n"), nil
	}
	for start == "" {
		if start, err = line(); err != nil {
			return "", nil, err
		}
	}
	for {
		l, err := line()
		if err != nil {
			return "", nil, err
		}
		if l == "" {
			break
		}
		if (l[0] == ' ' || l[0] == '\t') && len(headers) > 0 {
			headers[len(headers)-1][1] += " " + strings.TrimSpace(l)
			continue
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			return "", nil, fmt.Errorf("bad header line %q", l)
		}
		name = strings.ToLower(strings.TrimSpace(name))
		if long, ok := compactHeaders[name]; ok {
			name = long
		}
		headers = append(headers, [2]string{name, strings.TrimSpace(value)})
	}
	length := 0
	for _, h := range headers {
		if h[0] == "content-length" {
			if length, err = strconv.Atoi(h[1]); err != nil || length < 0 {
				return "", nil, fmt.Errorf("bad Content-Length %q", h[1])
			}
		}
	}
	if _, err := r.Discard(length); err != nil {
		return "", nil, err
	}
	return start, headers, nil
}

// grantedExpiry is the expiry a 200 gives the contact: its expires
// parameter in the Contact list, else the Expires header, else asked.
func grantedExpiry(res *response, contact string, asked int) int {
	for _, v := range res.all("contact") {
		for _, c := range splitList(v) {
			uri, params, ok := strings.Cut(c, ">")
			if !ok {
				continue
			}
			if _, u, _ := strings.Cut(uri, "<"); !strings.EqualFold(u, contact) {
				continue
			}
			for _, p := range strings.Split(params, ";") {
				k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
				if strings.EqualFold(k, "expires") {
					if n, err := strconv.Atoi(strings.TrimSpace(val)); err == nil {
						return n
					}
				}
			}
		}
	}
	if n, err := strconv.Atoi(res.first("expires")); err == nil {
		return n
	}
	return asked
}

// splitList splits a header value at the commas outside quotes and angle
// brackets.
func splitList(v string) []string {
	var out []string
	quoted, angle, from := false, false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == '<':
			angle = true
		case !quoted && c == '>':
			angle = false
		case !quoted && !angle && c == ',':
			out = append(out, strings.TrimSpace(v[from:i]))
			from = i + 1
		}
	}
	return append(out, strings.TrimSpace(v[from:]))
}

// challenge is a parsed Digest challenge.
type challenge struct {
	params map[string]string // lower-case names, unquoted values
}

// pickChallenge takes the first Digest challenge among the header values
// whose algorithm is supported (RFC 7616 section 3.7: a server may offer
// several, preferred first).
func pickChallenge(values []string) (challenge, error) {
	if len(values) == 0 {
		return challenge{}, errors.New("no challenge")
	}
	var last error
	for _, v := range values {
		scheme, rest, _ := strings.Cut(strings.TrimSpace(v), " ")
		if !strings.EqualFold(scheme, "Digest") {
			last = fmt.Errorf("challenge scheme %q", scheme)
			continue
		}
		params, err := parseParams(rest)
		if err != nil {
			last = err
			continue
		}
		if _, _, err := digestHash(params["algorithm"]); err != nil {
			last = err
			continue
		}
		return challenge{params: params}, nil
	}
	return challenge{}, last
}

// parseParams reads the comma-separated name=value pairs of a challenge;
// values may be tokens or quoted strings with backslash escapes.
func parseParams(s string) (map[string]string, error) {
	out := map[string]string{}
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			return out, nil
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("bad challenge parameter at %q", s)
		}
		name := strings.ToLower(strings.TrimSpace(s[:eq]))
		s = strings.TrimLeft(s[eq+1:], " \t")
		var value strings.Builder
		if strings.HasPrefix(s, `"`) {
			i, closed := 1, false
			for ; i < len(s); i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
					value.WriteByte(s[i])
					continue
				}
				if s[i] == '"' {
					closed = true
					break
				}
				value.WriteByte(s[i])
			}
			if !closed {
				return nil, fmt.Errorf("unterminated quoted value of %s", name)
			}
			s = s[i+1:]
		} else {
			end := strings.IndexByte(s, ',')
			if end < 0 {
				end = len(s)
			}
			value.WriteString(strings.TrimSpace(s[:end]))
			s = s[end:]
		}
		out[name] = value.String()
	}
}

// digestHash is the hash of a Digest algorithm (RFC 7616 section 3.2;
// MD5 when the challenge names none) and whether it is a -sess variant.
func digestHash(algorithm string) (func() hash.Hash, bool, error) {
	base, sess := strings.CutSuffix(strings.ToUpper(algorithm), "-SESS")
	switch base {
	case "", "MD5":
		return md5.New, sess, nil
	case "SHA-256":
		return sha256.New, sess, nil
	}
	return nil, false, fmt.Errorf("unsupported digest algorithm %q", algorithm)
}

// digestAuthorization answers a challenge (RFC 2617, RFC 7616): the value
// of the Authorization (or Proxy-Authorization) header for method and uri.
// With qop offered it uses qop=auth with cnonce and nc; without, the RFC
// 2069 form.
func digestAuthorization(ch challenge, method, uri, user, pass, cnonce, nc string) (string, error) {
	newHash, sess, err := digestHash(ch.params["algorithm"])
	if err != nil {
		return "", err
	}
	h := func(parts ...string) string {
		x := newHash()
		io.WriteString(x, strings.Join(parts, ":"))
		return hex.EncodeToString(x.Sum(nil))
	}
	realm, nonce := ch.params["realm"], ch.params["nonce"]
	if nonce == "" {
		return "", errors.New("challenge without nonce")
	}
	qop := ""
	if offered, ok := ch.params["qop"]; ok {
		for _, q := range strings.Split(offered, ",") {
			if strings.EqualFold(strings.TrimSpace(q), "auth") {
				qop = "auth"
			}
		}
		if qop == "" {
			return "", fmt.Errorf("challenge offers qop %q, not auth", offered)
		}
	}
	ha1 := h(user, realm, pass)
	if sess {
		ha1 = h(ha1, nonce, cnonce)
	}
	ha2 := h(method, uri)
	var resp string
	if qop != "" {
		resp = h(ha1, nonce, nc, cnonce, qop, ha2)
	} else {
		resp = h(ha1, nonce, ha2)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Digest username=%s, realm=%s, nonce=%s, uri=%s, response=%s", quote(user), quote(realm), quote(nonce), quote(uri), quote(resp))
	if alg := ch.params["algorithm"]; alg != "" {
		fmt.Fprintf(&b, ", algorithm=%s", alg)
	}
	if qop != "" {
		fmt.Fprintf(&b, ", cnonce=%s, qop=%s, nc=%s", quote(cnonce), qop, nc)
	}
	if opaque, ok := ch.params["opaque"]; ok {
		fmt.Fprintf(&b, ", opaque=%s", quote(opaque))
	}
	return b.String(), nil
}

// quote makes a quoted string.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// token is a random hex string for tags, branches, Call-IDs and cnonces.
func token() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// reason names the kind of a failure without what differs between
// connections (ports), so failures count by kind.
func reason(stage string, err error) string {
	var errno syscall.Errno
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return stage + ": timeout"
	case errors.Is(err, context.Canceled):
		return stage + ": canceled"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return stage + ": connection closed"
	case errors.As(err, &errno):
		return stage + ": " + errno.Error()
	}
	var cert *tls.CertificateVerificationError
	if errors.As(err, &cert) {
		return stage + ": certificate not trusted"
	}
	return stage + ": " + err.Error()
}
