package sbctest_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/psigate/psigate/sbc/sbctest"
)

const clientUA = "sbctest-client/1"

// newClient is a sipgo client on loopback, closed when the test ends.
func newClient(t *testing.T) *sipgo.Client {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("sbctest"), sipgo.WithUserAgentHostname(sbctest.KamailioRealm), sbctest.NoDNS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	c, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newRegister is a REGISTER for user@psigate.test sent to k over
// transport, binding contact for expires seconds.
func newRegister(k *sbctest.Kamailio, transport, user, contact string, expires int) *sip.Request {
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: sbctest.KamailioRealm})
	req.SetDestination(k.Addr.String())
	req.SetTransport(strings.ToUpper(transport))
	aor := fmt.Sprintf("<sip:%s@%s>", user, sbctest.KamailioRealm)
	req.AppendHeader(sip.NewHeader("From", aor+";tag="+sip.GenerateTagN(10)))
	req.AppendHeader(sip.NewHeader("To", aor))
	req.AppendHeader(sip.NewHeader("Contact", "<"+contact+">"))
	req.AppendHeader(sip.NewHeader("Expires", fmt.Sprint(expires)))
	req.AppendHeader(sip.NewHeader("User-Agent", clientUA))
	return req
}

func newOptions(k *sbctest.Kamailio, transport string) *sip.Request {
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: k.Addr.Addr().String(), Port: int(k.Addr.Port())})
	req.SetTransport(strings.ToUpper(transport))
	return req
}

func do(t *testing.T, c *sipgo.Client, req *sip.Request) (*sip.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	return c.Do(ctx, req)
}

func mustDo(t *testing.T, c *sipgo.Client, req *sip.Request) *sip.Response {
	t.Helper()
	res, err := do(t, c, req)
	if err != nil {
		t.Fatalf("%s: %v", req.Method, err)
	}
	return res
}

func wantStatus(t *testing.T, what string, res *sip.Response, codes ...int) {
	t.Helper()
	for _, c := range codes {
		if res.StatusCode == c {
			return
		}
	}
	t.Fatalf("%s: got %d %s, want %v\n%s", what, res.StatusCode, res.Reason, codes, res)
}

