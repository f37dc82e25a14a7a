package registrar

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/psigate/psigate/sbc/signal"
)

// Target is the PBX node a REGISTER goes to.
type Target struct {
	Node      string // the node's name, e.g. "node1"
	Addr      string // host:port, e.g. "10.180.0.10:5060"
	Transport string // "UDP", "TCP" or "TLS"
}

// ErrNoNode means no PBX node is available; clients get 503.
var ErrNoNode = errors.New("registrar: no PBX node available")

// Router picks the PBX node for an AOR; node is the node the AOR is
// registered on now ("" if none), for "stick with comm server".
type Router interface {
	Route(aor, node string) (Target, error)
}

// Limits are the registration timers of the remote subscriber settings
// (seed 9.4.1.1).
type Limits struct {
	MaxExpiry   time.Duration // longer requests are shortened to it
	MinInterval time.Duration // shorter ones get 423 Interval Too Brief
	// Register throttling: the expiry given to clients per transport
	// (0 = off), so their NAT and TLS flows stay alive, while the PBX is
	// registered for up to MaxThreshold and refreshes in between are
	// answered by psigate.
	ThrottleUDP, ThrottleStream time.Duration
	MaxThreshold                time.Duration
}

// throttle is the client expiry for a transport, 0 when throttling is off.
func (l Limits) throttle(transport string) time.Duration {
	if strings.EqualFold(transport, "UDP") {
		return l.ThrottleUDP
	}
	return l.ThrottleStream
}

// Realms finds a realm's running SIP stack by name; *signal.Stack fits.
type Realms interface {
	Realm(name string) *signal.Realm
}

// Relay relays REGISTERs from the access realm to the PBX through the
// core realm.
type Relay struct {
	Realms Realms
	// AccessRealm and CoreRealm name the realms, e.g. "Main-Access-IPv4".
	AccessRealm, CoreRealm string
	Router                 Router
	Bindings               *Bindings
	Limits                 Limits
	// Quarantine refuses flows that register too fast; nil = off.
	Quarantine *Quarantine
	// OnQuarantine (may be nil) hears of each flow put in quarantine.
	OnQuarantine func(source string)
	Log          *slog.Logger
	Now          func() time.Time
	// Timeout bounds the wait for the PBX's answer; default 8 s.
	Timeout time.Duration
}

// request is a validated client REGISTER.
type request struct {
	req      *sip.Request
	aor      string
	contact  *sip.ContactHeader // nil for a wildcard
	wildcard bool
	expires  time.Duration
}

// badRequest is a REGISTER psigate refuses itself.
type badRequest struct {
	code   int
	reason string
	hdrs   []sip.Header
}

func (e *badRequest) Error() string { return fmt.Sprintf("%d %s", e.code, e.reason) }

// parse checks a REGISTER (RFC 3261 section 10.3) and reads what the
// relay needs.
func (r *Relay) parse(req *sip.Request) (*request, error) {
	to, from, cseq := req.To(), req.From(), req.CSeq()
	if to == nil || from == nil || req.CallID() == nil || cseq == nil || cseq.MethodName != sip.REGISTER {
		return nil, &badRequest{code: 400, reason: "Missing or Bad Mandatory Header"}
	}
	if to.Address.Scheme != "sip" && to.Address.Scheme != "sips" || to.Address.Host == "" {
		return nil, &badRequest{code: 400, reason: "Bad To URI"}
	}
	p := &request{req: req, aor: aor(to.Address)}
	contacts := req.GetHeaders("Contact")
	switch {
	case len(contacts) == 0:
		return nil, &badRequest{code: 400, reason: "Missing Contact"}
	case len(contacts) > 1:
		return nil, &badRequest{code: 400, reason: "One Contact Per REGISTER"}
	}
	c, ok := contacts[0].(*sip.ContactHeader)
	if !ok {
		return nil, &badRequest{code: 400, reason: "Bad Contact"}
	}
	expires, err := requestedExpiry(req, c)
	if err != nil {
		return nil, &badRequest{code: 400, reason: "Bad Expires"}
	}
	if c.Address.Wildcard {
		if expires != 0 {
			return nil, &badRequest{code: 400, reason: "Wildcard Contact Needs Expires 0"}
		}
		p.wildcard = true
		return p, nil
	}
	if c.Address.Scheme != "sip" && c.Address.Scheme != "sips" || c.Address.Host == "" {
		return nil, &badRequest{code: 400, reason: "Bad Contact URI"}
	}
	p.contact = c
	if expires > 0 && expires < r.Limits.MinInterval {
		return nil, &badRequest{code: 423, reason: "Interval Too Brief",
			hdrs: []sip.Header{sip.NewHeader("Min-Expires", strconv.Itoa(int(r.Limits.MinInterval/time.Second)))}}
	}
	if r.Limits.MaxExpiry > 0 && expires > r.Limits.MaxExpiry {
		expires = r.Limits.MaxExpiry
	}
	p.expires = expires
	return p, nil
}

