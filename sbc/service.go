package sbc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/psigate/psigate/sbc/b2bua"
	"github.com/psigate/psigate/sbc/media"
	"github.com/psigate/psigate/sbc/media/relay"
	"github.com/psigate/psigate/sbc/pbx"
	"github.com/psigate/psigate/sbc/registrar"
	"github.com/psigate/psigate/sbc/signal"
)

// Realm is what the SBC needs to know of a network realm; the appliance
// fills it from the network configuration.
type Realm struct {
	Name string
	// Role is "core", "access" or "admin".
	Role string
	// Bind is the address to listen on; the unspecified address for all.
	Bind netip.Addr
	// Advertise is the host written into Via, Contact and SDP.
	Advertise string
	// Ports per transport; 0 = off.
	UDP, TCP, TLS, MTLS int
	// MediaMin and MediaMax are the realm's RTP port range.
	MediaMin, MediaMax int
}

// Desired is the SBC's whole desired state.
type Desired struct {
	Config Config
	Realms []Realm
	// Certificate is used for TLS when no certificate profile is chosen:
	// the appliance's self-signed one.
	Certificate tls.Certificate
}

// RecordStore keeps the SBC's bindings across restarts; the appliance's
// store fits.
type RecordStore interface {
	SaveRecords(kind string, put map[string][]byte, del []string) error
	LoadRecords(kind string) (map[string][]byte, error)
}

// Alarms is where the SBC raises and clears alarms; the appliance's alarm
// registry fits through a small adapter.
type Alarms interface {
	Raise(code, text string)
	Clear(code string)
}

// bindingsKind names the SBC's bindings in the record store.
const bindingsKind = "sip-bindings"

// Service runs the SBC's signalling. It is reconciled with Apply and
// runs until its context ends.
type Service struct {
	records  RecordStore
	alarms   Alarms
	quar     *registrar.Quarantine
	log      *slog.Logger
	stack    *signal.Stack
	bindings *registrar.Bindings
	// relay is replaced whole by Apply (its settings are a snapshot;
	// bindings and quarantine are shared), so a request in flight sees
	// one consistent configuration.
	relay atomic.Pointer[registrar.Relay]
	nodes *pbx.Monitor
	// subscribers is the remote subscriber feature's switch (seed
	// "Enable Remote Subscribers").
	subscribers atomic.Bool
	// engine relays calls' media; replaced when port ranges change
	// (calls in progress keep theirs).
	engine atomic.Pointer[relay.Engine]
	ranges string
	calls  atomic.Pointer[b2bua.B2BUA]
	// callLog hears of every call that ends (may be nil).
	callLog atomic.Pointer[func(b2bua.Record)]
}

// OnCallEnd sets where call detail records go: f is called once for
// every call, answered or not, when it ends; it must not block.
func (s *Service) OnCallEnd(f func(b2bua.Record)) { s.callLog.Store(&f) }

func (s *Service) callEnded(r b2bua.Record) {
	if f := s.callLog.Load(); f != nil && *f != nil {
		(*f)(r)
	}
}

// NewService returns a service with no listeners yet; records (may be
// nil) keeps bindings across restarts; alarms (may be nil) hears of
// quarantined registration rate violators.
func NewService(log *slog.Logger, records RecordStore, alarms Alarms) *Service {
	s := &Service{log: log, records: records, alarms: alarms, bindings: registrar.NewBindings(), quar: &registrar.Quarantine{}}
	s.nodes = pbx.New(s.probe, nil)
	s.stack = signal.New(log, s.install)
	s.relay.Store(&registrar.Relay{Bindings: s.bindings, Log: log, Router: (*router)(s), Quarantine: s.quar, OnQuarantine: s.quarantined, Realms: s.stack})
	return s
}

