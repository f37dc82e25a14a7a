// Package b2bua connects calls between the access realm (Zoom PSI
// clients) and the core realm (the PBX) as a back-to-back user agent:
// every call is two SIP dialogs with their own Call-IDs, tags, CSeqs,
// Vias and Contacts, and its media is anchored by sbc/media.
//
// Calls go from a registered client to the PBX and from the PBX to a
// registered client (on the flow it registered on; 480 without one). Each
// leg builds its own in-dialog requests (leg.go); the initial INVITE is in
// invite.go, the requests inside a call in indialog.go, reliable
// provisionals in reliable.go, transfers in refer.go, requests outside
// calls and subscriptions in outside.go, and what crosses in headers.go
// and body.go. docs/calls.md describes the behaviour.
package b2bua

import (
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/psigate/psigate/sbc/media"
	"github.com/psigate/psigate/sbc/media/relay"
	"github.com/psigate/psigate/sbc/signal"
)

// Target is the PBX node a call goes to.
type Target struct {
	Addr      string // host:port
	Transport string // "UDP", "TCP", "TLS"
}

// Settings are what a call needs from the configuration; they are
// replaced whole when it changes.
type Settings struct {
	AccessRealm, CoreRealm string
	// Access and Core are the media legs' realms and advertised addresses.
	AccessMedia, CoreMedia media.Leg
	// ProfileFor picks the client's media profile by its User-Agent.
	ProfileFor func(userAgent string) media.Profile
	// Route picks the PBX node.
	Route func() (Target, error)
	// Lookup finds the subscriber a token names, for calls from the PBX.
	Lookup func(token string) (Subscriber, bool)
	// NoReply ends a call whose callee sends no response at all in time
	// (408); NoAnswer one that rings too long (480). Zero = no limit.
	// Seed 9.4.1.1 "INVITE No Reply timeout" and "INVITE No Answer
	// timeout".
	NoReply, NoAnswer time.Duration
	// Registered tells whether a request from a client comes from a
	// subscriber: a binding of the From's AOR on the flow it came from.
	// Nil: anyone may call (RequireRegistration off).
	Registered func(from sip.Uri, source string) bool
	// Flow finds the flow of a subscriber's binding now, by its AOR and
	// Contact URI (may be nil).
	Flow func(aor, contact string) (transport, source string, ok bool)
	// ToCore and ToAccess are the headers that cross towards the PBX and
	// towards clients; nil means DefaultToCore and DefaultToAccess.
	ToCore, ToAccess []string
	// toCore and toAccess are those lists as sets, made once by
	// Configure rather than for every message.
	toCore, toAccess headerSet
	// OnEnd hears of every call when it ends (may be nil); it must not
	// block.
	OnEnd func(Record)
}

// Realms finds a realm's SIP stack by name.
type Realms interface {
	Realm(name string) *signal.Realm
}

// B2BUA runs the calls.
type B2BUA struct {
	realms Realms
	engine *relay.Engine
	log    *slog.Logger

	mu       sync.Mutex
	settings Settings
	servers  map[cacheKey]*sipgo.DialogServerCache
	clients  map[cacheKey]*sipgo.DialogClientCache
	calls    map[string]*call         // by dialog ID, both legs
	subs     map[string]*subscription // by subKey, both sides
	early    map[string]*reliable     // callers' early dialogs taking reliable provisionals
}

// New returns a B2BUA; Configure must be called before calls arrive.
func New(realms Realms, engine *relay.Engine, log *slog.Logger) *B2BUA {
	return &B2BUA{realms: realms, engine: engine, log: log,
		servers: map[cacheKey]*sipgo.DialogServerCache{},
		clients: map[cacheKey]*sipgo.DialogClientCache{},
		calls:   map[string]*call{}, subs: map[string]*subscription{}, early: map[string]*reliable{}}
}

// SetEngine replaces the media engine new calls take their ports from
// (the port ranges changed); calls in progress keep theirs.
func (b *B2BUA) SetEngine(e *relay.Engine) {
	b.mu.Lock()
	b.engine = e
	b.mu.Unlock()
}

func (b *B2BUA) mediaEngine() *relay.Engine {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.engine
}

// Configure replaces the settings; calls in progress keep theirs.
func (b *B2BUA) Configure(s Settings) {
	s.toCore, s.toAccess = newHeaderSet(s.headers(false)), newHeaderSet(s.headers(true))
	b.mu.Lock()
	b.settings = s
	b.mu.Unlock()
}

