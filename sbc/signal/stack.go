// Package signal is the SBC's SIP transport: per realm, a sipgo user agent
// with its listeners (UDP, TCP, TLS, and MTLS: TLS that requires a client
// certificate), reconciled to the configuration without dropping the
// connections of listeners that stay.
//
// sipgo is wrapped, not forked: each realm gets its own user agent so that
// requests towards the PBX leave from the core realm and requests towards
// clients from the access realm.
package signal

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// readBuffer is the size of sipgo's per-connection read buffer, which it
// holds for the life of every TCP and TLS connection. Its default of 32 KiB
// would cost 320 MiB for 10,000 subscribers on TLS; SIP messages are
// parsed as a stream over TCP whatever the buffer size, and a UDP datagram
// of SIP is far below 8 KiB (RFC 3261 section 18.1.1 moves requests over
// the path MTU to TCP).
const readBuffer = 8192

func init() {
	// sipgo offers this only as a package variable; psigate sets it once,
	// here, before any transport exists.
	sip.TransportBufferReadSize = readBuffer
}

// Transport is a SIP transport of a listener.
type Transport string

const (
	UDP  Transport = "udp"
	TCP  Transport = "tcp"
	TLS  Transport = "tls"
	MTLS Transport = "mtls" // TLS with client certificate verification
)

// Listener is one socket a realm listens on.
type Listener struct {
	Transport Transport
	Addr      netip.AddrPort
}

func (l Listener) String() string { return string(l.Transport) + ":" + l.Addr.String() }

// TransportOf is the Transport a SIP network name ("UDP", "tls", ...)
// stands for.
func TransportOf(network string) Transport { return Transport(sip.NetworkToLower(network)) }

// RealmSpec is the desired state of one realm.
type RealmSpec struct {
	Name string
	// Advertise is the host put into Via and Contact, e.g. the realm's
	// public address or FQDN.
	Advertise string
	Listeners []Listener
	// TLS is the server configuration of TLS listeners; MTLS listeners
	// use a copy that requires and verifies a client certificate.
	TLS *tls.Config
	// MaxMessage is the largest SIP message accepted, in bytes; larger
	// ones are dropped (and a stream connection closed). 0 = sipgo's
	// default of 65535.
	MaxMessage int
	// MayDial says whether the realm may open a TCP/TLS connection to an
	// address; nil = to none. The access realm reaches clients only over
	// the connections they opened; the core realm only its PBX nodes.
	// Without it, a response to a request whose connection closed would
	// go to the address in its Via (RFC 3261 section 18.2.2), which a
	// stranger chooses.
	MayDial func(netip.AddrPort) bool
	// NoDNS forbids name lookups in the realm (Via hosts of strangers);
	// a realm whose PBX nodes are named by FQDN needs them.
	NoDNS bool
}

// Realm is a realm's running SIP stack.
type Realm struct {
	Name   string
	UA     *sipgo.UserAgent
	Server *sipgo.Server
	Client *sipgo.Client
	spec   RealmSpec
	// maxMessage is fixed at creation: sipgo's parser reads it unlocked.
	maxMessage int

	mu        sync.Mutex
	listeners map[string]*running // by Listener.String() + TLS identity
}

type running struct {
	l      Listener
	closer func() error
	done   chan struct{}
}

// Stack holds the realms.
type Stack struct {
	log     *slog.Logger
	install func(*Realm)

	mu     sync.Mutex
	realms map[string]*Realm
}

// New returns an empty stack; install registers request handlers on every
// realm the stack creates.
func New(log *slog.Logger, install func(*Realm)) *Stack {
	return &Stack{log: log, install: install, realms: map[string]*Realm{}}
}

// Realm returns a realm by name, or nil.
func (s *Stack) Realm(name string) *Realm {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.realms[name]
}