// install registers the request handlers on a realm's server; every one
// passes the common request checks first.
func (s *Service) install(r *signal.Realm) {
	guard := func(h func(*sip.Request, sip.ServerTransaction)) func(*sip.Request, sip.ServerTransaction) {
		return signal.Guard(s.log, h)
	}
	r.Server.OnOptions(guard(func(req *sip.Request, tx sip.ServerTransaction) {
		if calls := s.calls.Load(); calls != nil && req.To().Params.Has("tag") {
			calls.HandleRequest(r, req, tx)
			return
		}
		signal.Respond(s.log, tx, req, 200, "OK", sip.NewHeader("Allow", allow), sip.NewHeader("Accept", "application/sdp"))
	}))
	r.Server.OnRegister(guard(func(req *sip.Request, tx sip.ServerTransaction) {
		relay := s.relay.Load()
		switch {
		case r.Name != relay.AccessRealm:
			signal.Respond(s.log, tx, req, 403, "Registration Only On The Access Realm")
			return
		case !s.subscribers.Load():
			signal.Respond(s.log, tx, req, 403, "Remote Subscribers Disabled")
			return
		}
		relay.HandleRegister(req, tx)
	}))
	r.Server.OnInvite(guard(func(req *sip.Request, tx sip.ServerTransaction) {
		calls := s.calls.Load()
		if calls == nil {
			signal.Respond(s.log, tx, req, 503, "Service Unavailable")
			return
		}
		calls.HandleInvite(r, req, tx)
	}))
	r.Server.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {
		if calls := s.calls.Load(); calls != nil {
			calls.HandleAck(r, req, tx)
		}
	})
	r.Server.OnBye(guard(func(req *sip.Request, tx sip.ServerTransaction) {
		calls := s.calls.Load()
		if calls == nil {
			signal.Respond(s.log, tx, req, 481, "Call/Transaction Does Not Exist")
			return
		}
		calls.HandleBye(r, req, tx)
	}))
	// Requests inside a call's or a subscription's dialog; MESSAGE,
	// NOTIFY and SUBSCRIBE also outside one.
	inDialog := guard(func(req *sip.Request, tx sip.ServerTransaction) {
		calls := s.calls.Load()
		switch {
		case calls == nil:
			signal.Respond(s.log, tx, req, 503, "Service Unavailable")
		case req.To().Params.Has("tag"):
			calls.HandleRequest(r, req, tx)
		case req.Method == sip.MESSAGE || req.Method == sip.NOTIFY || req.Method == sip.SUBSCRIBE:
			calls.HandleOutside(r, req, tx)
		default:
			signal.Respond(s.log, tx, req, 481, "Call/Transaction Does Not Exist")
		}
	})
	// A CANCEL that matches an INVITE transaction never gets here.
	r.Server.OnCancel(func(req *sip.Request, tx sip.ServerTransaction) {
		signal.Respond(s.log, tx, req, 481, "Call/Transaction Does Not Exist")
	})
	r.Server.OnPrack(inDialog)
	r.Server.OnUpdate(inDialog)
	r.Server.OnInfo(inDialog)
	r.Server.OnRefer(inDialog)
	r.Server.OnNotify(inDialog)
	r.Server.OnMessage(inDialog)
	r.Server.OnSubscribe(inDialog)
	r.Server.OnNoRoute(guard(func(req *sip.Request, tx sip.ServerTransaction) {
		signal.Respond(s.log, tx, req, 501, "Not Implemented", sip.NewHeader("Allow", allow))
	}))
}

// allow lists the methods psigate handles today.
const allow = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, PRACK, UPDATE, INFO, REFER, NOTIFY, MESSAGE, SUBSCRIBE"

// Apply reconciles listeners and settings to d.
func (s *Service) Apply(ctx context.Context, d Desired) error {
	specs, access, core, err := realmSpecs(d)
	if err != nil {
		return err
	}
	rs := d.Config.RemoteSubscribers
	s.subscribers.Store(rs.Enabled)
	relay := *s.relay.Load()
	relay.AccessRealm, relay.CoreRealm = access, core
	relay.Limits = registrar.Limits{
		MaxExpiry:    time.Duration(rs.MaxExpirySeconds) * time.Second,
		MinInterval:  time.Duration(rs.MinIntervalSeconds) * time.Second,
		MaxThreshold: time.Duration(rs.RegisterThrottling.MaxThresholdSeconds) * time.Second,
	}
	if t := rs.RegisterThrottling; t.Enabled {
		relay.Limits.ThrottleUDP = time.Duration(t.UDPSeconds) * time.Second
	}
	if t := rs.RegisterThrottling; t.StreamEnabled {
		relay.Limits.ThrottleStream = time.Duration(t.StreamSeconds) * time.Second
	}
	s.relay.Store(&relay)
	s.quar.Configure(rs.Quarantine.Enabled, time.Duration(rs.Quarantine.DurationSeconds)*time.Second)
	if err := s.configureCalls(d, access, core); err != nil {
		return err
	}
	ss := d.Config.SIPServer
	s.nodes.Set(nodeGroups(ss), time.Duration(ss.Keepalive.IntervalSeconds)*time.Second, ss.Keepalive.FailureThreshold)
	return s.stack.Apply(ctx, specs)
}

