package sbc

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/psigate/psigate/sbc/b2bua"
	"github.com/psigate/psigate/sbc/media/sdes"
	"github.com/psigate/psigate/sbc/sbctest"
)

// pbxPhone is a PBX extension stand-in: it rings, answers with plain RTP
// on its own socket, and records what reached it.
type pbxPhone struct {
	addr string
	busy bool // answer 486
	// ringing rings until cancelled; each CANCELled INVITE is reported.
	ringing   bool
	cancelled chan struct{}
	hangup    bool // hang up right after the ACK
	rtp       *net.UDPConn
	mu        sync.Mutex
	reqs      []*sip.Request
	byes      chan struct{}
	// calls makes the PBX's own calls (to subscribers).
	calls *sipgo.DialogClientCache
	// answerHeaders go into its 200 to an INVITE.
	answerHeaders []sip.Header
	// holdReinvite keeps a re-INVITE unanswered until it is closed.
	holdReinvite chan struct{}
	// inDialog hears every request inside a dialog but BYE and ACK.
	inDialog chan *sip.Request
	cl       *sipgo.Client
	// reliable: answer an INVITE that supports 100rel with a reliable
	// 183 first, and the 200 only after its PRACK.
	reliable bool
	pracks   chan *sip.Request
	// ringFor makes the extension ring longer before it answers.
	ringFor time.Duration
}

