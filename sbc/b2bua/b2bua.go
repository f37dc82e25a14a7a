// Package b2bua connects calls between the access realm (Zoom PSI
// clients) and the core realm (the PBX) as a back-to-back user agent:
// every call is two SIP dialogs with their own Call-IDs, tags, CSeqs,
// Vias and Contacts, and its media is anchored by sbc/media.
//
// Built so far: calls from a client to the PBX and from the PBX to a
// registered client (on the flow it registered on; 480 without one), with
// INVITE (SDP offer), provisional responses (183 with early media), the
// final answer, ACK, CANCEL and BYE from either side. Late offer,
// re-INVITE, UPDATE, PRACK, REFER and the rest are not built yet.
package b2bua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
}

// Why a call attempt was cancelled.
var (
	errCallerCancelled = errors.New("cancelled by the caller")
	errNoAnswer        = errors.New("no answer in time")
)

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
	calls    map[string]*call // by dialog ID, both legs
}

// New returns a B2BUA; Configure must be called before calls arrive.
func New(realms Realms, engine *relay.Engine, log *slog.Logger) *B2BUA {
	return &B2BUA{realms: realms, engine: engine, log: log,
		servers: map[cacheKey]*sipgo.DialogServerCache{},
		clients: map[cacheKey]*sipgo.DialogClientCache{},
		calls:   map[string]*call{}}
}