// contact is psigate's Contact in a realm.
func contact(r *signal.Realm, transport signal.Transport) sip.ContactHeader {
	return sip.ContactHeader{Address: r.ContactURI(transport)}
}

// cacheKey is a realm and a transport: sipgo's dialog caches give every
// dialog the one Contact they are made with, so there is one cache per
// realm and transport.
type cacheKey struct {
	realm     *signal.Realm
	transport signal.Transport
}

func (b *B2BUA) serverCache(r *signal.Realm, transport signal.Transport) *sipgo.DialogServerCache {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := cacheKey{r, transport}
	c := b.servers[k]
	if c == nil {
		c = sipgo.NewDialogServerCache(r.Client, contact(r, transport))
		b.servers[k] = c
	}
	return c
}

func (b *B2BUA) clientCache(r *signal.Realm, transport signal.Transport) *sipgo.DialogClientCache {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := cacheKey{r, transport}
	c := b.clients[k]
	if c == nil {
		c = sipgo.NewDialogClientCache(r.Client, contact(r, transport))
		b.clients[k] = c
	}
	return c
}

// Calls lists the calls in progress with their media state.
func (b *B2BUA) Calls() []CallInfo {
	list := b.live()
	out := make([]CallInfo, 0, len(list))
	for _, c := range list {
		info := c.info
		info.Codecs, info.Stats = c.media.Codecs(), c.media.Stats()
		info.SRTP = [2]bool{info.Stats[0].SRTPIn, info.Stats[1].SRTPIn}
		out = append(out, info)
	}
	return out
}

// remember files an established call under both legs' dialog IDs; its
// forget undoes that.
func (b *B2BUA) remember(c *call) {
	ids := [2]string{c.legs[0].id(), c.legs[1].id()}
	b.mu.Lock()
	for _, id := range ids {
		b.calls[id] = c
	}
	b.mu.Unlock()
	c.forget = func() {
		b.mu.Lock()
		for _, id := range ids {
			if b.calls[id] == c {
				delete(b.calls, id)
			}
		}
		b.mu.Unlock()
	}
}

// match finds the call and the leg an in-dialog request came on. The
// caller's leg knows its dialog as UAS, the callee's as UAC: sipgo
// orders the tags of the two IDs differently.
func (b *B2BUA) match(req *sip.Request) (*call, *leg) {
	uas, err1 := sip.DialogIDFromRequestUAS(req)
	uac, err2 := sip.DialogIDFromRequestUAC(req)
	if err1 != nil || err2 != nil {
		return nil, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if c := b.calls[uas]; c != nil && c.legs[relay.A].id() == uas {
		return c, c.legs[relay.A]
	}
	if c := b.calls[uac]; c != nil && c.legs[relay.B].id() == uac {
		return c, c.legs[relay.B]
	}
	return nil, nil
}

// Close ends every call in progress with BYE on both legs (reason
// "service stopped") and waits until they are ended.
func (b *B2BUA) Close() {
	var wg sync.WaitGroup
	for _, c := range b.live() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.hangup(b.log, nil, ReasonShutdown)
		}()
	}
	wg.Wait()
}

// Active is the number of calls in progress.
func (b *B2BUA) Active() int { return len(b.live()) }

// live is each call in progress once (b.calls holds it under both legs'
// dialog IDs).
func (b *B2BUA) live() []*call {
	b.mu.Lock()
	defer b.mu.Unlock()
	seen := make(map[*call]bool, len(b.calls)/2)
	list := make([]*call, 0, len(b.calls)/2)
	for _, c := range b.calls {
		if !seen[c] {
			seen[c] = true
			list = append(list, c)
		}
	}
	return list
}

// HandleInvite takes an INVITE on any realm: a new call, or a re-INVITE
// inside one.
func (b *B2BUA) HandleInvite(r *signal.Realm, req *sip.Request, tx sip.ServerTransaction) {
	if req.To().Params.Has("tag") {
		b.HandleRequest(r, req, tx)
		return
	}
	b.mu.Lock()
	s := b.settings
	b.mu.Unlock()
	if code, reason, hdrs := checkInvite(req); code != 0 {
		signal.Respond(b.log, tx, req, code, reason, hdrs...)
		return
	}
	var p plan
	code := b.route(s, r, req, func() (c int) { p, c = b.toPBX(s, req); return }, func() (c int) { p, c = b.toClient(s, req); return })
	if code != 0 {
		signal.Respond(b.log, tx, req, code, statusText(code))
		b.refused(s, r, req, code)
		return
	}
	p.noReply, p.noAnswer = s.NoReply, s.NoAnswer
	p.headers = s.allow(p.toClient)
	p.back = s.allow(!p.toClient)
	transport := signal.TransportOf(req.Transport())
	in, err := b.serverCache(r, transport).ReadInvite(req, tx)
	if err != nil {
		signal.Respond(b.log, tx, req, 400, "Bad INVITE")
		return
	}
	_ = in.Respond(100, "Trying", nil)
	caller := callerLeg(in, r, !p.toClient, contact(r, transport))
	if caller.client && s.Flow != nil {
		aor, ct := req.From().Address.String(), req.Contact().Address.String()
		caller.reflow = func() (string, string, bool) { return s.Flow(aor, ct) }
	}
	if err := b.bridge(s, p, caller, req, tx); err != nil {
		b.log.Info("call not connected", "call-id", req.CallID().Value(), "err", err)
	}
}