func startPBXPhone(t *testing.T) *pbxPhone {
	t.Helper()
	ua, _ := sipgo.NewUA(sipgo.WithUserAgent("OpenScape 4000"), sbctest.NoDNS())
	srv, _ := sipgo.NewServer(ua)
	cl, _ := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rtpConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &pbxPhone{cl: cl, addr: ln.Addr().String(), rtp: rtpConn, byes: make(chan struct{}, 1), cancelled: make(chan struct{}, 1), inDialog: make(chan *sip.Request, 16), pracks: make(chan *sip.Request, 4)}
	port, _ := strconv.Atoi(strings.Split(p.addr, ":")[1])
	cache := sipgo.NewDialogServerCache(cl, sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: port, UriParams: sip.HeaderParams{{K: "transport", V: "tcp"}}}})
	record := func(req *sip.Request) {
		p.mu.Lock()
		p.reqs = append(p.reqs, req.Clone())
		p.mu.Unlock()
	}
	contact := sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: port, UriParams: sip.HeaderParams{{K: "transport", V: "tcp"}}}}
	// inDialog answers a request inside a dialog: 200, with an SDP
	// answer (or offer) for a re-INVITE or UPDATE.
	inDialog := func(req *sip.Request, tx sip.ServerTransaction) {
		record(req)
		if req.To().Params.Has("tag") {
			p.inDialog <- req.Clone()
		}
		if req.IsInvite() && p.holdReinvite != nil {
			<-p.holdReinvite
		}
		var body []byte
		if req.IsInvite() || req.Method == sip.UPDATE {
			body = pbxAnswer(req.Body(), rtpConn.LocalAddr().(*net.UDPAddr).Port)
		}
		code, reason := 200, "OK"
		if req.Method == sip.REFER {
			code, reason = 202, "Accepted"
		}
		res := sip.NewResponseFromRequest(req, code, reason, body)
		if len(body) > 0 {
			ct := sip.ContentTypeHeader("application/sdp")
			res.AppendHeader(&ct)
		}
		if req.IsInvite() || req.Method == sip.UPDATE {
			res.AppendHeader(contact.Clone())
		}
		tx.Respond(res)
	}
	for _, on := range []func(sipgo.RequestHandler){srv.OnUpdate, srv.OnInfo, srv.OnRefer, srv.OnNotify, srv.OnMessage, srv.OnOptions} {
		on(inDialog)
	}
	srv.OnPrack(func(req *sip.Request, tx sip.ServerTransaction) {
		record(req)
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		p.pracks <- req.Clone()
	})
	// A SUBSCRIBE makes a subscription dialog: a tag of the PBX's own.
	srv.OnSubscribe(func(req *sip.Request, tx sip.ServerTransaction) {
		record(req)
		if req.To().Params.Has("tag") {
			p.inDialog <- req.Clone()
		}
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		if !res.To().Params.Has("tag") {
			res.To().Params.Add("tag", "pbx-sub")
		}
		res.AppendHeader(contact.Clone())
		res.AppendHeader(sip.NewHeader("Expires", "600"))
		tx.Respond(res)
	})
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		if req.To().Params.Has("tag") {
			inDialog(req, tx)
			return
		}
		record(req)
		ds, err := cache.ReadInvite(req, tx)
		if err != nil {
			return
		}
		if p.reliable && strings.Contains(strings.Join(headerValues(req, "Supported"), ","), "100rel") {
			early := pbxAnswer(req.Body(), rtpConn.LocalAddr().(*net.UDPAddr).Port)
			ds.Respond(183, "Session Progress", early, sdpType(), sip.NewHeader("Require", "100rel"), sip.NewHeader("RSeq", "1"), contact.Clone())
			select {
			case <-p.pracks:
			case <-time.After(5 * time.Second):
				ds.Respond(504, "No PRACK", nil)
				return
			}
		}
		ds.Respond(180, "Ringing", nil)
		if p.ringing {
			tx.OnCancel(func(*sip.Request) { p.cancelled <- struct{}{} })
			<-tx.Done()
			return
		}
		time.Sleep(50*time.Millisecond + p.ringFor) // the extension rings before it answers
		if p.busy {
			ds.Respond(486, "Busy Here", nil)
			return
		}
		ds.Respond(200, "OK", pbxAnswer(req.Body(), rtpConn.LocalAddr().(*net.UDPAddr).Port), append([]sip.Header{sdpType()}, p.answerHeaders...)...)
		if p.hangup {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				for ds.LoadState() < sip.DialogStateConfirmed {
					time.Sleep(5 * time.Millisecond) // until the ACK
				}
				ds.Bye(ctx)
			}()
		}
	})
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { record(req); cache.ReadAck(req, tx) })
	srv.OnRegister(func(req *sip.Request, tx sip.ServerTransaction) {
		record(req)
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		res.AppendHeader(req.Contact().Clone())
		tx.Respond(res)
	})
	p.calls = sipgo.NewDialogClientCache(cl, sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "2002", Host: "127.0.0.1", Port: port, UriParams: sip.HeaderParams{{K: "transport", V: "tcp"}}}})
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		record(req)
		cache.ReadBye(req, tx)
		p.byes <- struct{}{}
	})
	go srv.ServeTCP(ln)
	t.Cleanup(func() { ln.Close(); rtpConn.Close(); ua.Close() })
	return p
}

// pbxAnswer accepts the first offered codec with plain RTP at port, in
// the direction that matches the offer's; without an offer it offers
// G.711.
func pbxAnswer(offer []byte, port int) []byte {
	head := "v=0\r\no=OS4K 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
	if len(offer) == 0 {
		return []byte(head + "m=audio " + strconv.Itoa(port) + " RTP/AVP 8 0\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")
	}
	if i := bytes.Index(offer, []byte("v=0")); bytes.HasPrefix(offer, []byte("--")) && i > 0 {
		offer = offer[i:] // a multipart body: its SDP part
		if j := bytes.Index(offer, []byte("\r\n--")); j > 0 {
			offer = offer[:j+2]
		}
	}
	var d sdp.SessionDescription
	if err := d.Unmarshal(offer); err != nil || len(d.MediaDescriptions) == 0 {
		return nil
	}
	m := d.MediaDescriptions[0]
	dir := "sendrecv"
	for _, a := range m.Attributes {
		switch a.Key {
		case "sendonly":
			dir = "recvonly"
		case "recvonly":
			dir = "sendonly"
		case "inactive":
			dir = "inactive"
		}
	}
	return []byte(head + "m=audio " + strconv.Itoa(port) + " RTP/AVP " + m.MediaName.Formats[0] + "\r\na=" + dir + "\r\n")
}