func TestKamailioRegistrar(t *testing.T) {
	t0 := time.Now()
	k := sbctest.StartKamailio(t, sbctest.KamailioOptions{Users: map[string]string{
		"alice": "alice-secret",
		"bob":   "bob-secret",
	}})
	t.Logf("Kamailio ready on %s in %v", k.Addr, time.Since(t0))
	if !k.Addr.Addr().IsLoopback() || k.Addr.Port() == 0 {
		t.Fatalf("Addr = %s", k.Addr)
	}
	c := newClient(t)

	for _, tr := range []string{"udp", "tcp"} {
		res := mustDo(t, c, newOptions(k, tr))
		wantStatus(t, "OPTIONS over "+tr, res, 200)
	}

	// Unauthenticated: a challenge for our realm.
	const contact = "sip:alice@127.0.0.1:5099;transport=tcp"
	reg := newRegister(k, "tcp", "alice", contact, 300)
	res := mustDo(t, c, reg)
	wantStatus(t, "REGISTER without credentials", res, 401)
	www := res.GetHeader("WWW-Authenticate")
	if www == nil || !strings.Contains(www.Value(), `realm="psigate.test"`) {
		t.Fatalf("401 without WWW-Authenticate for realm psigate.test:\n%s", res)
	}

	// With the right password.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	res, err := c.DoDigestAuth(ctx, reg, res, sipgo.DigestAuth{Username: "alice", Password: "alice-secret"})
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "REGISTER with credentials", res, 200)
	if h := res.Contact(); h == nil || h.Address.String() != contact {
		t.Errorf("200 does not list the binding %s:\n%s", contact, res)
	}

	// The binding, as the location table has it.
	locs := k.Locations(t)
	if len(locs) != 1 {
		t.Fatalf("Locations() = %+v, want one binding", locs)
	}
	l := locs[0]
	t.Logf("location: %+v", l)
	if l.AOR != "alice" || l.Contact != contact || l.UserAgent != clientUA {
		t.Errorf("location %+v, want AOR alice, Contact %s, User-Agent %s", l, contact, clientUA)
	}
	if left := time.Until(l.Expires); left < 290*time.Second || left > 301*time.Second {
		t.Errorf("binding expires in %v, want about 300s", left)
	}
	if l.Socket != "tcp:"+k.Addr.String() || !strings.HasPrefix(l.Received, "sip:127.0.0.1:") || !strings.Contains(l.Received, "transport=tcp") {
		t.Errorf("location socket %q received %q, want the TCP socket %s and a TCP source", l.Socket, l.Received, k.Addr)
	}
	if l.CallID != reg.CallID().Value() || l.CSeq != int(reg.CSeq().SeqNo) {
		t.Errorf("location Call-ID %s CSeq %d, want those of the REGISTER (%s %d)", l.CallID, l.CSeq, reg.CallID().Value(), reg.CSeq().SeqNo)
	}

	// A wrong password is refused, an unknown user too.
	for _, u := range []struct{ user, pass string }{{"bob", "wrong"}, {"mallory", "x"}} {
		breg := newRegister(k, "tcp", u.user, "sip:"+u.user+"@127.0.0.1:5098;transport=tcp", 300)
		res := mustDo(t, c, breg)
		wantStatus(t, "REGISTER of "+u.user+" without credentials", res, 401)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		res, err := c.DoDigestAuth(ctx, breg, res, sipgo.DigestAuth{Username: u.user, Password: u.pass})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, "REGISTER of "+u.user+" with a wrong password", res, 403)
	}
	if locs := k.Locations(t); len(locs) != 1 {
		t.Errorf("after refused REGISTERs, Locations() = %+v, want alice's only", locs)
	}

	// What reached Kamailio: our OPTIONS and REGISTERs, not its probes.
	reqs := k.Requests(t)
	var methods []string
	for _, r := range reqs {
		t.Logf("request: %s", r)
		methods = append(methods, r.Method)
	}
	want := "OPTIONS OPTIONS REGISTER REGISTER REGISTER REGISTER REGISTER REGISTER"
	if got := strings.Join(methods, " "); got != want {
		t.Fatalf("Requests() methods %q, want %q", got, want)
	}
	var aliceRegs []sbctest.Request
	for _, r := range reqs {
		if r.CallID == reg.CallID().Value() {
			aliceRegs = append(aliceRegs, r)
		}
	}
	if len(aliceRegs) != 2 {
		t.Fatalf("alice's REGISTERs: %v, want 2", aliceRegs)
	}
	first, second := aliceRegs[0], aliceRegs[1]
	if first.Transport != "tcp" || !first.Source.Addr().IsLoopback() || first.Msg == nil {
		t.Errorf("first REGISTER: %+v", first)
	}
	if first.Msg.GetHeader("Authorization") != nil || second.Msg.GetHeader("Authorization") == nil {
		t.Errorf("want the first REGISTER without Authorization, the second with it:\n%s\n%s", first.Raw, second.Raw)
	}
	if second.CSeq != first.CSeq+1 {
		t.Errorf("CSeq %d then %d", first.CSeq, second.CSeq)
	}
	if h := second.Msg.GetHeader("User-Agent"); h == nil || h.Value() != clientUA {
		t.Errorf("User-Agent as received: %v", h)
	}
	if !strings.HasPrefix(second.Raw, "REGISTER sip:psigate.test SIP/2.0\r\n") || !strings.Contains(second.Raw, "\r\nContact: <"+contact+">\r\n") {
		t.Errorf("raw REGISTER:\n%s", second.Raw)
	}

	// Stopped: nothing answers. Stopping again does nothing.
	k.Stop()
	k.Stop()
	c2 := newClient(t)
	if res, err := do(t, c2, newOptions(k, "tcp")); err == nil {
		t.Fatalf("OPTIONS to a stopped Kamailio answered %d", res.StatusCode)
	}

	// Started again: same address, OPTIONS answered, bindings gone, the
	// request log goes on.
	t0 = time.Now()
	k.Start(t)
	t.Logf("Kamailio ready again in %v", time.Since(t0))
	c3 := newClient(t)
	for _, tr := range []string{"udp", "tcp"} {
		res := mustDo(t, c3, newOptions(k, tr))
		wantStatus(t, "OPTIONS over "+tr+" after Start", res, 200)
	}
	if locs := k.Locations(t); len(locs) != 0 {
		t.Errorf("after a restart Locations() = %+v, want none", locs)
	}
	if n := len(k.Requests(t)); n != len(reqs)+2 {
		t.Errorf("after a restart %d requests, want %d", n, len(reqs)+2)
	}

	// Registering works again, and Expires 0 removes the binding.
	reg = newRegister(k, "tcp", "alice", contact, 60)
	res = mustDo(t, c3, reg)
	wantStatus(t, "REGISTER after Start", res, 401)
	ctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	res, err = c3.DoDigestAuth(ctx, reg, res, sipgo.DigestAuth{Username: "alice", Password: "alice-secret"})
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "REGISTER after Start with credentials", res, 200)
	if locs := k.Locations(t); len(locs) != 1 || locs[0].AOR != "alice" {
		t.Fatalf("Locations() = %+v, want alice's", locs)
	}
	unreg := newRegister(k, "tcp", "alice", contact, 0)
	res = mustDo(t, c3, unreg)
	wantStatus(t, "un-REGISTER", res, 401)
	ctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	res, err = c3.DoDigestAuth(ctx, unreg, res, sipgo.DigestAuth{Username: "alice", Password: "alice-secret"})
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "un-REGISTER with credentials", res, 200)
	if locs := k.Locations(t); len(locs) != 0 {
		t.Errorf("after Expires: 0, Locations() = %+v, want none", locs)
	}
}