// Apply reconciles the realms and their listeners to specs: listeners are
// opened, kept or closed one by one; a realm whose advertised name
// changed is rebuilt. Errors of one listener do not stop the others; all
// are returned joined.
func (s *Stack) Apply(ctx context.Context, specs []RealmSpec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	want := map[string]bool{}
	for _, spec := range specs {
		want[spec.Name] = true
		r := s.realms[spec.Name]
		if r != nil && (r.Advertise() != spec.Advertise || r.maxMessage != spec.MaxMessage || r.noDNS() != spec.NoDNS) {
			r.close()
			r = nil
		}
		if r == nil {
			var err error
			if r, err = s.newRealm(spec); err != nil {
				errs = append(errs, err)
				continue
			}
			s.realms[spec.Name] = r
		}
		errs = append(errs, r.reconcile(s.log, spec)...)
	}
	for name, r := range s.realms {
		if !want[name] {
			r.close()
			delete(s.realms, name)
		}
	}
	return errors.Join(errs...)
}

// Close closes every realm.
func (s *Stack) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, r := range s.realms {
		r.close()
		delete(s.realms, name)
	}
}

func (s *Stack) newRealm(spec RealmSpec) (*Realm, error) {
	log := s.log.With("realm", spec.Name)
	r := &Realm{Name: spec.Name, spec: spec, maxMessage: spec.MaxMessage, listeners: map[string]*running{}}
	dialer := func(laddr net.Addr) net.Dialer {
		return net.Dialer{Timeout: 10 * time.Second, LocalAddr: laddr, Control: r.controlDial}
	}
	transports := sip.TransportsConfig{
		TCP: &sip.TransportTCP{DialerCreate: dialer},
		TLS: &sip.TransportTLS{TransportTCP: &sip.TransportTCP{DialerCreate: dialer}},
	}
	parser := sip.NewParser()
	if spec.MaxMessage > 0 {
		parser.MaxMessageLength = spec.MaxMessage
	}
	opts := []sipgo.UserAgentOption{sipgo.WithUserAgent("psigate"), sipgo.WithUserAgentHostname(spec.Advertise),
		sipgo.WithUserAgentParser(parser),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log), sip.WithTransportLayerTransports(transports)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(log))}
	if spec.NoDNS {
		opts = append(opts, sipgo.WithUserAgentDNSResolver(&net.Resolver{PreferGo: true,
			Dial: func(context.Context, string, string) (net.Conn, error) {
				return nil, fmt.Errorf("signal: realm %s looks up no names", spec.Name)
			}}))
	}
	ua, err := sipgo.NewUA(opts...)
	if err != nil {
		return nil, fmt.Errorf("signal: realm %s: %w", spec.Name, err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		ua.Close()
		return nil, fmt.Errorf("signal: realm %s: %w", spec.Name, err)
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname(spec.Advertise), sipgo.WithClientLogger(log))
	if err != nil {
		ua.Close()
		return nil, fmt.Errorf("signal: realm %s: %w", spec.Name, err)
	}
	r.UA, r.Server, r.Client = ua, srv, client
	if s.install != nil {
		s.install(r)
	}
	return r, nil
}

// key identifies a listener with the TLS identity it serves, so a new
// certificate reopens TLS listeners.
func key(l Listener, conf *tls.Config) string {
	k := l.String()
	if (l.Transport == TLS || l.Transport == MTLS) && conf != nil {
		h := sha256.New()
		for _, c := range conf.Certificates {
			for _, der := range c.Certificate {
				h.Write(der)
			}
		}
		k += "#" + hex.EncodeToString(h.Sum(nil)[:8])
	}
	return k
}

func (r *Realm) reconcile(log *slog.Logger, spec RealmSpec) []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.spec = spec
	var errs []error
	want := map[string]Listener{}
	for _, l := range spec.Listeners {
		want[key(l, spec.TLS)] = l
	}
	for k, run := range r.listeners {
		if _, keep := want[k]; !keep {
			run.closer()
			<-run.done
			delete(r.listeners, k)
			log.Info("SIP listener closed", "realm", r.Name, "listener", run.l)
		}
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if _, ok := r.listeners[k]; ok {
			continue
		}
		run, err := r.listen(want[k], spec.TLS)
		if err != nil {
			errs = append(errs, fmt.Errorf("signal: realm %s: %s: %w", r.Name, want[k], err))
			continue
		}
		r.listeners[k] = run
		log.Info("SIP listener open", "realm", r.Name, "listener", run.l)
	}
	return errs
}