func sdpType() sip.Header {
	ct := sip.ContentTypeHeader("application/sdp")
	return &ct
}

func headerValues(m *sip.Request, name string) []string {
	var v []string
	for _, h := range m.GetHeaders(name) {
		v = append(v, h.Value())
	}
	return v
}

// invite is the first INVITE the PBX received.
func (p *pbxPhone) invite(t *testing.T) *sip.Request {
	t.Helper()
	for _, req := range p.requests() {
		if req.IsInvite() {
			return req
		}
	}
	t.Fatal("the PBX got no INVITE")
	return nil
}

func (p *pbxPhone) requests() []*sip.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*sip.Request(nil), p.reqs...)
}

// TestCallFromClientToPBX: a Zoom client calls a PBX extension through
// the SBC: ringing and the answer come back, SRTP from the client reaches
// the PBX as RTP, nothing of either side crosses, and the client's BYE
// ends the PBX's dialog too.
func TestCallFromClientToPBX(t *testing.T) {
	pbx := startPBXPhone(t)
	cfg := Default()
	cfg.Calls.OpenToUnregistered = true
	host, port, _ := net.SplitHostPort(pbx.addr)
	p, _ := strconv.Atoi(port)
	cfg.SIPServer.NodeGroups = []NodeGroup{{Name: "OS4K", Nodes: []Node{{Name: "n1", Priority: 1, Address: host, Transport: TransportTCP, Port: p}}}}
	lo := netip.MustParseAddr("127.0.0.1")
	accessPort := freeUDPPort(t)
	s := NewService(slog.New(slog.NewTextHandler(io.Discard, nil)), nil, nil)
	if err := s.Apply(context.Background(), Desired{Config: cfg, Realms: []Realm{
		{Name: "access", Role: "access", Bind: lo, Advertise: "127.0.0.1", UDP: accessPort, MediaMin: 35000, MediaMax: 35099},
		{Name: "core", Role: "core", Bind: lo, Advertise: "127.0.0.1", TCP: freeTCPPort(t), MediaMin: 35100, MediaMax: 35199},
	}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	audit.enroll(t, s, pbx.addr)

	// The client: SRTP offer from a loopback RTP socket.
	clientRTP, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer clientRTP.Close()
	key, _ := sdes.New(1, sdes.AES128SHA1_80)
	offer := "v=0\r\no=zoom 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio " + strconv.Itoa(clientRTP.LocalAddr().(*net.UDPAddr).Port) + " RTP/SAVP 9 0 8 101\r\n" +
		"a=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n" +
		"a=crypto:" + key.String() + "\r\na=sendrecv\r\n"
	ua, _ := sipgo.NewUA(sipgo.WithUserAgent("ZoomPbxPhone 6.0"), sbctest.NoDNS())
	defer ua.Close()
	cl, _ := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	dcache := sipgo.NewDialogClientCache(cl, sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "1001", Host: "127.0.0.1"}})
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "2002", Host: "127.0.0.1", Port: accessPort})
	req.SetDestination("127.0.0.1:" + strconv.Itoa(accessPort))
	req.SetTransport("UDP")
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "1001", Host: "pbx.example.com"}, Params: sip.HeaderParams{{K: "tag", V: "client-tag"}}})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "2002", Host: "pbx.example.com"}})
	req.AppendHeader(sip.NewHeader("User-Agent", "ZoomPbxPhone 6.0"))
	ct := sip.ContentTypeHeader("application/sdp")
	req.AppendHeader(&ct)
	req.SetBody([]byte(offer))
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	dc, err := dcache.WriteInvite(cctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var codes []int
	if err := dc.WaitAnswer(cctx, sipgo.AnswerOptions{OnResponse: func(r *sip.Response) error { codes = append(codes, r.StatusCode); return nil }}); err != nil {
		t.Fatalf("call not answered: %v (responses %v)", err, codes)
	}
	if !slicesContains(codes, 180) {
		t.Errorf("responses %v, want 180 before the answer", codes)
	}
	if err := dc.Ack(cctx); err != nil {
		t.Fatal(err)
	}
	answer := dc.InviteResponse.Body()
	var d sdp.SessionDescription
	if err := d.Unmarshal(answer); err != nil {
		t.Fatalf("answer: %v\n%s", err, answer)
	}
	m := d.MediaDescriptions[0]
	cryptoLine, _ := m.Attribute("crypto")
	relayKey, err := sdes.Parse(cryptoLine)
	if err != nil || strings.Join(m.MediaName.Protos, "/") != "RTP/SAVP" {
		t.Fatalf("answer to the client is not SDES SRTP: %s", answer)
	}

	// Topology: the PBX saw its own leg only.
	inv := pbx.invite(t)
	for _, leak := range []string{"client-tag", req.CallID().Value(), strconv.Itoa(clientRTP.LocalAddr().(*net.UDPAddr).Port), key.String()} {
		if strings.Contains(inv.String(), leak) {
			t.Errorf("the PBX's INVITE contains %q from the client:\n%s", leak, inv)
		}
	}
	if inv.Recipient.User != "2002" || inv.From().Address.User != "1001" || !strings.Contains(string(inv.Body()), "RTP/AVP") {
		t.Errorf("the PBX's INVITE:\n%s", inv)
	}
	if strings.Contains(string(answer), pbx.rtp.LocalAddr().String()) || strings.Contains(dc.InviteResponse.String(), pbx.addr) {
		t.Errorf("the client's answer names the PBX:\n%s", dc.InviteResponse)
	}

	// Media: SRTP from the client arrives at the PBX as RTP.
	enc, _ := key.Context()
	plain, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 9, SequenceNumber: 1, SSRC: 77}, Payload: bytes.Repeat([]byte{0x33}, 160)}).Marshal()
	sealed, _ := enc.EncryptRTP(nil, plain, nil)
	relayA := netip.AddrPortFrom(lo, uint16(m.MediaName.Port.Value))
	clientRTP.WriteToUDPAddrPort(sealed, relayA)
	buf := make([]byte, 1500)
	pbx.rtp.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, _, err := pbx.rtp.ReadFromUDPAddrPort(buf)
	if err != nil || !bytes.Equal(buf[:n], plain) {
		t.Fatalf("RTP at the PBX: %v", err)
	}
	_ = relayKey
	calls := s.Calls()
	if len(calls) != 1 || calls[0].Codecs != [2]string{"G722", "G722"} || calls[0].SRTP != [2]bool{true, false} ||
		calls[0].CallerAgent != "ZoomPbxPhone 6.0" || calls[0].ToClient || calls[0].Stats[0].PacketsIn != 1 {
		t.Errorf("calls in progress %+v", calls)
	}

	// The client hangs up: the PBX's dialog ends too.
	if err := dc.Bye(cctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pbx.byes:
	case <-time.After(5 * time.Second):
		t.Fatal("the PBX got no BYE")
	}
	waitFor(t, func() bool { return s.calls.Load().Active() == 0 })
}