// Configure replaces the settings; calls in progress keep theirs.
func (b *B2BUA) Configure(s Settings) {
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

// call is one call: the client's dialog, the PBX's, the media.
type call struct {
	in     *sipgo.DialogServerSession
	out    *sipgo.DialogClientSession
	media  *media.Session
	cancel context.CancelFunc
	once   sync.Once
	end    func()
	info   CallInfo // what the portal shows; fixed at answer
}

// CallInfo describes a call in progress.
type CallInfo struct {
	// From and To are the caller's and the callee's URIs as dialled.
	From, To string
	// ToClient: the PBX called a subscriber (else a client called out).
	ToClient bool
	// CallerAgent is the caller's User-Agent.
	CallerAgent string
	Started     time.Time
	// Codecs, SRTP and Stats are per media leg: caller, callee.
	Codecs [2]string
	SRTP   [2]bool
	Stats  [2]relay.Stats
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

func (b *B2BUA) remember(id string, c *call) {
	b.mu.Lock()
	b.calls[id] = c
	b.mu.Unlock()
}

func (b *B2BUA) forget(ids ...string) {
	b.mu.Lock()
	for _, id := range ids {
		delete(b.calls, id)
	}
	b.mu.Unlock()
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

// errStatus carries the response a failed call leg ends with.
type errStatus struct {
	code   int
	reason string
}

func (e *errStatus) Error() string { return fmt.Sprintf("%d %s", e.code, e.reason) }

// HandleInvite takes a client's INVITE on the access realm.
func (b *B2BUA) HandleInvite(r *signal.Realm, req *sip.Request, tx sip.ServerTransaction) {
	b.mu.Lock()
	s := b.settings
	b.mu.Unlock()
	if req.To().Params.Has("tag") {
		signal.Respond(b.log, tx, req, 501, "Re-INVITE Not Implemented")
		return
	}
	if code, reason, hdrs := checkInvite(req); code != 0 {
		signal.Respond(b.log, tx, req, code, reason, hdrs...)
		return
	}
	var p plan
	var code int
	switch r.Name {
	case s.AccessRealm:
		p, code = b.toPBX(s, req)
	case s.CoreRealm:
		p, code = b.toClient(s, req)
	default:
		code = 404
	}
	p.noReply, p.noAnswer = s.NoReply, s.NoAnswer
	if code != 0 {
		signal.Respond(b.log, tx, req, code, statusText(code))
		return
	}
	in, err := b.serverCache(r, signal.TransportOf(req.Transport())).ReadInvite(req, tx)
	if err != nil {
		signal.Respond(b.log, tx, req, 400, "Bad INVITE")
		return
	}
	_ = in.Respond(100, "Trying", nil)
	if err := b.bridge(p, in, req, tx); err != nil {
		b.log.Info("call not connected", "call-id", req.CallID().Value(), "err", err)
	}
}

func statusText(code int) string {
	switch code {
	case 404:
		return "Not Found"
	case 480:
		return "Temporarily Unavailable"
	case 503:
		return "Service Unavailable"
	}
	return "Error"
}

// plan is how a call crosses: the caller's and the callee's media legs,
// the realm and transport of the outgoing leg, and its INVITE.
type plan struct {
	caller, callee media.Leg
	realm          *signal.Realm
	transport      signal.Transport
	invite         func(offer []byte) *sip.Request
	// flow, for a call to a client, is where its in-dialog requests go:
	// the source it registered from, not its Contact (behind NAT).
	flow string
	// noReply and noAnswer bound the wait for the callee.
	noReply, noAnswer time.Duration
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
	ua := ""
	if h := req.GetHeader("User-Agent"); h != nil {
		ua = h.Value()
	}
	access := s.AccessMedia
	access.Profile = s.ProfileFor(ua)
	target, err := s.Route()
	if err != nil {
		return plan{}, 503
	}
	core := b.realms.Realm(s.CoreRealm)
	if core == nil {
		return plan{}, 503
	}
	return plan{caller: access, callee: s.CoreMedia, realm: core, transport: signal.TransportOf(target.Transport),
		invite: func(offer []byte) *sip.Request { return outboundInvite(req, target, offer) }}, 0
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
	return plan{caller: s.CoreMedia, callee: client, realm: access, transport: signal.TransportOf(sub.Transport),
		invite: func(offer []byte) *sip.Request { return clientInvite(req, sub, contactURI, offer) }, flow: sub.Source}, 0
}

// Subscriber is what a call to a registered client needs of its binding.
type Subscriber struct {
	AOR, Contact, UserAgent string
	Transport, Source       string // the flow it registered on
}

// clientInvite is the INVITE to a subscriber: its Contact as
// Request-URI, sent to the flow's source; the caller's From (new tag);
// the subscriber's AOR as To.
func clientInvite(in *sip.Request, sub Subscriber, contact sip.Uri, offer []byte) *sip.Request {
	// The Request-URI keeps the Contact's user and parameters but names
	// the flow's address: a CANCEL follows the Request-URI, and the
	// Contact is unreachable behind NAT.
	ruri := *contact.Clone()
	if host, port, err := net.SplitHostPort(sub.Source); err == nil {
		ruri.Host, ruri.Port = host, atoi(port)
	}
	var to sip.ToHeader
	if err := sip.ParseUri(sub.AOR, &to.Address); err != nil {
		to.Address = contact
	}
	return newInvite(ruri, sub.Transport, sub.Source, in, to, offer)
}

// newInvite is an outgoing leg's INVITE to ruri, sent over transport to
// dest: the caller's From with a new tag, to as To, offer as SDP body.
// The dialog layer adds Via, Call-ID, CSeq and Contact.
func newInvite(ruri sip.Uri, transport, dest string, caller *sip.Request, to sip.ToHeader, offer []byte) *sip.Request {
	out := sip.NewRequest(sip.INVITE, ruri)
	out.SetTransport(transport)
	out.SetDestination(dest)
	from := sip.FromHeader{DisplayName: caller.From().DisplayName, Address: *caller.From().Address.Clone(), Params: sip.HeaderParams{{K: "tag", V: sip.GenerateTagN(16)}}}
	out.AppendHeader(&from)
	out.AppendHeader(&to)
	out.SetBody(offer)
	ct := sip.ContentTypeHeader("application/sdp")
	out.AppendHeader(&ct)
	return out
}

// checkInvite refuses what no PBX should see: headers in the Request-URI
// (RFC 4475 3.1.2.11: never turn them into real headers), no Contact
// (RFC 3261 section 8.1.1.8: a request that makes a dialog MUST have
// one), a body that is not SDP (415 with Accept), and an Accept that
// excludes SDP (406).
func checkInvite(req *sip.Request) (int, string, []sip.Header) {
	if len(req.Recipient.Headers) > 0 {
		return 400, "Headers In Request-URI", nil
	}
	if req.Contact() == nil {
		return 400, "Missing Contact", nil
	}
	if ct := req.ContentType(); len(req.Body()) > 0 && (ct == nil || !strings.EqualFold(strings.TrimSpace(strings.Split(ct.Value(), ";")[0]), "application/sdp")) {
		return 415, "Unsupported Media Type", []sip.Header{sip.NewHeader("Accept", "application/sdp")}
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

// bridge sends the call on to the PBX and relays its answer.
func (b *B2BUA) bridge(p plan, in *sipgo.DialogServerSession, req *sip.Request, tx sip.ServerTransaction) error {
	// Media inactivity ends an established call with BYE on both legs.
	var established atomic.Pointer[call]
	onMedia := func(ev relay.Event) {
		if c := established.Load(); c != nil {
			b.log.Info("call ended by media inactivity", "call-id", req.CallID().Value(), "event", ev.Kind, "side", ev.Side, "idle", ev.Idle)
			go b.hangup(c, "media "+ev.Kind.String())
		}
	}
	sess, err := media.NewSession(b.engine, p.caller, p.callee, onMedia)
	if err != nil {
		_ = in.Respond(503, "Service Unavailable", nil)
		return err
	}
	fail := func(code int, reason string, err error) error {
		sess.Close()
		_ = in.Respond(code, reason, nil)
		_ = in.Close()
		return err
	}
	if len(req.Body()) == 0 {
		return fail(501, "Late Offer Not Implemented", errors.New("INVITE without SDP"))
	}
	offer, err := sess.Offer(relay.A, req.Body())
	if errors.Is(err, media.ErrNotAcceptable) {
		return fail(488, "Not Acceptable Here", err)
	}
	if err != nil {
		return fail(500, "Server Internal Error", err)
	}
	out := p.invite(offer)
	ctx, cancel := context.WithCancelCause(context.Background())
	c := &call{in: in, media: sess, cancel: func() { cancel(nil) }, info: CallInfo{
		From: req.From().Address.String(), To: req.To().Address.String(), ToClient: p.flow != "", Started: time.Now(),
	}}
	if h := req.GetHeader("User-Agent"); h != nil {
		c.info.CallerAgent = h.Value()
	}
	// With no response at all, sipgo cannot CANCEL (RFC 3261 section
	// 9.1 needs a provisional first): give up on the transaction.
	noReply := afterFunc(p.noReply, func() { cancel(sipgo.WaitAnswerForceCancelErr) })
	var noAnswer *time.Timer
	defer func() {
		noReply.Stop()
		if noAnswer != nil {
			noAnswer.Stop()
		}
	}()
	tx.OnCancel(func(*sip.Request) { cancel(errCallerCancelled) })
	dc, err := b.clientCache(p.realm, p.transport).WriteInvite(ctx, out)
	if err != nil {
		cancel(nil)
		return fail(503, "Service Unavailable", err)
	}
	c.out = dc
	answered := false
	err = dc.WaitAnswer(ctx, sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
		noReply.Stop()
		if noAnswer == nil && res.IsProvisional() {
			noAnswer = afterFunc(p.noAnswer, func() { cancel(errNoAnswer) })
		}
		if !res.IsProvisional() || res.StatusCode == 100 {
			return nil
		}
		body := []byte(nil)
		if len(res.Body()) > 0 && !answered {
			ans, err := sess.Answer(relay.B, res.Body())
			if err != nil {
				return nil // early media the client cannot take; ringing goes on
			}
			answered, body = true, ans
		}
		return in.Respond(res.StatusCode, res.Reason, body, sdpType(body)...)
	}})
	var dr *sipgo.ErrDialogResponse
	switch cause := context.Cause(ctx); {
	case errors.As(err, &dr):
		cancel(nil)
		return fail(dr.Res.StatusCode, dr.Res.Reason, err)
	case errors.Is(cause, errCallerCancelled):
		sess.Close()
		_ = in.Close()
		return cause // sipgo answered the caller's INVITE with 487
	case errors.Is(cause, sipgo.WaitAnswerForceCancelErr):
		return fail(408, "Request Timeout", errors.New("no reply from the callee"))
	case errors.Is(cause, errNoAnswer):
		return fail(480, "No Answer", cause)
	case err != nil:
		cancel(nil)
		return fail(504, "Server Time-out", err)
	}
	body := dr0(dc.InviteResponse)
	if !answered {
		ans, err := sess.Answer(relay.B, body)
		if err != nil {
			_ = dc.Ack(ctx)
			_ = dc.Bye(ctx)
			cancel(nil)
			return fail(488, "Not Acceptable Here", err)
		}
		body = ans
	} else {
		body = lastAnswer(sess)
	}
	if p.flow != "" {
		toFlow(dc.InviteResponse, p.flow)
	}
	// Known before the ACK: the callee may hang up as soon as it has it.
	c.end = func() {
		sess.Close()
		cancel(nil)
		b.forget(in.ID, dc.ID)
	}
	b.remember(in.ID, c)
	b.remember(dc.ID, c)
	established.Store(c)
	if err := dc.Ack(ctx); err != nil {
		b.hangup(c, "ACK not sent")
		return fmt.Errorf("ACK to the callee: %w", err)
	}
	if err := in.RespondSDP(body); err != nil {
		b.hangup(c, "answer not sent")
		return err
	}
	return nil
}

func dr0(res *sip.Response) []byte {
	if res == nil {
		return nil
	}
	return res.Body()
}

func sdpType(body []byte) []sip.Header {
	if len(body) == 0 {
		return nil
	}
	ct := sip.ContentTypeHeader("application/sdp")
	return []sip.Header{&ct}
}

// lastAnswer is the SDP the client already has from early media; the 200
// repeats it (RFC 3261 section 13.2.1: the same answer).
func lastAnswer(s *media.Session) []byte { return s.LastSent(relay.A) }

// outboundInvite is the PBX leg's INVITE: the client's Request-URI user
// at the PBX node (so a CANCEL, which follows the Request-URI, reaches the
// node too), its From (new tag) and To, the translated offer; nothing else
// of the client.
func outboundInvite(in *sip.Request, target Target, offer []byte) *sip.Request {
	ruri := sip.Uri{Scheme: "sip", User: in.Recipient.User, Host: target.Addr}
	if host, port, err := net.SplitHostPort(target.Addr); err == nil {
		ruri.Host, ruri.Port = host, atoi(port)
	}
	if t := signal.TransportOf(target.Transport); t != signal.UDP {
		ruri.UriParams = sip.HeaderParams{{K: "transport", V: string(t)}}
	}
	to := sip.ToHeader{DisplayName: in.To().DisplayName, Address: *in.To().Address.Clone()}
	return newInvite(ruri, target.Transport, target.Addr, in, to, offer)
}

// HandleAck takes an ACK on any realm.
func (b *B2BUA) HandleAck(r *signal.Realm, req *sip.Request, tx sip.ServerTransaction) {
	_ = b.serverCache(r, signal.TransportOf(req.Transport())).ReadAck(req, tx)
}

// HandleBye ends a call from either side.
func (b *B2BUA) HandleBye(r *signal.Realm, req *sip.Request, tx sip.ServerTransaction) {
	// The client's leg knows this dialog as its UAS, the PBX's as its
	// UAC: sipgo orders the tags of the two IDs differently.
	uas, err1 := sip.DialogIDFromRequestUAS(req)
	uac, err2 := sip.DialogIDFromRequestUAC(req)
	if err1 != nil || err2 != nil {
		signal.Respond(b.log, tx, req, 400, "Bad BYE")
		return
	}
	b.mu.Lock()
	c, id := b.calls[uas], uas
	if c == nil {
		c, id = b.calls[uac], uac
	}
	b.mu.Unlock()
	if c == nil {
		signal.Respond(b.log, tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	if id == c.in.ID {
		_ = c.in.ReadBye(req, tx)
	} else {
		_ = c.out.ReadBye(req, tx)
	}
	b.hangup(c, "BYE")
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// toFlow points the remote target a dialog keeps from the client's 200
// at the flow the client registered on: the dialog's ACK and BYE then
// reach it behind NAT (they go to the Contact otherwise).
func toFlow(res *sip.Response, flow string) {
	c := res.Contact()
	if c == nil {
		return
	}
	host, port, err := net.SplitHostPort(flow)
	if err != nil {
		return
	}
	c.Address.Host = host
	c.Address.Port, _ = strconv.Atoi(port)
}

// byeOnFlow is a BYE towards a client that goes where its INVITE came
// from, over the same connection for TCP and TLS: a client behind NAT
// cannot be reached at the address in its Contact.
func byeOnFlow(invite *sip.Request) *sip.Request {
	bye := sip.NewRequest(sip.BYE, invite.Contact().Address)
	bye.SetTransport(invite.Transport())
	bye.SetDestination(invite.Source())
	return bye
}

// hangup ends both legs once.
func (b *B2BUA) hangup(c *call, why string) {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if c.in.LoadState() != sip.DialogStateEnded {
			if err := c.in.WriteBye(ctx, byeOnFlow(c.in.InviteRequest)); err != nil {
				b.log.Warn("BYE to the client failed", "err", err, "to", c.in.InviteRequest.Source())
			}
		}
		if c.out.LoadState() != sip.DialogStateEnded {
			_ = c.out.Bye(ctx)
		}
		_ = c.in.Close()
		_ = c.out.Close()
		c.end()
	})
}