// nodeGroups are the SIP server's node groups for the monitor.
func nodeGroups(ss SIPServer) []pbx.Group {
	var out []pbx.Group
	for _, g := range ss.NodeGroups {
		pg := pbx.Group{Name: g.Name, StickWithNode: g.StickWithNode}
		for _, n := range g.Nodes {
			pg.Nodes = append(pg.Nodes, pbx.Node{
				Group: g.Name, Name: n.Name, Priority: n.Priority,
				Addr: hostPort(n.Address, n.Port), Transport: strings.ToUpper(string(n.Transport)),
			})
		}
		out = append(out, pg)
	}
	return out
}

// probe sends an OPTIONS keepalive to a node from the core realm; any
// answer means the node is alive.
func (s *Service) probe(ctx context.Context, n pbx.Node) error {
	core := s.stack.Realm(s.relay.Load().CoreRealm)
	if core == nil {
		return errors.New("no core realm")
	}
	host, port, err := net.SplitHostPort(n.Addr)
	if err != nil {
		return err
	}
	p, _ := strconv.Atoi(port)
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: strings.Trim(host, "[]"), Port: p})
	req.SetDestination(n.Addr)
	req.SetTransport(n.Transport)
	core.SendFrom(req)
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	_, err = core.Client.Do(ctx, req)
	return err
}

// Nodes is the PBX nodes' health.
func (s *Service) Nodes() []pbx.State { return s.nodes.States() }

// realmSpecs turns the realms into listener specifications; the admin
// realm carries no SIP.
func realmSpecs(d Desired) (specs []signal.RealmSpec, access, core string, err error) {
	conf, err := tlsConfig(d)
	if err != nil {
		return nil, "", "", err
	}
	for _, r := range d.Realms {
		switch r.Role {
		case "access":
			if access == "" {
				access = r.Name
			}
		case "core":
			core = r.Name
		default:
			continue
		}
		spec := signal.RealmSpec{Name: r.Name, Advertise: r.Advertise, TLS: conf, MaxMessage: d.Config.Security.DoS.MaxMessageBytes, NoDNS: true}
		if r.Role == "core" {
			spec.MayDial, spec.NoDNS = pbxDialer(d.Config.SIPServer)
		}
		for _, p := range []struct {
			t    signal.Transport
			port int
		}{{signal.UDP, r.UDP}, {signal.TCP, r.TCP}, {signal.TLS, r.TLS}, {signal.MTLS, r.MTLS}} {
			if p.port != 0 {
				spec.Listeners = append(spec.Listeners, signal.Listener{Transport: p.t, Addr: netip.AddrPortFrom(r.Bind, uint16(p.port))})
			}
		}
		specs = append(specs, spec)
	}
	return specs, access, core, nil
}

// tlsConfig is the SIP TLS server configuration: the chosen certificate
// profile's, else the appliance's own certificate; TLS 1.2 at least.
func tlsConfig(d Desired) (*tls.Config, error) {
	sec := d.Config.Security
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if sec.SIPTLSProfile == "" {
		if d.Certificate.Certificate == nil {
			return nil, nil
		}
		conf.Certificates = []tls.Certificate{d.Certificate}
		return conf, nil
	}
	i := slices.IndexFunc(sec.CertificateProfiles, func(p CertificateProfile) bool { return p.Name == sec.SIPTLSProfile })
	if i < 0 {
		return nil, fmt.Errorf("sbc: no certificate profile %q", sec.SIPTLSProfile)
	}
	p := sec.CertificateProfiles[i]
	cert, err := tls.X509KeyPair([]byte(p.CertificatePEM+"\n"+p.CAPEM), []byte(p.KeyPEM))
	if err != nil {
		return nil, fmt.Errorf("sbc: certificate profile %q: %w", p.Name, err)
	}
	conf.Certificates = []tls.Certificate{cert}
	if p.MinTLSVersion == "1.3" {
		conf.MinVersion = tls.VersionTLS13
	}
	if p.CAPEM != "" {
		conf.ClientCAs = x509.NewCertPool()
		conf.ClientCAs.AppendCertsFromPEM([]byte(p.CAPEM))
	}
	switch p.ClientVerification {
	case "optional":
		conf.ClientAuth = tls.VerifyClientCertIfGiven
	case "required":
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return conf, nil
}

// Run restores the persisted bindings, probes the PBX nodes, expires
// bindings and saves their changes once a second until ctx ends; then it
// saves the last changes and closes the listeners.
func (s *Service) Run(ctx context.Context) error {
	if err := s.restore(); err != nil {
		return err
	}
	go s.nodes.Run(ctx)
	deregs := make(chan registrar.Binding, 1024)
	go s.deregisterLoop(ctx, deregs)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	defer s.stack.Close()
	for {
		select {
		case <-ctx.Done():
			if c := s.calls.Load(); c != nil {
				c.Close() // BYE on every call while the stack still runs
			}
			return s.save()
		case now := <-t.C:
			for _, b := range s.bindings.Expire(now) {
				s.log.Info("registration expired", "aor", b.AOR, "source", b.Flow.Source)
				select {
				case deregs <- b:
				default:
					s.log.Warn("de-registration queue full; the PBX registration lapses", "aor", b.AOR)
				}
			}
			if e := s.engine.Load(); e != nil {
				e.Check() // media inactivity and terminated-RTCP reports
			}
			if s.alarms != nil && s.quar.Blocked(now) == 0 {
				s.alarms.Clear(quarantineAlarm)
			}
			if err := s.save(); err != nil {
				s.log.Error("saving bindings", "err", err)
			}
		}
	}
}

// deregisterLoop ends psigate's registration at the PBX of each binding
// whose client stopped refreshing, one at a time, until ctx ends.
func (s *Service) deregisterLoop(ctx context.Context, bindings <-chan registrar.Binding) {
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-bindings:
			err := s.relay.Load().Deregister(b)
			switch {
			case errors.Is(err, registrar.ErrChallenged):
				s.log.Info("the PBX wants credentials to de-register; its registration lapses at its expiry", "aor", b.AOR, "until", b.PBXExpires)
			case err != nil:
				s.log.Warn("de-registration at the PBX failed", "aor", b.AOR, "err", err)
			}
		}
	}
}