func slicesContains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// callRig is an SBC with a PBX stand-in behind it and a client in front.
type callRig struct {
	t         *testing.T
	core      int // the core realm's TCP port
	clientSIP int // the client's SIP port
	cl        *sipgo.Client
	invites   chan *sip.Request // INVITEs the client received
	svc       *Service
	pbx       *pbxPhone
	access    string // the access realm's UDP address
	accessTCP string // and its TCP address
	client    *sipgo.DialogClientCache
	byes      chan struct{} // BYEs the client received
	rtp       *net.UDPConn
	inDialog  chan *sip.Request // other requests the client received in a dialog
	records   chan b2bua.Record // the SBC's call detail records
}

func newCallRig(t *testing.T, pbx *pbxPhone, edit ...func(*Config)) *callRig {
	t.Helper()
	cfg := Default()
	cfg.Calls.OpenToUnregistered = true // the rig's client calls without registering; see TestUnregisteredCallerRefused
	for _, f := range edit {
		f(&cfg)
	}
	host, port, _ := net.SplitHostPort(pbx.addr)
	p, _ := strconv.Atoi(port)
	cfg.SIPServer.NodeGroups = []NodeGroup{{Name: "OS4K", Nodes: []Node{{Name: "n1", Priority: 1, Address: host, Transport: TransportTCP, Port: p}}}}
	lo := netip.MustParseAddr("127.0.0.1")
	accessPort, corePort, accessTCP := freeUDPPort(t), freeTCPPort(t), freeTCPPort(t)
	for accessTCP == corePort {
		accessTCP = freeTCPPort(t)
	}
	s := NewService(slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn})), nil, nil)
	if err := s.Apply(context.Background(), Desired{Config: cfg, Realms: []Realm{
		{Name: "access", Role: "access", Bind: lo, Advertise: "127.0.0.1", UDP: accessPort, TCP: accessTCP, MediaMin: 35200, MediaMax: 35299},
		{Name: "core", Role: "core", Bind: lo, Advertise: "127.0.0.1", TCP: corePort, MediaMin: 35300, MediaMax: 35399},
	}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	audit.enroll(t, s, pbx.addr)

	// The client listens on its own UDP socket, so the SBC can reach it.
	ua, _ := sipgo.NewUA(sipgo.WithUserAgent("ZoomPbxPhone 6.0"), sbctest.NoDNS())
	t.Cleanup(func() { ua.Close() })
	srv, _ := sipgo.NewServer(ua)
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeUDP(conn)
	cl, _ := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientPort(conn.LocalAddr().(*net.UDPAddr).Port))
	r := &callRig{t: t, svc: s, pbx: pbx, access: "127.0.0.1:" + strconv.Itoa(accessPort), accessTCP: "127.0.0.1:" + strconv.Itoa(accessTCP), core: corePort, byes: make(chan struct{}, 1),
		clientSIP: conn.LocalAddr().(*net.UDPAddr).Port, cl: cl, invites: make(chan *sip.Request, 1),
		inDialog: make(chan *sip.Request, 16), records: make(chan b2bua.Record, 16)}
	s.OnCallEnd(func(rec b2bua.Record) { r.records <- rec })
	r.client = sipgo.NewDialogClientCache(cl, sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "1001", Host: "127.0.0.99", Port: 5099}})
	answers := sipgo.NewDialogServerCache(cl, sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "1001", Host: "127.0.0.99", Port: 5099}})
	inDialog := func(req *sip.Request, tx sip.ServerTransaction) {
		r.inDialog <- req.Clone()
		code, reason, body := 200, "OK", []byte(nil)
		if req.Method == sip.REFER {
			code, reason = 202, "Accepted"
		}
		if req.IsInvite() {
			body = clientAnswer(req.Body(), r.rtp.LocalAddr().(*net.UDPAddr).Port)
		}
		res := sip.NewResponseFromRequest(req, code, reason, body)
		if len(body) > 0 {
			res.AppendHeader(sdpType())
		}
		tx.Respond(res)
	}
	for _, on := range []func(sipgo.RequestHandler){srv.OnUpdate, srv.OnInfo, srv.OnRefer, srv.OnNotify, srv.OnMessage} {
		on(inDialog)
	}
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		if req.To().Params.Has("tag") {
			inDialog(req, tx)
			return
		}
		ds, err := answers.ReadInvite(req, tx)
		if err != nil {
			return
		}
		r.invites <- req.Clone()
		ds.Respond(180, "Ringing", nil)
		ds.RespondSDP(clientAnswer(req.Body(), r.rtp.LocalAddr().(*net.UDPAddr).Port))
	})
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { answers.ReadAck(req, tx) })
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if answers.ReadBye(req, tx) != nil {
			r.client.ReadBye(req, tx)
		}
		r.byes <- struct{}{}
	})
	r.rtp, _ = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	t.Cleanup(func() { r.rtp.Close() })
	return r
}

