package registrar

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/psigate/psigate/sbc/sbctest"
	"github.com/psigate/psigate/sbc/signal"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// pbx is a registrar stand-in: it challenges REGISTERs without
// Authorization and accepts the others, listing one more contact of the
// AOR (a desk phone) that must not reach the client.
type pbx struct {
	addr  string
	trust bool // accept without credentials (a PBX that trusts the SBC)
	mu    sync.Mutex
	reqs  []*sip.Request
	max   int // expiry it grants at most, seconds
}

func startPBX(t *testing.T) *pbx {
	t.Helper()
	ua, _ := sipgo.NewUA(sbctest.NoDNS())
	srv, _ := sipgo.NewServer(ua)
	p := &pbx{max: 600}
	srv.OnRegister(func(req *sip.Request, tx sip.ServerTransaction) {
		p.mu.Lock()
		p.reqs = append(p.reqs, req.Clone())
		p.mu.Unlock()
		p.mu.Lock()
		trust := p.trust
		p.mu.Unlock()
		if req.GetHeader("Authorization") == nil && !trust {
			res := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
			res.AppendHeader(sip.NewHeader("WWW-Authenticate", `Digest realm="psigate.test", nonce="abc123", algorithm=MD5`))
			tx.Respond(res)
			return
		}
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		c := req.Contact()
		exp, ok := c.Params.Get("expires")
		if !ok {
			exp = req.GetHeader("Expires").Value()
		}
		granted := exp
		if n := atoi(exp); n > p.max {
			granted = itoa(p.max)
		}
		cc := c.Clone()
		cc.Params.Remove("expires")
		cc.Params.Add("expires", granted)
		res.AppendHeader(cc)
		res.AppendHeader(sip.NewHeader("Contact", "<sip:deskphone@10.0.0.5:5060>;expires=100"))
		tx.Respond(res)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTCP(ln)
	t.Cleanup(func() { ln.Close(); ua.Close() })
	p.addr = ln.Addr().String()
	return p
}

func (p *pbx) requests() []*sip.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*sip.Request(nil), p.reqs...)
}

type staticRouter struct{ target Target }

func (s staticRouter) Route(string, string) (Target, error) { return s.target, nil }

// sbc is an access and a core realm on loopback with the relay.
func startSBC(t *testing.T, pbxAddr string, limits Limits, now ...func() time.Time) (*Relay, string) {
	t.Helper()
	relay := &Relay{Bindings: NewBindings(), Limits: limits, Log: quiet, AccessRealm: "access", CoreRealm: "core",
		Router: staticRouter{Target{Node: "node1", Addr: pbxAddr, Transport: "TCP"}}}
	if len(now) > 0 {
		relay.Now = now[0] // set before any listener runs
	}
	st := signal.New(quiet, func(r *signal.Realm) {
		if r.Name == "access" {
			r.Server.OnRegister(relay.HandleRegister)
		}
	})
	relay.Realms = st
	lo := netip.MustParseAddr("127.0.0.1")
	err := st.Apply(context.Background(), []signal.RealmSpec{
		{Name: "access", Advertise: "127.0.0.1", Listeners: []signal.Listener{{Transport: signal.UDP, Addr: netip.AddrPortFrom(lo, 0)}}},
		{Name: "core", Advertise: "127.0.0.1", Listeners: []signal.Listener{{Transport: signal.TCP, Addr: netip.AddrPortFrom(lo, 0)}},
			MayDial: func(ap netip.AddrPort) bool { return ap.Addr().IsLoopback() }},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return relay, "127.0.0.1:" + itoa(st.Realm("access").Port(signal.UDP))
}

// phone is a Zoom-like client on UDP.
type phone struct {
	t      *testing.T
	client *sipgo.Client
	sbc    string
	callID string
	cseq   uint32
}

func newPhone(t *testing.T, sbc string) *phone {
	ua, _ := sipgo.NewUA(sipgo.WithUserAgent("ZoomPbxPhone 6.0"), sbctest.NoDNS())
	t.Cleanup(func() { ua.Close() })
	c, _ := sipgo.NewClient(ua, sipgo.WithClientHostname("192.168.1.23"))
	return &phone{t: t, client: c, sbc: sbc, callID: "client-call-1@192.168.1.23"}
}

func (p *phone) register(expires string, auth bool, extra ...sip.Header) *sip.Response {
	p.t.Helper()
	req := p.newRegister(expires)
	if auth {
		req.AppendHeader(sip.NewHeader("Authorization", `Digest username="1001", realm="psigate.test", nonce="abc123", uri="sip:pbx.example.com", response="0123456789abcdef0123456789abcdef"`))
	}
	for _, h := range extra {
		req.AppendHeader(h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := p.client.Do(ctx, req)
	if err != nil {
		p.t.Fatalf("REGISTER: %v", err)
	}
	return res
}

func sipgoAuth(user, password string) sipgo.DigestAuth {
	return sipgo.DigestAuth{Username: user, Password: password}
}

// newRegister builds the phone's next REGISTER.
func (p *phone) newRegister(expires string) *sip.Request {
	p.cseq++
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "pbx.example.com"})
	req.SetDestination(p.sbc)
	req.SetTransport("UDP")
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "1001", Host: "pbx.example.com"}, Params: sip.HeaderParams{{K: "tag", V: "ftag"}}})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "1001", Host: "pbx.example.com"}, Params: sip.HeaderParams{}})
	cid := sip.CallIDHeader(p.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: p.cseq, MethodName: sip.REGISTER})
	req.AppendHeader(sip.NewHeader("Contact", `<sip:1001@192.168.1.23:5062;transport=udp>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";expires=`+expires))
	req.AppendHeader(sip.NewHeader("User-Agent", "ZoomPbxPhone 6.0"))
	return req
}