// route sends a request that starts something (a call, a subscription,
// a MESSAGE) its way: from the access realm towards the PBX, for a
// registered subscriber only (403 otherwise); from the core realm towards
// a client. It returns the status to refuse with, or 0.
func (b *B2BUA) route(s Settings, r *signal.Realm, req *sip.Request, toPBX, toClient func() int) int {
	switch r.Name {
	case s.AccessRealm:
		if s.Registered != nil && !s.Registered(req.From().Address, req.Source()) {
			return 403
		}
		return toPBX()
	case s.CoreRealm:
		return toClient()
	}
	return 404
}

// refused records a call psigate refused before trying the callee.
func (b *B2BUA) refused(s Settings, r *signal.Realm, req *sip.Request, code int) {
	if s.OnEnd == nil {
		return
	}
	now := time.Now()
	s.OnEnd(Record{From: uriString(partyURI(req.From().Address)), To: uriString(partyURI(req.To().Address)), ToClient: r.Name == s.CoreRealm,
		CallerAgent: agentOf(req), CallID: req.CallID().Value(), Started: now, Ended: now, Result: Failed, Code: code,
		Reason: strconv.Itoa(code) + " " + statusText(code)})
}

func statusText(code int) string {
	switch code {
	case 403:
		return "Not Registered"
	case 404:
		return "Not Found"
	case 480:
		return "Temporarily Unavailable"
	case 503:
		return "Service Unavailable"
	}
	return "Error"
}

// allow is the allow-list towards the access realm or the core.
func (s Settings) allow(toAccess bool) headerSet {
	if toAccess {
		return s.toAccess
	}
	return s.toCore
}

// headers is the allow-list's names towards the access realm or the core.
func (s Settings) headers(toAccess bool) []string {
	if toAccess {
		if s.ToAccess != nil {
			return s.ToAccess
		}
		return DefaultToAccess
	}
	if s.ToCore != nil {
		return s.ToCore
	}
	return DefaultToCore
}

// message is what psigate reads and writes of requests and responses
// alike.
type message interface {
	GetHeader(name string) sip.Header
	GetHeaders(name string) []sip.Header
	Headers() []sip.Header
	AppendHeader(h sip.Header)
}

func agentOf(m message) string {
	for _, name := range []string{"User-Agent", "Server"} {
		if h := m.GetHeader(name); h != nil {
			return h.Value()
		}
	}
	return ""
}

// plan is how a call crosses: the caller's and the callee's media legs,
// the realm and transport of the outgoing leg, and its INVITE.
type plan struct {
	caller, callee media.Leg
	realm          *signal.Realm
	transport      signal.Transport
	invite         func(body []byte, contentType string) *sip.Request
	// toClient: the PBX calls a subscriber. flow is then where its
	// requests go: the source it registered from, not its Contact
	// (behind NAT).
	toClient bool
	flow     string
	reflow   func() (transport, source string, ok bool)
	// noReply and noAnswer bound the wait for the callee.
	noReply, noAnswer time.Duration
	// headers pass from the caller to the callee, back from the callee.
	headers, back headerSet
	// busyTone, when set, turns the PBX's 486 and 600 into a busy tone
	// for the client first (seed Appendix A), for busyFor.
	busyTone media.Tone
	busyFor  time.Duration
}

// afterFunc is time.AfterFunc, never firing for a zero duration.
func afterFunc(d time.Duration, f func()) *time.Timer {
	if d <= 0 {
		d = 1<<63 - 1
	}
	return time.AfterFunc(d, f)
}