// aor is the address of record of a To URI: scheme, user and host.
func aor(u sip.Uri) string { return AOR(u) }

// AOR is the address of record a URI names, as bindings are filed:
// scheme, user and host (lower case), nothing else.
func AOR(u sip.Uri) string {
	s := u.Scheme + ":"
	if u.User != "" {
		s += u.User + "@"
	}
	return s + strings.ToLower(u.Host)
}

// requestedExpiry reads the Contact's expires parameter, else the Expires
// header, else the default of one hour (RFC 3261 section 10.2.1.1).
func requestedExpiry(req *sip.Request, c *sip.ContactHeader) (time.Duration, error) {
	v, ok := c.Params.Get("expires")
	if !ok {
		if h := req.GetHeader("Expires"); h != nil {
			v, ok = strings.TrimSpace(h.Value()), true
		}
	}
	if !ok {
		return time.Hour, nil
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, err
	}
	return time.Duration(n) * time.Second, nil
}

// HandleRegister is the access realm's REGISTER handler.
func (r *Relay) HandleRegister(req *sip.Request, tx sip.ServerTransaction) {
	if ok, newly := r.Quarantine.Admit(req.Transport()+" "+req.Source(), r.now()); !ok {
		if newly {
			r.Log.Warn("registration rate violator quarantined", "source", req.Source(), "transport", req.Transport())
			if r.OnQuarantine != nil {
				r.OnQuarantine(req.Source())
			}
		}
		signal.Respond(r.Log, tx, req, 403, "Quarantined")
		return
	}
	p, err := r.parse(req)
	var bad *badRequest
	if errors.As(err, &bad) {
		signal.Respond(r.Log, tx, req, bad.code, bad.reason, bad.hdrs...)
		return
	}
	if p.wildcard {
		r.relayWildcard(p, tx)
		return
	}
	r.relay(p, tx)
}

