package b2bua

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/psigate/psigate/sbc/signal"
)

// Requests outside a call: MESSAGE and NOTIFY cross as a single
// transaction (a PBX's unsolicited message-waiting NOTIFY reaches the
// subscriber the Request-URI's token names); SUBSCRIBE makes a
// subscription, a dialog on each side, whose NOTIFYs and refreshes psigate
// relays until it ends (RFC 6665). Like calls, each side has its own
// Call-ID, tags, CSeq, Via and Contact.

// HandleOutside takes a MESSAGE, NOTIFY or SUBSCRIBE outside a dialog.
func (b *B2BUA) HandleOutside(r *signal.Realm, req *sip.Request, tx sip.ServerTransaction) {
	b.mu.Lock()
	s := b.settings
	b.mu.Unlock()
	if len(req.Recipient.Headers) > 0 {
		signal.Respond(b.log, tx, req, 400, "Headers In Request-URI")
		return
	}
	var d *sdialog
	code := b.route(s, r, req, func() (c int) { d, c = b.towardsPBX(s, req); return }, func() (c int) { d, c = b.towardsClient(s, req); return })
	if code != 0 {
		signal.Respond(b.log, tx, req, code, statusText(code))
		return
	}
	out := d.request(req.Method)
	copyHeaders(out, req, s.allow(d.client))
	copyBody(out, req)
	if req.Method != sip.SUBSCRIBE {
		res, err := d.do(out)
		if err != nil {
			signal.Respond(b.log, tx, req, 408, "Request Timeout")
			return
		}
		resp := response(req, res.StatusCode, res.Reason, res.Body(), contentType(res), res, s.allow(!d.client))
		resp.To().Params.Add("tag", sip.GenerateTagN(16)) // RFC 3261 section 8.2.6.2
		_ = tx.Respond(resp)
		return
	}
	b.subscribe(s, r, d, req, tx, out)
}

// towardsPBX is the other side of a client's request: the PBX node,
// the client's Request-URI user at it, the client's From and To.
func (b *B2BUA) towardsPBX(s Settings, req *sip.Request) (*sdialog, int) {
	target, err := s.Route()
	if err != nil {
		return nil, 503
	}
	core := b.realms.Realm(s.CoreRealm)
	if core == nil {
		return nil, 503
	}
	inv := outboundInvite(req, target, core.Advertise(), nil, "")
	return newSDialog(core, inv.Recipient, target.Transport, target.Addr, req.From(), req.To().Address, false), 0
}

// towardsClient is the other side of the PBX's request: the subscriber
// whose token is the Request-URI's user, on its flow.
func (b *B2BUA) towardsClient(s Settings, req *sip.Request) (*sdialog, int) {
	if s.Lookup == nil {
		return nil, 480
	}
	sub, ok := s.Lookup(req.Recipient.User)
	if !ok {
		return nil, 480
	}
	access := b.realms.Realm(s.AccessRealm)
	if access == nil {
		return nil, 503
	}
	var contactURI sip.Uri
	if err := sip.ParseUri(sub.Contact, &contactURI); err != nil {
		return nil, 480
	}
	inv := clientInvite(req, sub, contactURI, access.Advertise(), nil, "")
	return newSDialog(access, inv.Recipient, sub.Transport, sub.Source, req.From(), inv.To().Address, true), 0
}

// sdialog is one side of a subscription (or of a single MESSAGE or
// NOTIFY) as psigate has it.
type sdialog struct {
	realm     *signal.Realm
	client    bool
	transport string
	dest      string // where its requests go: a client's flow, a PBX node
	contact   sip.ContactHeader

	callID, localTag string
	local, remote    sip.FromHeader // psigate's side and the peer's

	mu        sync.Mutex
	remoteTag string
	target    sip.Uri
	route     []string // Route values, in order
	cseq      atomic.Uint32
	seen      bool
	remoteSeq uint32
}

func newSDialog(r *signal.Realm, target sip.Uri, transport, dest string, from *sip.FromHeader, to sip.Uri, client bool) *sdialog {
	d := &sdialog{realm: r, client: client, transport: transport, dest: dest, target: target,
		contact: contact(r, signal.TransportOf(transport)), callID: sip.GenerateTagN(24) + "@psigate", localTag: sip.GenerateTagN(16),
		local:  sip.FromHeader{DisplayName: from.DisplayName, Address: *from.Address.Clone()},
		remote: sip.FromHeader{Address: *to.Clone()}}
	d.cseq.Store(1)
	return d
}