func (r *Realm) listen(l Listener, conf *tls.Config) (*running, error) {
	addr := net.TCPAddrFromAddrPort(l.Addr)
	run := &running{l: l, done: make(chan struct{})}
	var serve func() error
	switch l.Transport {
	case UDP:
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(l.Addr))
		if err != nil {
			return nil, err
		}
		// One goroutine reads and parses the socket: a bigger queue
		// rides out bursts instead of dropping datagrams (the kernel's
		// limit, net.core.rmem_max, may cap it). Measured by
		// BenchmarkCalls_SBC_UDP: drops from 1,600 calls/s with the
		// default 208 kB, none at 2,400 with 4 MB.
		_ = c.SetReadBuffer(udpReadBuffer)
		run.l.Addr = c.LocalAddr().(*net.UDPAddr).AddrPort()
		run.closer, serve = c.Close, func() error { return r.Server.ServeUDP(c) }
	case TCP, TLS, MTLS:
		ln, err := net.ListenTCP("tcp", addr)
		if err != nil {
			return nil, err
		}
		run.l.Addr = ln.Addr().(*net.TCPAddr).AddrPort()
		run.closer = ln.Close
		switch l.Transport {
		case TCP:
			serve = func() error { return r.Server.ServeTCP(ln) }
		default:
			if conf == nil {
				ln.Close()
				return nil, errors.New("no TLS certificate")
			}
			c := conf.Clone()
			if l.Transport == MTLS {
				c.ClientAuth = tls.RequireAndVerifyClientCert
			}
			serve = func() error { return r.Server.ServeTLS(tls.NewListener(ln, c)) }
		}
	default:
		return nil, fmt.Errorf("unknown transport %q", l.Transport)
	}
	go func() {
		defer close(run.done)
		_ = serve() // ends when the listener is closed
	}()
	return run, nil
}

func (r *Realm) noDNS() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.spec.NoDNS
}

// controlDial refuses a connection the realm's MayDial does not allow,
// before anything is sent.
func (r *Realm) controlDial(network, address string, _ syscall.RawConn) error {
	r.mu.Lock()
	may := r.spec.MayDial
	r.mu.Unlock()
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("signal: realm %s: dial %s: %w", r.Name, address, err)
	}
	if may == nil || !may(ap) {
		return fmt.Errorf("signal: realm %s opens no connection to %s", r.Name, address)
	}
	return nil
}

// Listeners lists the open listeners with their actual addresses.
func (r *Realm) Listeners() []Listener {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Listener, 0, len(r.listeners))
	for _, run := range r.listeners {
		out = append(out, run.l)
	}
	slices.SortFunc(out, func(a, b Listener) int { return compareListener(a, b) })
	return out
}

func compareListener(a, b Listener) int {
	if a.Transport != b.Transport {
		if a.Transport < b.Transport {
			return -1
		}
		return 1
	}
	return a.Addr.Compare(b.Addr)
}

// Advertise is the realm's host for Via and Contact.
func (r *Realm) Advertise() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.spec.Advertise
}