func (r *Relay) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// relay forwards one binding's REGISTER and answers the client.
func (r *Relay) relay(p *request, tx sip.ServerTransaction) {
	req := p.req
	instance, _ := p.contact.Params.Get("+sip.instance")
	b := r.Bindings.Find(p.aor, p.contact.Address.String(), instance)
	if b == nil {
		b = &Binding{Token: newToken(), AOR: p.aor, PBXCallID: newToken() + "@psigate", Since: r.now().UTC()}
	}
	if r.answerLocally(b, p, tx) {
		return
	}
	target, err := r.Router.Route(p.aor, b.Node)
	if err != nil {
		signal.Respond(r.Log, tx, req, 503, "Service Unavailable", sip.NewHeader("Retry-After", "30"))
		return
	}
	core := r.Realms.Realm(r.CoreRealm)
	if core == nil {
		signal.Respond(r.Log, tx, req, 503, "Service Unavailable", sip.NewHeader("Retry-After", "30"))
		return
	}
	b.PBXCSeq++
	throttle := r.Limits.throttle(req.Transport())
	asked := p.expires
	if throttle > 0 && r.Limits.MaxThreshold > 0 && asked > r.Limits.MaxThreshold {
		asked = r.Limits.MaxThreshold
	}
	out := r.pbxRequest(core, p, b, target, asked)
	res, err := r.send(core, out)
	if err != nil {
		r.Log.Warn("REGISTER not answered by the PBX", "aor", p.aor, "node", target.Node, "err", err)
		signal.Respond(r.Log, tx, req, 504, "Server Time-out")
		return
	}
	if res.IsSuccess() {
		granted := grantedExpiry(res, b.Token, asked)
		client := granted
		if throttle > 0 && throttle < granted {
			client = throttle
		}
		r.remember(b, p, target, client, granted)
		if granted == 0 {
			r.Bindings.Delete(b.Token)
		}
	} else {
		// The PBX's CSeq advanced even on a challenge; a new binding
		// waits for the client's authenticated retry.
		cur := r.Bindings.Get(b.Token)
		if cur == nil {
			b.Pending, b.Contact, b.Since, b.InstanceID = true, p.contact.Address.String(), r.now().UTC(), instance
			cur = b
		}
		cur.PBXCSeq = b.PBXCSeq
		r.Bindings.Put(*cur)
	}
	r.answer(tx, p, res)
}

// answerLocally answers a throttled client's refresh without the PBX,
// when it is the same registration on the same flow (same Call-ID, a
// higher CSeq, the same Contact) and psigate's registration at the PBX
// outlives the client's next refresh with room to spare. Anything else
// (a new device, a changed Contact, a new Call-ID, a de-registration) is
// relayed and authenticated by the PBX.
func (r *Relay) answerLocally(b *Binding, p *request, tx sip.ServerTransaction) bool {
	req := p.req
	throttle := r.Limits.throttle(req.Transport())
	now := r.now()
	ok := throttle > 0 && !b.Pending && p.expires > 0 &&
		b.Flow == (Flow{Transport: req.Transport(), Source: req.Source(), Realm: r.AccessRealm}) &&
		b.ClientCallID == req.CallID().Value() && req.CSeq().SeqNo > b.ClientCSeq &&
		b.Contact == p.contact.Address.String() &&
		now.Add(2*throttle).Before(b.PBXExpires)
	if !ok {
		return false
	}
	b.ClientCSeq = req.CSeq().SeqNo
	b.Expires = now.Add(min(throttle, p.expires)).UTC()
	r.Bindings.Put(*b)
	r.answer(tx, p, sip.NewResponseFromRequest(req, 200, "OK", nil))
	return true
}

// remember stores the binding after the PBX accepted it.
func (r *Relay) remember(b *Binding, p *request, target Target, client, pbx time.Duration) {
	req := p.req
	b.Contact = p.contact.Address.String()
	b.Flow = Flow{Transport: req.Transport(), Source: req.Source(), Realm: r.AccessRealm}
	if ua := req.GetHeader("User-Agent"); ua != nil {
		b.UserAgent = ua.Value()
	}
	b.Expires = r.now().Add(client).UTC()
	b.PBXExpires = r.now().Add(pbx).UTC()
	b.ClientCallID = req.CallID().Value()
	b.ClientCSeq = req.CSeq().SeqNo
	b.Node = target.Node
	b.InstanceID, _ = p.contact.Params.Get("+sip.instance")
	b.RegID, _ = p.contact.Params.Get("reg-id")
	b.Push = pushParams(p.contact.Address)
	if b.Pending {
		b.Pending, b.Since = false, r.now().UTC()
	}
	r.Bindings.Put(*b)
}

// pushParams are the RFC 8599 parameters of a Contact URI.
func pushParams(u sip.Uri) map[string]string {
	var out map[string]string
	for _, k := range u.UriParams.Keys() {
		if strings.HasPrefix(k, "pn-") {
			if out == nil {
				out = map[string]string{}
			}
			out[k], _ = u.UriParams.Get(k)
		}
	}
	return out
}