// Two nodes on the same port, on two loopback addresses, as a PBX pair.
func TestKamailioTwoNodes(t *testing.T) {
	users := map[string]string{"alice": "alice-secret"}
	a := sbctest.StartKamailio(t, sbctest.KamailioOptions{Users: users})
	b := sbctest.StartKamailio(t, sbctest.KamailioOptions{
		Users:  users,
		Listen: netip.MustParseAddr("127.0.0.3"),
		Port:   int(a.Addr.Port()),
	})
	if b.Addr != netip.AddrPortFrom(netip.MustParseAddr("127.0.0.3"), a.Addr.Port()) {
		t.Fatalf("second node on %s", b.Addr)
	}
	c := newClient(t)
	for _, k := range []*sbctest.Kamailio{a, b} {
		res := mustDo(t, c, newOptions(k, "tcp"))
		wantStatus(t, "OPTIONS to "+k.Addr.String(), res, 200)
	}
	// Each node logs only what it received.
	if n, m := len(a.Requests(t)), len(b.Requests(t)); n != 1 || m != 1 {
		t.Errorf("requests logged: %d and %d, want 1 each", n, m)
	}
	a.Stop()
	res := mustDo(t, c, newOptions(b, "udp"))
	wantStatus(t, "OPTIONS to the second node with the first stopped", res, 200)
}

// phone is a SIP phone on a loopback UDP socket: it calls through
// Kamailio, and answers (180 then 200) or rings until cancelled.
type phone struct {
	user      string
	addr      netip.AddrPort
	cl        *sipgo.Client
	calls     *sipgo.DialogClientCache
	ring      atomic.Bool // ring until cancelled instead of answering
	got       chan *sip.Request
	cancelled chan struct{}
}