// restore loads the bindings of before a restart. A client's own expiry
// may have passed while the appliance was down; the binding is kept until
// psigate's registration at the PBX ends, so the subscriber stays
// reachable once its client reconnects.
func (s *Service) restore() error {
	if s.records == nil {
		return nil
	}
	raw, err := s.records.LoadRecords(bindingsKind)
	if err != nil {
		return fmt.Errorf("sbc: loading bindings: %w", err)
	}
	now := time.Now()
	var list []registrar.Binding
	for token, data := range raw {
		var b registrar.Binding
		if err := json.Unmarshal(data, &b); err != nil {
			s.log.Warn("dropping an unreadable binding", "token", token, "err", err)
			continue
		}
		if b.Expires.Before(b.PBXExpires) && b.Expires.Before(now) {
			b.Expires = b.PBXExpires
		}
		list = append(list, b)
	}
	s.bindings.Restore(list)
	s.log.Info("bindings restored", "count", len(list))
	return nil
}

// save writes the bindings that changed since the last save.
func (s *Service) save() error {
	if s.records == nil {
		return nil
	}
	put, del := s.bindings.Changes()
	if len(put) == 0 && len(del) == 0 {
		return nil
	}
	m := make(map[string][]byte, len(put))
	for _, b := range put {
		data, err := json.Marshal(b)
		if err != nil {
			return err
		}
		m[b.Token] = data
	}
	return s.records.SaveRecords(bindingsKind, m, del)
}

const quarantineAlarm = "sip-register-quarantine"

// quarantined raises the alarm for a new rate violator.
func (s *Service) quarantined(source string) {
	if s.alarms != nil {
		s.alarms.Raise(quarantineAlarm, "Registration rate violators are quarantined; the last one: "+source+".")
	}
}

// Calls lists the calls in progress.
func (s *Service) Calls() []b2bua.CallInfo {
	if c := s.calls.Load(); c != nil {
		return c.Calls()
	}
	return nil
}

// Bindings lists the registered subscribers.
func (s *Service) Bindings() []registrar.Binding { return s.bindings.List() }

// router picks the PBX node from the node monitor.
type router Service

func (r *router) Route(aor, node string) (registrar.Target, error) {
	n, err := (*Service)(r).nodes.Route(node)
	if err != nil {
		return registrar.Target{}, registrar.ErrNoNode
	}
	return registrar.Target{Node: n.Name, Addr: n.Addr, Transport: n.Transport}, nil
}