func TestRegisterRelayedWithChallengeAndTopologyHiding(t *testing.T) {
	pb := startPBX(t)
	relay, sbcAddr := startSBC(t, pb.addr, Limits{MaxExpiry: 2678400 * time.Second, MinInterval: 300 * time.Second})
	ph := newPhone(t, sbcAddr)

	res := ph.register("3600", false)
	if res.StatusCode != 401 {
		t.Fatalf("first REGISTER: %d, want the PBX's 401", res.StatusCode)
	}
	if h := res.GetHeader("WWW-Authenticate"); h == nil || !strings.Contains(h.Value(), `nonce="abc123"`) {
		t.Fatalf("challenge not passed through: %v", h)
	}
	res = ph.register("3600", true)
	if res.StatusCode != 200 {
		t.Fatalf("authenticated REGISTER: %d", res.StatusCode)
	}
	contacts := res.GetHeaders("Contact")
	if len(contacts) != 1 || !strings.Contains(contacts[0].Value(), "sip:1001@192.168.1.23:5062") || !strings.Contains(contacts[0].Value(), "expires=600") {
		t.Fatalf("contacts to the client %v: want only its own, expires=600 as the PBX granted", contacts)
	}
	for _, leak := range []string{"10.0.0.5", "deskphone", pb.addr} {
		if strings.Contains(res.String(), leak) {
			t.Errorf("the client's 200 contains %q from the core side:\n%s", leak, res)
		}
	}

	reqs := pb.requests()
	if len(reqs) != 2 {
		t.Fatalf("the PBX got %d REGISTERs, want 2", len(reqs))
	}
	last := reqs[1]
	for _, leak := range []string{"192.168.1.23", ph.callID, sbcAddr} {
		if strings.Contains(last.String(), leak) {
			t.Errorf("the PBX's REGISTER contains %q from the access side:\n%s", leak, last)
		}
	}
	if last.Recipient.Host != "pbx.example.com" || last.From().Address.User != "1001" || last.GetHeader("Authorization") == nil {
		t.Errorf("R-URI, From or credentials changed:\n%s", last)
	}
	if last.GetHeader("User-Agent") == nil || last.GetHeader("User-Agent").Value() != "ZoomPbxPhone 6.0" {
		t.Errorf("User-Agent not relayed: %v", last.GetHeader("User-Agent"))
	}
	if reqs[0].CallID().Value() != last.CallID().Value() || reqs[1].CSeq().SeqNo != reqs[0].CSeq().SeqNo+1 {
		t.Errorf("the PBX registration is not one dialog: call-ids %s/%s cseq %d/%d", reqs[0].CallID(), last.CallID(), reqs[0].CSeq().SeqNo, last.CSeq().SeqNo)
	}
	c := last.Contact()
	bs := relay.Bindings.List()
	if len(bs) != 1 {
		t.Fatalf("%d bindings", len(bs))
	}
	b := bs[0]
	if c.Address.User != b.Token || c.Address.Port != relay.Realms.Realm("core").Port(signal.TCP) {
		t.Errorf("PBX contact %s, want the token %s at the core realm's TCP port", c.Value(), b.Token)
	}
	if b.AOR != "sip:1001@pbx.example.com" || b.Flow.Transport != "UDP" || b.UserAgent != "ZoomPbxPhone 6.0" || b.Node != "node1" ||
		b.InstanceID == "" || b.ClientCallID != ph.callID || time.Until(b.Expires) > 601*time.Second {
		t.Errorf("binding %+v", b)
	}

	// De-registration is relayed and removes the binding.
	res = ph.register("0", true)
	if res.StatusCode != 200 || len(relay.Bindings.List()) != 0 {
		t.Fatalf("de-registration: %d, %d bindings left", res.StatusCode, len(relay.Bindings.List()))
	}
	if got := pb.requests(); got[len(got)-1].CallID().Value() != last.CallID().Value() {
		t.Error("de-registration used another Call-ID at the PBX")
	}
}

