package sbc

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/psigate/psigate/sbc/sbctest"
)

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startService runs an SBC on loopback with the given node group: access
// realm on UDP, core realm on TCP.
func startService(t *testing.T, nodes []Node, interval, threshold int, records ...RecordStore) (s *Service, addr string, stop func()) {
	t.Helper()
	cfg := Default()
	cfg.SIPServer.NodeGroups = []NodeGroup{{Name: "OS4K", Nodes: nodes}}
	cfg.SIPServer.Keepalive = Keepalive{IntervalSeconds: interval, FailureThreshold: threshold}
	cfg.RemoteSubscribers.MinIntervalSeconds = 60
	lo := netip.MustParseAddr("127.0.0.1")
	accessPort, corePort := freeUDPPort(t), freeTCPPort(t)
	var rs RecordStore
	if len(records) > 0 {
		rs = records[0]
	}
	s = NewService(slog.New(slog.NewTextHandler(io.Discard, nil)), rs, nil)
	err := s.Apply(context.Background(), Desired{Config: cfg, Realms: []Realm{
		{Name: "access", Role: "access", Bind: lo, Advertise: "127.0.0.1", UDP: accessPort},
		{Name: "core", Role: "core", Bind: lo, Advertise: "127.0.0.1", TCP: corePort},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return s, "127.0.0.1:" + strconv.Itoa(accessPort), stop
}

// register registers user 1001 through the SBC with digest auth and
// returns the final status.
func register(t *testing.T, sbc string, callID string) int {
	t.Helper()
	ua, _ := sipgo.NewUA(sipgo.WithUserAgent("ZoomPbxPhone"), sbctest.NoDNS())
	defer ua.Close()
	c, _ := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "psigate.test"})
	req.SetDestination(sbc)
	req.SetTransport("UDP")
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "1001", Host: "psigate.test"}, Params: sip.HeaderParams{{K: "tag", V: callID}}})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "1001", Host: "psigate.test"}})
	cid := sip.CallIDHeader(callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.REGISTER})
	req.AppendHeader(sip.NewHeader("Contact", "<sip:1001@192.0.2.7:5062>;expires=300"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Do(ctx, req)
	if err != nil {
		t.Fatalf("REGISTER: %v", err)
	}
	if res.StatusCode == 401 {
		if res, err = c.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: "1001", Password: "pw-1001"}); err != nil {
			t.Fatalf("REGISTER with credentials: %v", err)
		}
	}
	return res.StatusCode
}