// call sends an INVITE with a plain RTP offer and waits for the final
// answer; it returns the dialog and the final status.
func (r *callRig) call() (*sipgo.DialogClientSession, int) {
	r.t.Helper()
	return r.callOver("UDP", r.access)
}

// callOver is call over a transport to one of the access realm's
// addresses.
func (r *callRig) callOver(transport, access string) (*sipgo.DialogClientSession, int) {
	r.t.Helper()
	offer := "v=0\r\no=zoom 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio " + strconv.Itoa(r.rtp.LocalAddr().(*net.UDPAddr).Port) + " RTP/AVP 0 8\r\na=sendrecv\r\n"
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "2002", Host: "127.0.0.1", Port: atoiTest(strings.Split(access, ":")[1])})
	req.SetDestination(access)
	req.SetTransport(transport)
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "1001", Host: "pbx.example.com"}, Params: sip.HeaderParams{{K: "tag", V: sip.GenerateTagN(8)}}})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "2002", Host: "pbx.example.com"}})
	ct := sip.ContentTypeHeader("application/sdp")
	req.AppendHeader(&ct)
	req.SetBody([]byte(offer))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dc, err := r.client.WriteInvite(ctx, req)
	if err != nil {
		r.t.Fatal(err)
	}
	err = dc.WaitAnswer(ctx, sipgo.AnswerOptions{})
	var dr *sipgo.ErrDialogResponse
	switch {
	case errors.As(err, &dr):
		return dc, dr.Res.StatusCode
	case err != nil:
		r.t.Fatal(err)
	}
	if err := dc.Ack(ctx); err != nil {
		r.t.Fatal(err)
	}
	return dc, 200
}