// pbxRequest builds the REGISTER psigate sends to the PBX: the client's
// Request-URI, From and To URIs and credentials; psigate's own From tag,
// Call-ID, CSeq and Contact; nothing else of the client's.
func (r *Relay) pbxRequest(core *signal.Realm, p *request, b *Binding, target Target, expires time.Duration) *sip.Request {
	in := p.req
	out := sip.NewRequest(sip.REGISTER, *in.Recipient.Clone())
	out.SetTransport(target.Transport)
	out.SetDestination(target.Addr)
	from, to := *in.From(), *in.To()
	from.Address, from.Params = *in.From().Address.Clone(), sip.HeaderParams{{K: "tag", V: pbxTag(b.PBXCallID)}}
	to.Address, to.Params = *in.To().Address.Clone(), in.To().Params.Clone()
	out.AppendHeader(&from)
	out.AppendHeader(&to)
	callID := sip.CallIDHeader(b.PBXCallID)
	out.AppendHeader(&callID)
	out.AppendHeader(&sip.CSeqHeader{SeqNo: b.PBXCSeq, MethodName: sip.REGISTER})
	mf := sip.MaxForwardsHeader(70)
	out.AppendHeader(&mf)
	out.AppendHeader(r.coreContact(core, b.Token, target.Transport, expires))
	exp := sip.ExpiresHeader(uint32(expires / time.Second))
	out.AppendHeader(&exp)
	for _, name := range []string{"Authorization", "Proxy-Authorization", "User-Agent", "Allow"} {
		for _, h := range in.GetHeaders(name) {
			out.AppendHeader(sip.NewHeader(h.Name(), h.Value()))
		}
	}
	out.SetBody(nil)
	core.SendFrom(out)
	return out
}

// pbxTag is the From tag of a binding's REGISTERs to the PBX: its own,
// the same for every refresh of the registration.
func pbxTag(callID string) string {
	h := sha256.Sum256([]byte(callID))
	return hex.EncodeToString(h[:8])
}

// coreContact is psigate's Contact at the PBX for a binding.
func (r *Relay) coreContact(core *signal.Realm, token, transport string, expires time.Duration) *sip.ContactHeader {
	u := core.ContactURI(signal.TransportOf(transport))
	u.User = token
	c := &sip.ContactHeader{Address: u, Params: sip.HeaderParams{}}
	c.Params.Add("expires", strconv.Itoa(int(expires/time.Second)))
	return c
}

// send runs a client transaction on the core realm and returns its final
// response.
func (r *Relay) send(core *signal.Realm, req *sip.Request) (*sip.Response, error) {
	timeout := r.Timeout
	if timeout == 0 {
		timeout = 8 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return core.Do(ctx, req) // built already: only psigate's Via is added
}

// grantedExpiry is what the PBX granted psigate's contact: its expires
// parameter in the 200's Contact list, else the Expires header, else what
// was asked.
func grantedExpiry(res *sip.Response, token string, asked time.Duration) time.Duration {
	for _, h := range res.GetHeaders("Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok || c.Address.User != token {
			continue
		}
		if v, ok := c.Params.Get("expires"); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return time.Duration(n) * time.Second
			}
		}
	}
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil {
			return time.Duration(n) * time.Second
		}
	}
	return asked
}

// answer relays the PBX's final response to the client: its status and
// the headers the client needs, the client's own bindings as Contacts,
// nothing that names the PBX.
func (r *Relay) answer(tx sip.ServerTransaction, p *request, res *sip.Response) {
	out := sip.NewResponseFromRequest(p.req, res.StatusCode, res.Reason, nil)
	for _, name := range []string{"WWW-Authenticate", "Proxy-Authenticate", "Min-Expires", "Retry-After", "Date"} {
		for _, h := range res.GetHeaders(name) {
			out.AppendHeader(sip.NewHeader(h.Name(), h.Value()))
		}
	}
	if res.IsSuccess() {
		now := r.now()
		for _, b := range r.Bindings.OfAOR(p.aor) {
			left := max(int((b.Expires.Sub(now)+time.Second/2)/time.Second), 0)
			out.AppendHeader(sip.NewHeader("Contact", "<"+b.Contact+">;expires="+strconv.Itoa(left)))
		}
	}
	if err := tx.Respond(out); err != nil {
		r.Log.Warn("REGISTER answer not sent", "aor", p.aor, "err", err)
	}
}