// Do sends a request psigate has built whole (only its Via is added)
// from the realm and waits for its final response.
func (r *Realm) Do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	tx, err := r.Client.TransactionRequest(ctx, req, sipgo.ClientRequestAddVia)
	if err != nil {
		return nil, err
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res, nil
		case <-tx.Done():
			if err := tx.Err(); err != nil {
				return nil, fmt.Errorf("transaction ended: %w", err)
			}
			return nil, errors.New("transaction ended without a response")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// udpReadBuffer is the receive buffer asked for on UDP listeners.
const udpReadBuffer = 4 << 20

// SendFrom makes a UDP request leave from the realm's UDP listener, the
// address its Via and Contact name and a client's NAT binding expects
// (sipgo otherwise sends from a socket of its own, on a port of its own).
// Other transports reuse their connections and are left alone.
func (r *Realm) SendFrom(req *sip.Request) {
	if TransportOf(req.Transport()) != UDP {
		return
	}
	for _, l := range r.Listeners() {
		if l.Transport == UDP {
			req.Laddr = sip.Addr{IP: net.IP(l.Addr.Addr().AsSlice()), Port: int(l.Addr.Port())}
			return
		}
	}
}

// ContactURI is psigate's own URI in the realm for a transport: the
// advertised host and that transport's port, with a transport parameter
// for TCP and TLS; the UDP port and no parameter when the realm does not
// listen on that transport.
func (r *Realm) ContactURI(t Transport) sip.Uri {
	port := r.Port(t)
	if port == 0 {
		port, t = r.Port(UDP), UDP
	}
	u := sip.Uri{Scheme: "sip", Host: r.Advertise(), Port: port}
	if t != UDP {
		u.UriParams = sip.HeaderParams{{K: "transport", V: string(t)}}
	}
	return u
}

// Port is the realm's listening port for a transport, 0 if none.
func (r *Realm) Port(t Transport) int {
	for _, l := range r.Listeners() {
		if l.Transport == t {
			return int(l.Addr.Port())
		}
	}
	return 0
}

func (r *Realm) close() {
	r.mu.Lock()
	for k, run := range r.listeners {
		run.closer()
		<-run.done
		delete(r.listeners, k)
	}
	r.mu.Unlock()
	r.UA.Close()
}

// Check applies the checks every request gets before any handler (RFC
// 3261 sections 8.1.1, 8.2 and 20): the protocol version, the mandatory
// headers, one value in single-value headers, the CSeq method, and
// extensions required. It returns 0 when the request may be handled,
// else the status and reason to answer with.
func Check(req *sip.Request) (int, string, []sip.Header) {
	if req.SipVersion != "SIP/2.0" {
		return 505, "Version Not Supported", nil
	}
	if h := MissingMandatory(req); h != "" {
		return 400, "Missing " + h, nil
	}
	for _, name := range []string{"To", "From", "Call-ID", "CSeq", "Max-Forwards", "Content-Length"} {
		if len(req.GetHeaders(name)) > 1 {
			return 400, "Repeated " + name, nil
		}
	}
	// sipgo normalises method names' case differently in the start line
	// and in CSeq; the names are compared as tokens.
	if !strings.EqualFold(string(req.CSeq().MethodName), string(req.Method)) {
		return 400, "CSeq Method Mismatch", nil
	}
	if tags := Unsupported(req); len(tags) > 0 && !req.IsAck() && !req.IsCancel() {
		return 420, "Bad Extension", []sip.Header{sip.NewHeader("Unsupported", strings.Join(tags, ", "))}
	}
	return 0, "", nil
}

// Guard wraps a handler with Check.
func Guard(log *slog.Logger, h func(*sip.Request, sip.ServerTransaction)) func(*sip.Request, sip.ServerTransaction) {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		if code, reason, hdrs := Check(req); code != 0 {
			if !req.IsAck() {
				Respond(log, tx, req, code, reason, hdrs...)
			}
			return
		}
		h(req, tx)
	}
}

// MissingMandatory names the first header every request must carry (RFC
// 3261 section 8.1.1) that req lacks, or "".
func MissingMandatory(req *sip.Request) string {
	switch {
	case req.Via() == nil:
		return "Via"
	case req.From() == nil:
		return "From"
	case req.To() == nil:
		return "To"
	case req.CallID() == nil:
		return "Call-ID"
	case req.CSeq() == nil:
		return "CSeq"
	}
	return ""
}

// Supported are the extensions psigate takes part in: session timers
// (RFC 4028), Replaces (RFC 3891) and reliable provisional responses
// (RFC 3262).
var Supported = map[string]bool{"timer": true, "replaces": true, "100rel": true}

// Unsupported lists the option tags of a request's Require header that
// psigate does not support (not in Supported). A request
// with any must be refused with 420 Bad Extension (RFC 3261 section
// 8.2.2.3).
func Unsupported(req *sip.Request) []string {
	var tags []string
	for _, h := range req.GetHeaders("Require") {
		for _, t := range strings.Split(h.Value(), ",") {
			if t = strings.TrimSpace(t); t != "" && !Supported[strings.ToLower(t)] {
				tags = append(tags, t)
			}
		}
	}
	return tags
}

// Respond answers a request with a status, logging a failure to send.
func Respond(log *slog.Logger, tx sip.ServerTransaction, req *sip.Request, code int, reason string, hdrs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if err := tx.Respond(res); err != nil {
		callID := ""
		if h := req.CallID(); h != nil {
			callID = h.Value()
		}
		log.Warn("SIP response not sent", "code", code, "call-id", callID, "err", err)
	}
}