// TestCallRefusedByPBX: the PBX's 486 reaches the client and nothing stays
// open.
func TestCallRefusedByPBX(t *testing.T) {
	pbx := startPBXPhone(t)
	pbx.busy = true
	r := newCallRig(t, pbx)
	if _, code := r.call(); code != 486 {
		t.Fatalf("final status %d, want the PBX's 486", code)
	}
	waitFor(t, func() bool { return r.svc.calls.Load().Active() == 0 && r.svc.engine.Load().Active() == 0 })
}

// TestPBXHangsUp: the PBX's BYE reaches the client on the flow its INVITE
// came from (its Contact names a loopback address where nothing listens).
func TestPBXHangsUp(t *testing.T) {
	pbx := startPBXPhone(t)
	pbx.hangup = true
	r := newCallRig(t, pbx)
	if _, code := r.call(); code != 200 {
		t.Fatalf("final status %d", code)
	}
	select {
	case <-r.byes:
	case <-time.After(10 * time.Second):
		t.Fatal("the client got no BYE")
	}
	waitFor(t, func() bool { return r.svc.calls.Load().Active() == 0 })
}

// TestContactFollowsTransport: psigate's Contact in a call names the
// transport and port the call came in on, whatever the realm's earlier
// calls used.
func TestContactFollowsTransport(t *testing.T) {
	r := newCallRig(t, startPBXPhone(t))
	for _, tc := range []struct{ transport, addr, want string }{
		{"UDP", r.access, "sip:" + r.access},
		{"TCP", r.accessTCP, "sip:" + r.accessTCP + ";transport=tcp"},
		{"UDP", r.access, "sip:" + r.access},
	} {
		dc, code := r.callOver(tc.transport, tc.addr)
		if code != 200 {
			t.Fatalf("call over %s: final status %d", tc.transport, code)
		}
		c := dc.InviteResponse.Contact()
		if c == nil || c.Address.String() != tc.want {
			t.Errorf("call over %s: Contact %v, want <%s>", tc.transport, c, tc.want)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := dc.Bye(ctx); err != nil {
			t.Errorf("BYE over %s: %v", tc.transport, err)
		}
		cancel()
		waitFor(t, func() bool { return r.svc.calls.Load().Active() == 0 })
	}
}

// testLog sends log lines to the test's log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// clientAnswer is a Zoom client's answer: the first codec, SRTP with a
// fresh key under the offer's first crypto tag.
func clientAnswer(offer []byte, port int) []byte {
	var d sdp.SessionDescription
	if err := d.Unmarshal(offer); err != nil || len(d.MediaDescriptions) == 0 {
		return nil
	}
	m := d.MediaDescriptions[0]
	line, _ := m.Attribute("crypto")
	c, err := sdes.Parse(line)
	if err != nil {
		return nil
	}
	mine, _ := sdes.New(c.Tag, c.Suite)
	return []byte("v=0\r\no=zoom 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio " + strconv.Itoa(port) + " RTP/SAVP " + m.MediaName.Formats[0] + "\r\na=crypto:" + mine.String() + "\r\na=sendrecv\r\n")
}

// register registers the client through the SBC from its SIP socket.
func (r *callRig) register() {
	r.t.Helper()
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: atoiTest(strings.Split(r.access, ":")[1])})
	req.SetDestination(r.access)
	req.SetTransport("UDP")
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "1001", Host: "pbx.example.com"}, Params: sip.HeaderParams{{K: "tag", V: "reg"}}})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "1001", Host: "pbx.example.com"}})
	req.AppendHeader(sip.NewHeader("Contact", "<sip:1001@127.0.0.99:5099>;expires=3600"))
	req.AppendHeader(sip.NewHeader("User-Agent", "ZoomPbxPhone 6.0"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := r.cl.Do(ctx, req)
	if err != nil || res.StatusCode != 200 {
		r.t.Fatalf("REGISTER: %v %v", res, err)
	}
}

// TestCallFromPBXToClient: the PBX calls the subscriber at the token
// contact it registered; the SBC sends the INVITE on the client's flow
// (nothing listens at its Contact), the client answers with SRTP, the PBX's
// BYE reaches the client; with no binding the PBX gets 480.
func TestCallFromPBXToClient(t *testing.T) {
	pbx := startPBXPhone(t)
	r := newCallRig(t, pbx)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call := func(user string) (*sipgo.DialogClientSession, error) {
		offer := "v=0\r\no=OS4K 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
			"m=audio " + strconv.Itoa(pbx.rtp.LocalAddr().(*net.UDPAddr).Port) + " RTP/AVP 8 0\r\na=sendrecv\r\n"
		req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: user, Host: "127.0.0.1", Port: r.core, UriParams: sip.HeaderParams{{K: "transport", V: "tcp"}}})
		req.SetTransport("TCP")
		req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "2002", Host: "pbx.example.com"}, Params: sip.HeaderParams{{K: "tag", V: sip.GenerateTagN(8)}}})
		req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: "127.0.0.1"}})
		ct := sip.ContentTypeHeader("application/sdp")
		req.AppendHeader(&ct)
		req.SetBody([]byte(offer))
		dc, err := pbx.calls.WriteInvite(ctx, req)
		if err != nil {
			return nil, err
		}
		return dc, dc.WaitAnswer(ctx, sipgo.AnswerOptions{})
	}

	_, err := call("nobody")
	var dr *sipgo.ErrDialogResponse
	if !errors.As(err, &dr) || dr.Res.StatusCode != 480 {
		t.Fatalf("call to no binding: %v, want 480", err)
	}

	r.register()
	bs := r.svc.Bindings()
	if len(bs) != 1 {
		t.Fatalf("%d bindings", len(bs))
	}
	dc, err := call(bs[0].Token)
	if err != nil {
		t.Fatalf("call to the subscriber: %v", err)
	}
	if err := dc.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	inv := <-r.invites
	if inv.Source() != r.access {
		t.Errorf("the client's INVITE came from %s, not from the access realm's UDP listener %s", inv.Source(), r.access)
	}
	if !strings.Contains(string(inv.Body()), "RTP/SAVP") || inv.Recipient.User != "1001" || inv.Recipient.Host+":"+strconv.Itoa(inv.Recipient.Port) != bs[0].Flow.Source || inv.To().Address.User != "1001" {
		t.Errorf("the client's INVITE:\n%s", inv)
	}
	if strings.Contains(inv.String(), pbx.addr) || strings.Contains(inv.String(), pbx.rtp.LocalAddr().String()) {
		t.Errorf("the client's INVITE names the PBX:\n%s", inv)
	}
	if !strings.Contains(string(dc.InviteResponse.Body()), "RTP/AVP") {
		t.Errorf("the PBX's answer is not plain RTP:\n%s", dc.InviteResponse.Body())
	}
	if err := dc.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.byes:
	case <-time.After(5 * time.Second):
		t.Fatal("the client got no BYE")
	}
	waitFor(t, func() bool { return r.svc.calls.Load().Active() == 0 })
}