// request is a new request on the dialog: psigate's From and tag, the
// peer's To (and tag once known), the next CSeq, the route set.
func (d *sdialog) request(method sip.RequestMethod) *sip.Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	req := sip.NewRequest(method, *d.target.Clone())
	req.SetTransport(d.transport)
	req.SetDestination(d.dest)
	from := sip.FromHeader{DisplayName: d.local.DisplayName, Address: d.local.Address, Params: sip.HeaderParams{{K: "tag", V: d.localTag}}}
	to := sip.ToHeader{DisplayName: d.remote.DisplayName, Address: d.remote.Address}
	if d.remoteTag != "" {
		to.Params = sip.HeaderParams{{K: "tag", V: d.remoteTag}}
	}
	req.AppendHeader(&from)
	req.AppendHeader(&to)
	req.AppendHeader(sip.NewHeader("Call-ID", d.callID))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: d.cseq.Add(1) - 1, MethodName: method})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	for _, r := range d.route {
		req.AppendHeader(sip.NewHeader("Route", r))
	}
	if len(d.route) > 0 && !d.client {
		req.SetDestination("") // the first Route decides
	}
	if method == sip.SUBSCRIBE || method == sip.NOTIFY || method == sip.REFER {
		c := d.contact
		req.AppendHeader(&c)
	}
	d.realm.SendFrom(req)
	return req
}

// do sends a request and waits for its final response.
func (d *sdialog) do(req *sip.Request) (*sip.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), inDialogWait)
	defer cancel()
	res, err := d.realm.Client.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	return res, nil
}

// established takes the peer's tag, target and route set from a 2xx to
// psigate's SUBSCRIBE (RFC 3261 section 12.1.2: the Record-Route in
// reverse).
func (d *sdialog) established(res *sip.Response) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if res.To() == nil {
		return
	}
	if tag, ok := res.To().Params.Get("tag"); ok && d.remoteTag == "" {
		d.remoteTag = tag
	}
	if c := res.Contact(); c != nil {
		d.target = *c.Address.Clone()
	}
	rr := res.GetHeaders("Record-Route")
	d.route = d.route[:0]
	for i := len(rr) - 1; i >= 0; i-- {
		d.route = append(d.route, rr[i].Value())
	}
}

// inOrder checks and keeps the CSeq of a request from the peer; the
// first NOTIFY may also bring the peer's tag (it can beat the 2xx).
func (d *sdialog) inOrder(req *sip.Request) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if tag, ok := req.From().Params.Get("tag"); ok && d.remoteTag == "" {
		d.remoteTag = tag
	}
	n := req.CSeq().SeqNo
	if d.seen && n <= d.remoteSeq {
		return false
	}
	d.seen, d.remoteSeq = true, n
	return true
}

// subscription is a SUBSCRIBE's two dialogs: the subscriber's side
// (psigate as notifier) and the notifier's (psigate as subscriber).
type subscription struct {
	in, out *sdialog
	timer   *time.Timer
	once    sync.Once
	forget  func()
}

func (sub *subscription) end() {
	sub.once.Do(func() {
		sub.timer.Stop()
		sub.forget()
	})
}

// subKey identifies a subscription dialog by its Call-ID and psigate's
// tag, which are psigate's own choice on one side and unique on the
// other; the peer's tag may not be known yet when its first request
// comes.
func subKey(callID, tag string) string { return callID + "\x00" + tag }