func TestRegisterRefusals(t *testing.T) {
	pb := startPBX(t)
	_, sbcAddr := startSBC(t, pb.addr, Limits{MaxExpiry: 3600 * time.Second, MinInterval: 300 * time.Second})
	ph := newPhone(t, sbcAddr)
	res := ph.register("60", true)
	if res.StatusCode != 423 || res.GetHeader("Min-Expires") == nil || res.GetHeader("Min-Expires").Value() != "300" {
		t.Fatalf("too brief: %d %v", res.StatusCode, res.GetHeader("Min-Expires"))
	}
	res = ph.register("abc", true)
	if res.StatusCode != 400 {
		t.Fatalf("bad expires: %d", res.StatusCode)
	}
	if n := len(pb.requests()); n != 0 {
		t.Fatalf("refused REGISTERs reached the PBX: %d", n)
	}
	res = ph.register("7200", true)
	if res.StatusCode != 200 {
		t.Fatal(res.StatusCode)
	}
	if got, _ := pb.requests()[0].Contact().Params.Get("expires"); got != "3600" {
		t.Errorf("asked the PBX for %s s, want the maximum 3600", got)
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestRegisterThrottling: the client is given 60 s while the PBX is
// registered for the threshold (600 s here); refreshes on the same flow and
// Call-ID are answered by the SBC until the PBX registration needs
// renewing; a new Call-ID always goes to the PBX.
func TestRegisterThrottling(t *testing.T) {
	pb := startPBX(t)
	pb.max = 3600
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	relay, sbcAddr := startSBC(t, pb.addr, Limits{MaxExpiry: 2678400 * time.Second, MinInterval: 60 * time.Second,
		ThrottleUDP: 60 * time.Second, ThrottleStream: 60 * time.Second, MaxThreshold: 600 * time.Second}, clk.now)
	ph := newPhone(t, sbcAddr)

	res := ph.register("3600", true)
	if res.StatusCode != 200 || !strings.Contains(res.GetHeader("Contact").Value(), "expires=60") {
		t.Fatalf("first REGISTER: %d %v, want 200 with expires=60", res.StatusCode, res.GetHeader("Contact"))
	}
	if got, _ := pb.requests()[0].Contact().Params.Get("expires"); got != "600" {
		t.Fatalf("the PBX was asked for %s s, want the 600 s threshold", got)
	}
	// Refreshes every 55 s: the PBX sees one in each 600 s, the client
	// always gets 60 s.
	relayed := 0
	for i := 0; i < 20; i++ {
		clk.add(55 * time.Second)
		before := len(pb.requests())
		res := ph.register("3600", true)
		if res.StatusCode != 200 || !strings.Contains(res.GetHeader("Contact").Value(), "expires=60") {
			t.Fatalf("refresh %d: %d %v", i, res.StatusCode, res.GetHeader("Contact"))
		}
		if len(pb.requests()) > before {
			relayed++
		}
	}
	// 20 refreshes over 1100 s: the PBX registration (600 s) is renewed
	// when less than two client intervals are left, about every 480 s.
	if relayed < 2 || relayed > 3 {
		t.Errorf("%d of 20 refreshes reached the PBX, want 2 or 3", relayed)
	}
	b := relay.Bindings.List()[0]
	if d := b.PBXExpires.Sub(clk.now()); d < 120*time.Second {
		t.Errorf("the PBX registration ends in %s: it would lapse", d)
	}

	// A new Call-ID (the client restarted) is relayed.
	before := len(pb.requests())
	ph.callID = "restarted@192.168.1.23"
	clk.add(10 * time.Second)
	if res := ph.register("3600", true); res.StatusCode != 200 || len(pb.requests()) != before+1 {
		t.Fatalf("new Call-ID: %d, PBX requests %d -> %d, want relayed", res.StatusCode, before, len(pb.requests()))
	}
}

// TestDeregisterAtPBX: when a client's binding ends, psigate ends its own
// registration at the PBX in the same registration (Call-ID, next CSeq);
// a PBX that challenges it gets no credentials.
func TestDeregisterAtPBX(t *testing.T) {
	pb := startPBX(t)
	relay, sbcAddr := startSBC(t, pb.addr, Limits{MaxExpiry: 3600 * time.Second, MinInterval: 60 * time.Second})
	ph := newPhone(t, sbcAddr)
	if res := ph.register("300", true); res.StatusCode != 200 {
		t.Fatal(res.StatusCode)
	}
	b := relay.Bindings.List()[0]
	if err := relay.Deregister(b); !errors.Is(err, ErrChallenged) {
		t.Fatalf("de-registration at a challenging PBX: %v, want ErrChallenged", err)
	}
	pb.mu.Lock()
	pb.trust = true
	pb.mu.Unlock()
	if err := relay.Deregister(b); err != nil {
		t.Fatalf("de-registration at a trusting PBX: %v", err)
	}
	reqs := pb.requests()
	last := reqs[len(reqs)-1]
	if last.CallID().Value() != b.PBXCallID || last.CSeq().SeqNo != b.PBXCSeq+1 || last.GetHeader("Expires").Value() != "0" || last.Contact().Address.User != b.Token {
		t.Errorf("de-registration %s", last)
	}
	if strings.Contains(last.String(), "192.168.1.23") {
		t.Errorf("the de-registration leaks the client: %s", last)
	}
}