// toPBX plans a client's call to the PBX.
func (b *B2BUA) toPBX(s Settings, req *sip.Request) (plan, int) {
	access := s.AccessMedia
	access.Profile = s.ProfileFor(agentOf(req))
	target, err := s.Route()
	if err != nil {
		return plan{}, 503
	}
	core := b.realms.Realm(s.CoreRealm)
	if core == nil {
		return plan{}, 503
	}
	p := plan{caller: access, callee: s.CoreMedia, realm: core, transport: signal.TransportOf(target.Transport),
		invite: func(body []byte, ct string) *sip.Request {
			return outboundInvite(req, target, core.Advertise(), body, ct)
		}}
	if tone, ok := media.BusyTone(access.Profile.BusyTone); ok {
		p.busyTone, p.busyFor = tone, 4*time.Second
		if n := access.Profile.BusyToneSeconds; n > 0 {
			p.busyFor = time.Duration(n) * time.Second
		}
	}
	return p, 0
}

// toClient plans the PBX's call to a subscriber: the Request-URI's user
// is the token of its binding; the INVITE goes out on the flow the client
// registered on. A subscriber without a binding (or whose flow is gone)
// gets 480.
func (b *B2BUA) toClient(s Settings, req *sip.Request) (plan, int) {
	if s.Lookup == nil {
		return plan{}, 480
	}
	sub, ok := s.Lookup(req.Recipient.User)
	if !ok {
		return plan{}, 480
	}
	access := b.realms.Realm(s.AccessRealm)
	if access == nil {
		return plan{}, 503
	}
	var contactURI sip.Uri
	if err := sip.ParseUri(sub.Contact, &contactURI); err != nil {
		return plan{}, 480
	}
	client := s.AccessMedia
	client.Profile = s.ProfileFor(sub.UserAgent)
	p := plan{caller: s.CoreMedia, callee: client, realm: access, transport: signal.TransportOf(sub.Transport),
		invite: func(body []byte, ct string) *sip.Request {
			return clientInvite(req, sub, contactURI, access.Advertise(), body, ct)
		}, toClient: true, flow: sub.Source}
	if s.Flow != nil {
		p.reflow = func() (string, string, bool) { return s.Flow(sub.AOR, sub.Contact) }
	}
	return p, 0
}

// Subscriber is what a call to a registered client needs of its binding.
type Subscriber struct {
	AOR, Contact, UserAgent string
	Transport, Source       string // the flow it registered on
}

// clientInvite is the INVITE to a subscriber: its Contact as
// Request-URI, sent to the flow's source; the caller's From (new tag);
// the subscriber's AOR as To. The Request-URI keeps the Contact's user
// and parameters but names the flow's address: a CANCEL follows the
// Request-URI, and the Contact is unreachable behind NAT.
func clientInvite(in *sip.Request, sub Subscriber, contact sip.Uri, home string, body []byte, ct string) *sip.Request {
	ruri := *contact.Clone()
	if host, port, err := net.SplitHostPort(sub.Source); err == nil {
		ruri.Host, ruri.Port = host, atoi(port)
	}
	return newInvite(ruri, sub.Transport, sub.Source, home, in, subscriberTo(sub, contact), body, ct)
}

// subscriberTo is the To of a call to a subscriber: its AOR.
func subscriberTo(sub Subscriber, contact sip.Uri) sip.ToHeader {
	var to sip.ToHeader
	if err := sip.ParseUri(sub.AOR, &to.Address); err != nil {
		to.Address = contact
	}
	return to
}

// newInvite is an outgoing leg's INVITE to ruri, sent over transport to
// dest: the caller's From with a new tag, to as To, the body (an SDP
// offer, or none for a late offer). The dialog layer adds Via, Call-ID,
// CSeq and Contact.
func newInvite(ruri sip.Uri, transport, dest, home string, caller *sip.Request, to sip.ToHeader, body []byte, contentType string) *sip.Request {
	out := sip.NewRequest(sip.INVITE, ruri)
	out.SetTransport(transport)
	out.SetDestination(dest)
	from := sip.FromHeader{DisplayName: caller.From().DisplayName, Address: homeURI(partyURI(caller.From().Address), home), Params: sip.HeaderParams{{K: "tag", V: sip.GenerateTagN(16)}}}
	to.Address = homeURI(partyURI(to.Address), home)
	out.AppendHeader(&from)
	out.AppendHeader(&to)
	if len(body) > 0 {
		out.SetBody(body)
		ct := sip.ContentTypeHeader(contentType)
		out.AppendHeader(&ct)
	}
	return out
}