func newPhone(t *testing.T, user string, host netip.Addr) *phone {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("sbctest-phone"), sipgo.WithUserAgentHostname(host.String()), sbctest.NoDNS())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(host, 0)))
	if err != nil {
		t.Fatal(err)
	}
	addr := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	// Requests go out from the socket the phone listens on: Kamailio
	// knows a trusted gateway by its source address.
	cl, err := sipgo.NewClient(ua, sipgo.WithClientAddr(addr.String()), sipgo.WithClientConnectionAddr(addr.String()))
	if err != nil {
		t.Fatal(err)
	}
	contact := sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: host.String(), Port: int(addr.Port())}}
	p := &phone{user: user, addr: addr, cl: cl, calls: sipgo.NewDialogClientCache(cl, contact),
		got: make(chan *sip.Request, 100), cancelled: make(chan struct{}, 10)}
	answers := sipgo.NewDialogServerCache(cl, contact)
	record := func(req *sip.Request) {
		select {
		case p.got <- req.Clone():
		default:
		}
	}
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		record(req)
		ds, err := answers.ReadInvite(req, tx)
		if err != nil {
			return
		}
		_ = ds.Respond(180, "Ringing", nil)
		if p.ring.Load() {
			tx.OnCancel(func(*sip.Request) { p.cancelled <- struct{}{} })
			<-tx.Done()
			return
		}
		_ = ds.RespondSDP([]byte("v=0\r\no=- 1 1 IN IP4 " + host.String() + "\r\ns=-\r\nc=IN IP4 " + host.String() + "\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"))
	})
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { record(req); _ = answers.ReadAck(req, tx) })
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		record(req)
		if answers.ReadBye(req, tx) != nil {
			_ = p.calls.ReadBye(req, tx)
		}
	})
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.ServeUDP(conn) }()
	t.Cleanup(func() { conn.Close(); <-served; ua.Close() })
	// The client sends from the socket once the server has it.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if _, err := ua.TransportLayer().GetConnection("udp", addr.String()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the phone's socket %s is not served after 5s", addr)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	return p
}

// register binds the phone's socket as its user's contact at k.
func (p *phone) register(t *testing.T, k *sbctest.Kamailio, pass string) {
	t.Helper()
	reg := newRegister(k, "udp", p.user, fmt.Sprintf("sip:%s@%s", p.user, p.addr), 300)
	res := mustDo(t, p.cl, reg)
	wantStatus(t, "REGISTER of "+p.user, res, 401)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	res, err := p.cl.DoDigestAuth(ctx, reg, res, sipgo.DigestAuth{Username: p.user, Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "REGISTER of "+p.user+" with credentials", res, 200)
}

// invite is an INVITE from the phone to user@psigate.test, sent to k: its
// Request-URI names k, so a CANCEL (which follows the Request-URI) goes
// there too.
func (p *phone) invite(k *sbctest.Kamailio, user string) *sip.Request {
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: user, Host: k.Addr.Addr().String(), Port: int(k.Addr.Port())})
	req.SetDestination(k.Addr.String())
	req.SetTransport("UDP")
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: p.user, Host: sbctest.KamailioRealm}, Params: sip.HeaderParams{{K: "tag", V: sip.GenerateTagN(10)}}})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: sbctest.KamailioRealm}})
	ct := sip.ContentTypeHeader("application/sdp")
	req.AppendHeader(&ct)
	req.SetBody([]byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"))
	return req
}

// next is the next request the phone received, of the given method.
func (p *phone) next(t *testing.T, method sip.RequestMethod) *sip.Request {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case req := <-p.got:
			if req.Method == method {
				return req
			}
		case <-timeout:
			t.Fatalf("%s got no %s within 5s", p.user, method)
			return nil
		}
	}
}

// finalStatus sends req as a plain transaction, answers a challenge with
// the credentials given, and returns the final status.
func (p *phone) finalStatus(t *testing.T, req *sip.Request, user, pass string) int {
	t.Helper()
	res := mustDo(t, p.cl, req)
	if res.StatusCode == 407 && pass != "" {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		var err error
		if res, err = p.cl.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: user, Password: pass}); err != nil {
			t.Fatal(err)
		}
	}
	return res.StatusCode
}

