package sbctest_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
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