// relayWildcard removes every binding of the AOR: at the PBX with a
// wildcard REGISTER, and locally.
func (r *Relay) relayWildcard(p *request, tx sip.ServerTransaction) {
	target, err := r.Router.Route(p.aor, "")
	if err != nil {
		signal.Respond(r.Log, tx, p.req, 503, "Service Unavailable", sip.NewHeader("Retry-After", "30"))
		return
	}
	core := r.Realms.Realm(r.CoreRealm)
	if core == nil {
		signal.Respond(r.Log, tx, p.req, 503, "Service Unavailable", sip.NewHeader("Retry-After", "30"))
		return
	}
	b := &Binding{Token: "*", PBXCallID: newToken() + "@psigate", PBXCSeq: 1}
	out := r.pbxRequest(core, p, b, target, 0)
	out.RemoveHeader("Contact")
	out.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Wildcard: true}})
	res, err := r.send(core, out)
	if err != nil {
		signal.Respond(r.Log, tx, p.req, 504, "Server Time-out")
		return
	}
	if res.IsSuccess() {
		for _, b := range r.Bindings.OfAOR(p.aor) {
			r.Bindings.Delete(b.Token)
		}
	}
	r.answer(tx, p, res)
}

// ErrChallenged means the PBX wants credentials for a de-registration,
// which psigate does not have: the registration lapses at its expiry.
var ErrChallenged = errors.New("registrar: the PBX challenged the de-registration")

// Deregister ends psigate's registration of a binding at the PBX after
// the client's binding ended (it stopped refreshing), with Expires 0 in the
// same registration (Call-ID, next CSeq). A PBX that trusts psigate
// accepts it; one that challenges gets no credentials, and its
// registration lapses at its own expiry (at most the throttling
// threshold).
func (r *Relay) Deregister(b Binding) error {
	core := r.Realms.Realm(r.CoreRealm)
	if core == nil {
		return errors.New("registrar: no core realm")
	}
	target, err := r.Router.Route(b.AOR, b.Node)
	if err != nil {
		return err
	}
	var aorURI sip.Uri
	if err := sip.ParseUri(b.AOR, &aorURI); err != nil {
		return fmt.Errorf("registrar: AOR %q: %w", b.AOR, err)
	}
	out := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: aorURI.Scheme, Host: aorURI.Host, Port: aorURI.Port})
	out.SetTransport(target.Transport)
	out.SetDestination(target.Addr)
	out.AppendHeader(&sip.FromHeader{Address: aorURI, Params: sip.HeaderParams{{K: "tag", V: newToken()}}})
	out.AppendHeader(&sip.ToHeader{Address: aorURI})
	callID := sip.CallIDHeader(b.PBXCallID)
	out.AppendHeader(&callID)
	out.AppendHeader(&sip.CSeqHeader{SeqNo: b.PBXCSeq + 1, MethodName: sip.REGISTER})
	mf := sip.MaxForwardsHeader(70)
	out.AppendHeader(&mf)
	out.AppendHeader(r.coreContact(core, b.Token, target.Transport, 0))
	exp := sip.ExpiresHeader(0)
	out.AppendHeader(&exp)
	out.SetBody(nil)
	res, err := r.send(core, out)
	switch {
	case err != nil:
		return err
	case res.StatusCode == 401 || res.StatusCode == 407:
		return ErrChallenged
	case !res.IsSuccess():
		return fmt.Errorf("registrar: de-registration: %d %s", res.StatusCode, res.Reason)
	}
	return nil
}