// subscribe relays a SUBSCRIBE and sets up the subscription.
func (b *B2BUA) subscribe(s Settings, r *signal.Realm, out *sdialog, req *sip.Request, tx sip.ServerTransaction, fwd *sip.Request) {
	if req.Contact() == nil {
		signal.Respond(b.log, tx, req, 400, "Missing Contact")
		return
	}
	fromTag, _ := req.From().Params.Get("tag")
	in := &sdialog{realm: r, client: !out.client, transport: req.Transport(), contact: contact(r, signal.TransportOf(req.Transport())),
		callID: req.CallID().Value(), localTag: sip.GenerateTagN(16), remoteTag: fromTag, target: *req.Contact().Address.Clone(),
		local: sip.FromHeader{Address: *req.To().Address.Clone(), DisplayName: req.To().DisplayName}, remote: sip.FromHeader{Address: *req.From().Address.Clone(), DisplayName: req.From().DisplayName},
		seen: true, remoteSeq: req.CSeq().SeqNo}
	// Its requests go back where the SUBSCRIBE came from (a client's
	// flow); a PBX's Record-Route is the route set as it stands.
	in.dest = req.Source()
	if !in.client {
		for _, h := range req.GetHeaders("Record-Route") {
			in.route = append(in.route, h.Value())
		}
	}
	in.cseq.Store(1)
	sub := &subscription{in: in, out: out}
	keys := []string{subKey(in.callID, in.localTag), subKey(out.callID, out.localTag)}
	b.mu.Lock()
	for _, k := range keys {
		b.subs[k] = sub
	}
	b.mu.Unlock()
	sub.forget = func() {
		b.mu.Lock()
		for _, k := range keys {
			delete(b.subs, k)
		}
		b.mu.Unlock()
	}
	sub.timer = time.AfterFunc(subscriptionLimit(req, time.Hour), sub.end)
	res, err := out.do(fwd)
	if err != nil {
		sub.end()
		signal.Respond(b.log, tx, req, 408, "Request Timeout")
		return
	}
	back := s.allow(in.client)
	ok := response(req, res.StatusCode, res.Reason, res.Body(), contentType(res), res, back)
	ok.To().Params.Add("tag", in.localTag)
	if !res.IsSuccess() {
		sub.end()
		_ = tx.Respond(ok)
		return
	}
	out.established(res)
	sub.timer.Reset(subscriptionLimit(res, time.Hour))
	c := in.contact
	ok.AppendHeader(&c)
	_ = tx.Respond(ok)
}

// subscriptionLimit is how long psigate keeps a subscription without a
// refresh: its Expires and a grace of 32 s; def without one.
func subscriptionLimit(m message, def time.Duration) time.Duration {
	if h := m.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(h.Value()); err == nil && n >= 0 {
			return time.Duration(n)*time.Second + 32*time.Second
		}
	}
	return def
}

// inSubscription relays a request inside a subscription: a NOTIFY from
// the notifier, a refresh SUBSCRIBE from the subscriber. It reports false
// when the request belongs to none.
func (b *B2BUA) inSubscription(req *sip.Request, tx sip.ServerTransaction) bool {
	tag, _ := req.To().Params.Get("tag")
	b.mu.Lock()
	sub := b.subs[subKey(req.CallID().Value(), tag)]
	s := b.settings
	b.mu.Unlock()
	if sub == nil {
		return false
	}
	from, to := sub.in, sub.out
	if req.CallID().Value() == sub.out.callID {
		from, to = sub.out, sub.in
	}
	if !from.inOrder(req) {
		signal.Respond(b.log, tx, req, 500, "CSeq Out Of Order")
		return true
	}
	out := to.request(req.Method)
	copyHeaders(out, req, s.allow(to.client))
	copyBody(out, req)
	res, err := to.do(out)
	if err != nil {
		signal.Respond(b.log, tx, req, 408, "Request Timeout")
		return true
	}
	ok := response(req, res.StatusCode, res.Reason, res.Body(), contentType(res), res, s.allow(from.client))
	// Settled before the response goes: the peer may send the next
	// request as soon as it has it.
	switch {
	case res.StatusCode == 481 || terminated(req):
		sub.end()
	case req.Method == sip.SUBSCRIBE && res.IsSuccess():
		sub.timer.Reset(subscriptionLimit(res, time.Hour))
	}
	_ = tx.Respond(ok)
	return true
}

// terminated: a NOTIFY that ends its subscription.
func terminated(req *sip.Request) bool {
	h := req.GetHeader("Subscription-State")
	return req.Method == sip.NOTIFY && h != nil && len(h.Value()) >= 10 && h.Value()[:10] == "terminated"
}

// copyBody copies a request's body and its type.
func copyBody(out, in *sip.Request) {
	if len(in.Body()) == 0 {
		return
	}
	out.SetBody(in.Body())
	if ct := contentType(in); ct != "" {
		h := sip.ContentTypeHeader(ct)
		out.AppendHeader(&h)
	}
}