// TestClientCancels: the client gives up while the PBX rings; the PBX's
// INVITE is cancelled and the client gets 487.
func TestClientCancels(t *testing.T) {
	pbx := startPBXPhone(t)
	pbx.ringing = true
	r := newCallRig(t, pbx)
	offer := "v=0\r\no=zoom 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio " + strconv.Itoa(r.rtp.LocalAddr().(*net.UDPAddr).Port) + " RTP/AVP 0 8\r\na=sendrecv\r\n"
	// The Request-URI names the SBC: sipgo sends a CANCEL to the
	// Request-URI, not the INVITE's destination.
	host, port, _ := net.SplitHostPort(r.access)
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "2002", Host: host, Port: atoiTest(port)})
	req.SetDestination(r.access)
	req.SetTransport("UDP")
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "1001", Host: "pbx.example.com"}, Params: sip.HeaderParams{{K: "tag", V: "c1"}}})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "2002", Host: "pbx.example.com"}})
	ct := sip.ContentTypeHeader("application/sdp")
	req.AppendHeader(&ct)
	req.SetBody([]byte(offer))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dc, err := r.client.WriteInvite(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	ring, hangUp := context.WithCancel(ctx)
	err = dc.WaitAnswer(ring, sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
		if res.StatusCode == 180 {
			hangUp() // the caller gives up while it rings
		}
		return nil
	}})
	if err == nil {
		t.Fatal("the cancelled call was answered")
	}
	select {
	case <-pbx.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the PBX's INVITE was not cancelled")
	}
	waitFor(t, func() bool { return r.svc.calls.Load().Active() == 0 && r.svc.engine.Load().Active() == 0 })
}

func atoiTest(s string) int { n, _ := strconv.Atoi(s); return n }

// TestCalleeTimeouts: a PBX that never replies gets the caller a 408
// after the no-reply timeout; one that rings too long a 480 after the
// no-answer timeout, with the PBX's INVITE cancelled.
func TestCalleeTimeouts(t *testing.T) {
	short := func(c *Config) {
		c.RemoteSubscribers.InviteNoReplyTimeoutMs = 300
		c.RemoteSubscribers.InviteNoAnswerTimeoutMs = 500
	}
	// A PBX that accepts the connection and never says anything.
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	go func() {
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c)
		}
	}()
	if _, code := newCallRig(t, &pbxPhone{addr: mute.Addr().String()}, short).call(); code != 408 {
		t.Errorf("no reply: %d, want 408", code)
	}
	ringing := startPBXPhone(t)
	ringing.ringing = true
	r := newCallRig(t, ringing, short)
	if _, code := r.call(); code != 480 {
		t.Errorf("no answer: %d, want 480", code)
	}
	select {
	case <-ringing.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the ringing PBX's INVITE was not cancelled")
	}
	waitFor(t, func() bool { return r.svc.calls.Load().Active() == 0 && r.svc.engine.Load().Active() == 0 })
}