// With Calls, Kamailio connects its users: a phone's INVITE is challenged,
// then record-routed to the callee's binding; ACK and BYE follow the
// Route set; unknown and unregistered callees get 404 and 480; a trusted
// gateway's INVITE goes through unchallenged, and its CANCEL reaches the
// callee.
func TestKamailioCalls(t *testing.T) {
	gwAddr := netip.MustParseAddr("127.0.0.9")
	k := sbctest.StartKamailio(t, sbctest.KamailioOptions{
		Users:   map[string]string{"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"},
		Calls:   true,
		Trusted: []netip.Addr{gwAddr},
	})
	lo := netip.MustParseAddr("127.0.0.1")
	alice, bob := newPhone(t, "alice", lo), newPhone(t, "bob", lo)
	alice.register(t, k, "alice-secret")
	bob.register(t, k, "bob-secret")

	// alice calls bob, authenticating when challenged.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	dc, err := alice.calls.WriteInvite(ctx, alice.invite(k, "bob"))
	if err != nil {
		t.Fatal(err)
	}
	if err := dc.WaitAnswer(ctx, sipgo.AnswerOptions{Username: "alice", Password: "alice-secret"}); err != nil {
		t.Fatalf("alice's call to bob: %v", err)
	}
	inv := bob.next(t, sip.INVITE)
	rr := inv.GetHeader("Record-Route")
	if rr == nil || !strings.Contains(rr.Value(), k.Addr.String()) || !strings.Contains(rr.Value(), ";lr") {
		t.Errorf("bob's INVITE has Record-Route %v, want Kamailio's %s with lr:\n%s", rr, k.Addr, inv)
	}
	if inv.Recipient.Host != lo.String() || inv.Recipient.Port != int(bob.addr.Port()) || inv.GetHeader("Proxy-Authorization") != nil {
		t.Errorf("bob's INVITE, want it sent to his contact and without alice's credentials:\n%s", inv)
	}
	if err := dc.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	bob.next(t, sip.ACK)
	if err := dc.Bye(ctx); err != nil {
		t.Fatalf("BYE: %v", err)
	}
	bob.next(t, sip.BYE)
	// The INVITE was challenged once; the ACK of the 200 and the BYE came
	// along the Route set.
	var methods []string
	for _, r := range k.Requests(t) {
		if r.CallID != inv.CallID().Value() {
			continue
		}
		m := r.Method
		switch {
		case m == "ACK" && r.Msg.GetHeader("Route") == nil:
			continue // of the 407, hop by hop: whether it comes is up to the client
		case r.Msg.GetHeader("Proxy-Authorization") != nil:
			m += "+auth"
		case r.Msg.GetHeader("Route") != nil:
			m += "+route"
		}
		methods = append(methods, m)
	}
	if got, want := strings.Join(methods, " "), "INVITE INVITE+auth ACK+route BYE+route"; got != want {
		t.Errorf("Kamailio got %q for the call, want %q", got, want)
	}

	// Callees that are not there; a caller claiming another's name.
	if code := alice.finalStatus(t, alice.invite(k, "nobody"), "alice", "alice-secret"); code != 404 {
		t.Errorf("call to an unknown user: %d, want 404", code)
	}
	if code := alice.finalStatus(t, alice.invite(k, "carol"), "alice", "alice-secret"); code != 480 {
		t.Errorf("call to a user without binding: %d, want 480", code)
	}
	spoof := alice.invite(k, "bob")
	spoof.From().Address.User = "carol"
	if code := alice.finalStatus(t, spoof, "alice", "alice-secret"); code != 403 {
		t.Errorf("call from alice as carol: %d, want 403", code)
	}
	if code := alice.finalStatus(t, alice.invite(k, "bob"), "alice", "wrong"); code != 403 {
		t.Errorf("call with a wrong password: %d, want 403", code)
	}

	// A trusted gateway: no challenge; its CANCEL reaches the ringing bob.
	gw := newPhone(t, "gateway", gwAddr)
	bob.ring.Store(true)
	ring, hangUp := context.WithCancel(ctx)
	gc, err := gw.calls.WriteInvite(ctx, gw.invite(k, "bob"))
	if err != nil {
		t.Fatal(err)
	}
	err = gc.WaitAnswer(ring, sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
		if res.StatusCode == 180 {
			hangUp()
		}
		return nil
	}})
	if err == nil {
		t.Fatal("the gateway's cancelled call was answered")
	}
	select {
	case <-bob.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("bob's INVITE from the gateway was not cancelled")
	}
	var gwReqs []string
	for _, r := range k.Requests(t) {
		// The ACK of the 487 is the client transaction's, in its time.
		if r.Source.Addr() == gwAddr && r.Method != "ACK" {
			gwReqs = append(gwReqs, r.Method)
		}
	}
	if got := strings.Join(gwReqs, " "); got != "INVITE CANCEL" {
		t.Errorf("Kamailio got %q (but ACKs) from the gateway, want INVITE CANCEL (no challenge)", got)
	}
}