// partyURI is a From or To URI as it crosses: the user and host, and
// user=phone; the parameters that describe one side's transport
// (transport, maddr, ttl, lr, ob) stay on it.
func partyURI(u sip.Uri) sip.Uri {
	c := *u.Clone()
	if c.UriParams != nil {
		kept := sip.NewParams()
		for _, kv := range c.UriParams {
			switch strings.ToLower(kv.K) {
			case "transport", "maddr", "ttl", "lr", "ob":
			default:
				kept = append(kept, kv)
			}
		}
		c.UriParams = kept
	}
	c.Headers = nil
	return c
}

// homeURI is a From or To URI whose host is an address (one side's: a
// PBX node's, psigate's own there) as it crosses to the other side: the
// host becomes home, psigate's address on that side, without a port.
// Host names (domains) cross as they are.
func homeURI(u sip.Uri, home string) sip.Uri {
	if home == "" {
		return u
	}
	if _, err := netip.ParseAddr(strings.Trim(u.Host, "[]")); err == nil {
		u.Host, u.Port = home, 0
	}
	return u
}

// checkInvite refuses what no PBX should see: headers in the Request-URI
// (RFC 4475 3.1.2.11: never turn them into real headers), no Contact
// (RFC 3261 section 8.1.1.8: a request that makes a dialog MUST have
// one), a body that is neither SDP nor multipart with SDP (415 with
// Accept), and an Accept that excludes SDP (406).
func checkInvite(req *sip.Request) (int, string, []sip.Header) {
	if len(req.Recipient.Headers) > 0 {
		return 400, "Headers In Request-URI", nil
	}
	if req.Contact() == nil {
		return 400, "Missing Contact", nil
	}
	if len(req.Body()) > 0 {
		ct := req.ContentType()
		if ct == nil {
			return 415, "Unsupported Media Type", []sip.Header{sip.NewHeader("Accept", "application/sdp, multipart/mixed")}
		}
		if _, err := bodyOf(req.Body(), ct.Value()); err != nil {
			return 415, "Unsupported Media Type", []sip.Header{sip.NewHeader("Accept", "application/sdp, multipart/mixed")}
		}
	}
	if acc := req.GetHeader("Accept"); acc != nil && !acceptsSDP(acc.Value()) {
		return 406, "Not Acceptable", []sip.Header{sip.NewHeader("Warning", `399 psigate "only application/sdp"`)}
	}
	return 0, "", nil
}

func acceptsSDP(accept string) bool {
	for _, a := range strings.Split(accept, ",") {
		t := strings.ToLower(strings.TrimSpace(strings.Split(a, ";")[0]))
		if t == "application/sdp" || t == "application/*" || t == "*/*" {
			return true
		}
	}
	return false
}

// contentType is a message's Content-Type value ("" without one).
func contentType(m sip.Message) string {
	var h sip.Header
	switch m := m.(type) {
	case *sip.Request:
		if ct := m.ContentType(); ct != nil {
			h = ct
		}
	case *sip.Response:
		if ct := m.ContentType(); ct != nil {
			h = ct
		}
	}
	if h == nil {
		return ""
	}
	return h.Value()
}

// response is a response to req with a body of the given type and the
// headers of from (a response of the other leg) that allow permits.
func response(req *sip.Request, code int, reason string, body []byte, ct string, from *sip.Response, allow headerSet) *sip.Response {
	res := sip.NewResponseFromRequest(req, code, reason, body)
	if from != nil {
		copyHeaders(res, from, allow)
	}
	if len(body) > 0 {
		h := sip.ContentTypeHeader(ct)
		res.AppendHeader(&h)
	}
	return res
}

// outboundInvite is the PBX leg's INVITE: the client's Request-URI user
// at the PBX node (so a CANCEL, which follows the Request-URI, reaches the
// node too), its From (new tag) and To, the translated offer; nothing else
// of the client.
func outboundInvite(in *sip.Request, target Target, home string, body []byte, ct string) *sip.Request {
	ruri := sip.Uri{Scheme: "sip", User: in.Recipient.User, Host: target.Addr}
	if host, port, err := net.SplitHostPort(target.Addr); err == nil {
		ruri.Host, ruri.Port = host, atoi(port)
	}
	if t := signal.TransportOf(target.Transport); t != signal.UDP {
		ruri.UriParams = sip.HeaderParams{{K: "transport", V: string(t)}}
	}
	to := sip.ToHeader{DisplayName: in.To().DisplayName, Address: *in.To().Address.Clone()}
	return newInvite(ruri, target.Transport, target.Addr, home, in, to, body, ct)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