// waitNode polls until the named node's state is up (or down).
func waitNode(t *testing.T, s *Service, name string, up bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, st := range s.Nodes() {
			if st.Name == name && st.Up == up {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("node %s never became up=%v: %+v", name, up, s.Nodes())
}

// TestFailoverBetweenKamailioNodes: two Kamailio nodes of one group; the
// primary stops, registrations move to the secondary once the keepalive
// marks it down, and come back when it answers again; with both down
// clients get 503 with Retry-After.
func TestFailoverBetweenKamailioNodes(t *testing.T) {
	users := map[string]string{"1001": "pw-1001"}
	primary := sbctest.StartKamailio(t, sbctest.KamailioOptions{Users: users})
	secondary := sbctest.StartKamailio(t, sbctest.KamailioOptions{Users: users, Listen: netip.MustParseAddr("127.0.0.3")})
	s, sbcAddr, _ := startService(t, []Node{
		{Name: "primary", Priority: 1, Address: "127.0.0.1", Transport: TransportTCP, Port: int(primary.Addr.Port())},
		{Name: "secondary", Priority: 2, Address: "127.0.0.3", Transport: TransportTCP, Port: int(secondary.Addr.Port())},
	}, 1, 2)

	if code := register(t, sbcAddr, "reg-1"); code != 200 {
		t.Fatalf("REGISTER: %d", code)
	}
	if len(primary.Locations(t)) != 1 || len(secondary.Locations(t)) != 0 {
		t.Fatal("the first registration did not go to the primary")
	}

	primary.Stop()
	waitNode(t, s, "primary", false)
	if code := register(t, sbcAddr, "reg-2"); code != 200 {
		t.Fatalf("REGISTER during failover: %d", code)
	}
	if len(secondary.Locations(t)) != 1 {
		t.Fatal("the registration did not move to the secondary")
	}

	primary.Start(t)
	waitNode(t, s, "primary", true)
	if code := register(t, sbcAddr, "reg-3"); code != 200 {
		t.Fatalf("REGISTER after failback: %d", code)
	}
	if len(primary.Locations(t)) != 1 {
		t.Fatal("the registration did not come back to the primary")
	}

	primary.Stop()
	secondary.Stop()
	waitNode(t, s, "primary", false)
	waitNode(t, s, "secondary", false)
	if code := register(t, sbcAddr, "reg-4"); code != 503 {
		t.Fatalf("all nodes down: %d, want 503", code)
	}
}

// memRecords is a RecordStore in memory.
type memRecords struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (r *memRecords) SaveRecords(kind string, put map[string][]byte, del []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, v := range put {
		r.m[k] = v
	}
	for _, k := range del {
		delete(r.m, k)
	}
	return nil
}

func (r *memRecords) LoadRecords(kind string) (map[string][]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.m), nil
}

// TestBindingsSurviveRestart: the SBC restarts; its bindings come back
// from the record store, and the PBX still has the registration.
func TestBindingsSurviveRestart(t *testing.T) {
	k := sbctest.StartKamailio(t, sbctest.KamailioOptions{Users: map[string]string{"1001": "pw-1001"}})
	records := &memRecords{m: map[string][]byte{}}
	nodes := []Node{{Name: "pbx", Priority: 1, Address: "127.0.0.1", Transport: TransportTCP, Port: int(k.Addr.Port())}}
	s, sbcAddr, stop := startService(t, nodes, 30, 3, records)
	if code := register(t, sbcAddr, "reg-restart"); code != 200 {
		t.Fatalf("REGISTER: %d", code)
	}
	before := s.Bindings()
	stop() // the appliance stops: the last changes are saved
	if len(records.m) != 1 {
		t.Fatalf("%d bindings saved, want 1", len(records.m))
	}
	s2, _, _ := startService(t, nodes, 30, 3, records)
	waitFor(t, func() bool { return len(s2.Bindings()) == 1 })
	after := s2.Bindings()[0]
	if after.Token != before[0].Token || after.AOR != before[0].AOR || after.Flow != before[0].Flow {
		t.Errorf("restored %+v, want %+v", after, before[0])
	}
	if len(k.Locations(t)) != 1 {
		t.Error("the PBX lost the registration")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOversizedMessagesDropped: a REGISTER larger than
// dos.maxMessageBytes is not handled (over TCP the connection closes);
// the SBC still answers.
func TestOversizedMessagesDropped(t *testing.T) {
	cfg := Default()
	cfg.Security.DoS.MaxMessageBytes = 4096
	lo := netip.MustParseAddr("127.0.0.1")
	tcpPort := freeTCPPort(t)
	s := NewService(slog.New(slog.NewTextHandler(io.Discard, nil)), nil, nil)
	if err := s.Apply(context.Background(), Desired{Config: cfg, Realms: []Realm{
		{Name: "access", Role: "access", Bind: lo, Advertise: "127.0.0.1", TCP: tcpPort},
		{Name: "core", Role: "core", Bind: lo, Advertise: "127.0.0.1", TCP: freeTCPPort(t)},
	}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	msg := func(method, extra string) string {
		return method + " sip:psigate.test SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-" + method + strconv.Itoa(len(extra)) + "\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:1001@psigate.test>;tag=a\r\nTo: <sip:1001@psigate.test>\r\nCall-ID: big-" + strconv.Itoa(len(extra)) + "\r\n" +
			"CSeq: 1 " + method + "\r\nContact: <sip:1001@127.0.0.1:5099;transport=tcp>\r\n" + extra + "Content-Length: 0\r\n\r\n"
	}
	addr := "127.0.0.1:" + strconv.Itoa(tcpPort)
	big, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	big.Write([]byte(msg("REGISTER", "X-Padding: "+strings.Repeat("a", 8000)+"\r\n")))
	big.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := big.Read(make([]byte, 1024)); err == nil && n > 0 {
		t.Fatal("an oversized REGISTER was answered")
	}
	small, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	small.Write([]byte(msg("OPTIONS", "")))
	small.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, err := small.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "SIP/2.0 200") {
		t.Fatalf("OPTIONS after the oversized message: %q %v", buf[:n], err)
	}
	if len(s.Bindings()) != 0 {
		t.Fatal("the oversized REGISTER changed the bindings")
	}
}