func hostPort(host string, port int) string {
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// configureCalls sets up the media engine and the call settings.
func (s *Service) configureCalls(d Desired, access, core string) error {
	var realms []relay.RealmPorts
	var key string
	legs := map[string]media.Leg{}
	for _, r := range d.Realms {
		if r.MediaMax == 0 || (r.Name != access && r.Name != core) {
			continue
		}
		realms = append(realms, relay.RealmPorts{Name: r.Name, Bind: r.Bind, Min: r.MediaMin, Max: r.MediaMax})
		key += fmt.Sprintf("%s/%s/%d-%d;", r.Name, r.Bind, r.MediaMin, r.MediaMax)
		adv, err := netip.ParseAddr(r.Advertise)
		if err != nil {
			adv = r.Bind
		}
		legs[r.Name] = media.Leg{Realm: r.Name, Advertise: adv, NAT: r.Name == access}
	}
	calls := d.Config.Calls
	key += fmt.Sprintf("timeouts %d/%d", calls.MediaStartSeconds, calls.MediaStopSeconds)
	if s.engine.Load() == nil || key != s.ranges {
		e, err := relay.New(relay.Config{Realms: realms, Logger: s.log, Alarms: s.alarms,
			InitialTimeout: time.Duration(calls.MediaStartSeconds) * time.Second,
			SteadyTimeout:  time.Duration(calls.MediaStopSeconds) * time.Second})
		if err != nil {
			return fmt.Errorf("sbc: media: %w", err)
		}
		s.engine.Store(e)
		s.ranges = key
		if calls := s.calls.Load(); calls != nil {
			calls.SetEngine(e) // calls in progress keep their media and dialogs
		} else {
			s.calls.Store(b2bua.New(s.stack, e, s.log))
		}
	}
	coreLeg := legs[core]
	if p := d.Config.MediaProfile(d.Config.CoreMediaProfile); p != nil {
		coreLeg.Profile = *p
	}
	cfg := d.Config
	rs := cfg.RemoteSubscribers
	s.calls.Load().Configure(b2bua.Settings{
		AccessRealm: access, CoreRealm: core, AccessMedia: legs[access], CoreMedia: coreLeg,
		NoReply:    time.Duration(rs.InviteNoReplyTimeoutMs) * time.Millisecond,
		NoAnswer:   time.Duration(rs.InviteNoAnswerTimeoutMs) * time.Millisecond,
		OnEnd:      s.callEnded,
		ToCore:     cfg.Calls.HeadersToCore,
		ToAccess:   cfg.Calls.HeadersToAccess,
		ProfileFor: func(ua string) media.Profile { return clientProfile(cfg, ua) },
		Route: func() (b2bua.Target, error) {
			n, err := s.nodes.Route("")
			return b2bua.Target{Addr: n.Addr, Transport: n.Transport}, err
		},
		Registered: s.registered(cfg.Calls),
		Flow: func(aor, contact string) (string, string, bool) {
			b := s.bindings.Find(aor, contact, "")
			if b == nil || b.Pending {
				return "", "", false
			}
			return b.Flow.Transport, b.Flow.Source, true
		},
		Lookup: func(token string) (b2bua.Subscriber, bool) {
			b := s.bindings.Get(token)
			if b == nil || b.Pending {
				return b2bua.Subscriber{}, false
			}
			return b2bua.Subscriber{AOR: b.AOR, Contact: b.Contact, UserAgent: b.UserAgent, Transport: b.Flow.Transport, Source: b.Flow.Source}, true
		},
	})
	return nil
}

// registered is the B2BUA's check that a client's request comes from a
// subscriber on its flow; nil when calls are open to unregistered
// clients.
func (s *Service) registered(c Calls) func(sip.Uri, string) bool {
	if c.OpenToUnregistered {
		return nil
	}
	return func(from sip.Uri, source string) bool {
		for _, b := range s.bindings.OfAOR(registrar.AOR(from)) {
			if b.Flow.Source == source {
				return true
			}
		}
		return false
	}
}

// clientProfile is the media profile of a client's User-Agent: the first
// mapping whose userAgent it contains, else the profile named "default",
// else the core side's.
func clientProfile(c Config, ua string) media.Profile {
	for _, m := range c.UserAgentProfiles {
		if strings.Contains(ua, m.UserAgent) {
			if p := c.MediaProfile(m.MediaProfile); p != nil {
				return *p
			}
		}
	}
	if p := c.MediaProfile("default"); p != nil {
		return *p
	}
	if p := c.MediaProfile(c.CoreMediaProfile); p != nil {
		return *p
	}
	return media.Profile{Protocol: media.ProtocolRTP, AllowUnconfiguredCodecs: true, TelephoneEventPayloadType: 101}
}

// pbxDialer is what the core realm may connect to: the PBX nodes. Nodes
// named by FQDN need name lookups and are trusted with any address.
func pbxDialer(ss SIPServer) (func(netip.AddrPort) bool, bool) {
	nodes := map[netip.AddrPort]bool{}
	for _, g := range ss.NodeGroups {
		for _, n := range g.Nodes {
			a, err := netip.ParseAddr(n.Address)
			if err != nil {
				return func(netip.AddrPort) bool { return true }, false
			}
			nodes[netip.AddrPortFrom(a.Unmap(), uint16(n.Port))] = true
		}
	}
	return func(ap netip.AddrPort) bool { return nodes[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] }, true
}
