package sbc

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// rawSIP is a client speaking SIP over its own TCP connection, so a test
// decides when the connection breaks.
type rawSIP struct {
	t    *testing.T
	conn net.Conn
	rd   *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawSIP {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawSIP{t: t, conn: c, rd: bufio.NewReader(c)}
}

// send writes a message; "{local}" becomes the connection's local address.
func (c *rawSIP) send(msg string) {
	c.t.Helper()
	msg = strings.ReplaceAll(msg, "{local}", c.conn.LocalAddr().String())
	if _, err := c.conn.Write([]byte(msg)); err != nil {
		c.t.Fatal(err)
	}
}

// read reads the next message: its start line, headers and body.
func (c *rawSIP) read() (start string, headers map[string]string, body string) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	headers = map[string]string{}
	for {
		line, err := c.rd.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading: %v", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if start == "" {
				continue // keepalive
			}
			break
		}
		if start == "" {
			start = line
			continue
		}
		k, v, _ := strings.Cut(line, ":")
		headers[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	n, _ := strconv.Atoi(headers["content-length"])
	b := make([]byte, n)
	if _, err := io.ReadFull(c.rd, b); err != nil {
		c.t.Fatal(err)
	}
	return start, headers, string(b)
}

// until reads messages until one's start line has the prefix.
func (c *rawSIP) until(prefix string) (string, map[string]string, string) {
	c.t.Helper()
	for range 10 {
		start, h, b := c.read()
		if strings.HasPrefix(start, prefix) {
			return start, h, b
		}
	}
	c.t.Fatalf("no %q", prefix)
	return "", nil, ""
}

func rawRegister(cseq int) string {
	return "REGISTER sip:pbx.example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP {local};branch=z9hG4bK-reg" + strconv.Itoa(cseq) + ";rport\r\n" +
		"From: <sip:1001@pbx.example.com>;tag=rawreg\r\nTo: <sip:1001@pbx.example.com>\r\n" +
		"Call-ID: raw-reg-1\r\nCSeq: " + strconv.Itoa(cseq) + " REGISTER\r\nMax-Forwards: 70\r\n" +
		"Contact: <sip:1001@192.0.2.10:5099;transport=tcp>;expires=600\r\nUser-Agent: raw\r\nContent-Length: 0\r\n\r\n"
}

// TestCallFollowsReconnectedClient: a client's TCP connection breaks
// during a call and it registers again on a new one; the PBX's BYE
// reaches it on the new connection.
func TestCallFollowsReconnectedClient(t *testing.T) {
	pbx := startPBXPhone(t)
	r := newCallRig(t, pbx)
	first := dialRaw(t, r.accessTCP)
	first.send(rawRegister(1))
	if start, _, _ := first.until("SIP/2.0 2"); !strings.HasPrefix(start, "SIP/2.0 200") {
		t.Fatalf("REGISTER: %s", start)
	}
	offer := "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio " +
		strconv.Itoa(r.rtp.LocalAddr().(*net.UDPAddr).Port) + " RTP/AVP 0\r\na=sendrecv\r\n"
	first.send("INVITE sip:2002@pbx.example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP {local};branch=z9hG4bK-inv1;rport\r\n" +
		"From: <sip:1001@pbx.example.com>;tag=rawcall\r\nTo: <sip:2002@pbx.example.com>\r\n" +
		"Call-ID: raw-call-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n" +
		"Contact: <sip:1001@192.0.2.10:5099;transport=tcp>\r\nContent-Type: application/sdp\r\n" +
		"Content-Length: " + strconv.Itoa(len(offer)) + "\r\n\r\n" + offer)
	start, h, _ := first.until("SIP/2.0 200")
	if !strings.Contains(start, "200") {
		t.Fatal(start)
	}
	first.send("ACK " + strings.Trim(strings.SplitN(h["contact"], ">", 2)[0], "<") + " SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP {local};branch=z9hG4bK-ack1;rport\r\n" +
		"From: <sip:1001@pbx.example.com>;tag=rawcall\r\nTo: " + h["to"] + "\r\n" +
		"Call-ID: raw-call-1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
	waitFor(t, func() bool { return r.svc.calls.Load().Active() == 1 })

	// The connection breaks; the client comes back on a new one.
	first.conn.Close()
	second := dialRaw(t, r.accessTCP)
	second.send(rawRegister(2))
	if start, _, _ := second.until("SIP/2.0 2"); !strings.HasPrefix(start, "SIP/2.0 200") {
		t.Fatalf("second REGISTER: %s", start)
	}
	waitFor(t, func() bool {
		bs := r.svc.Bindings()
		return len(bs) == 1 && bs[0].Flow.Source == second.conn.LocalAddr().String()
	})

	// The PBX hangs up: its BYE in its dialog.
	inv := pbx.invite(t)
	bye := sip.NewRequest(sip.BYE, *inv.Contact().Address.Clone())
	bye.SetTransport("TCP")
	bye.AppendHeader(&sip.FromHeader{Address: inv.To().Address, Params: sip.HeaderParams{{K: "tag", V: r.pbxTag(t, nil)}}})
	bye.AppendHeader(&sip.ToHeader{Address: inv.From().Address, Params: inv.From().Params.Clone()})
	bye.AppendHeader(sip.NewHeader("Call-ID", inv.CallID().Value()))
	bye.AppendHeader(&sip.CSeqHeader{SeqNo: 5, MethodName: sip.BYE})
	done := make(chan *sip.Response, 1)
	go func() { done <- pbxDo(t, pbx, bye) }()
	start, h, _ = second.until("BYE ")
	if h["call-id"] != "raw-call-1" {
		t.Errorf("BYE on the new connection for %q", h["call-id"])
	}
	second.send("SIP/2.0 200 OK\r\nVia: " + h["via"] + "\r\nFrom: " + h["from"] + "\r\nTo: " + h["to"] + "\r\nCall-ID: " + h["call-id"] +
		"\r\nCSeq: " + h["cseq"] + "\r\nContent-Length: 0\r\n\r\n")
	if res := <-done; res.StatusCode != 200 {
		t.Errorf("the PBX's BYE: %d", res.StatusCode)
	}
	waitFor(t, func() bool { return r.svc.calls.Load().Active() == 0 })
}

// TestCallToGoneFlow: the PBX calls a subscriber whose TCP connection
// closed: 480.
func TestCallToGoneFlow(t *testing.T) {
	pbx := startPBXPhone(t)
	r := newCallRig(t, pbx)
	c := dialRaw(t, r.accessTCP)
	c.send(rawRegister(1))
	if start, _, _ := c.until("SIP/2.0 2"); !strings.HasPrefix(start, "SIP/2.0 200") {
		t.Fatalf("REGISTER: %s", start)
	}
	token := r.svc.Bindings()[0].Token
	c.conn.Close()
	time.Sleep(100 * time.Millisecond) // the SBC notices the close
	inv := r.coreRequest(sip.INVITE, token)
	inv.AppendHeader(sdpType())
	inv.SetBody([]byte("v=0\r\no=OS4K 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio " +
		strconv.Itoa(pbx.rtp.LocalAddr().(*net.UDPAddr).Port) + " RTP/AVP 8\r\na=sendrecv\r\n"))
	if res := pbxDo(t, pbx, inv); res.StatusCode != 480 {
		t.Errorf("call to a gone flow: %d %s, want 480", res.StatusCode, res.Reason)
	}
	if rec := nextRecord(t, r); rec.Code != 480 || !rec.ToClient {
		t.Errorf("record %+v", rec)
	}
}

// TestUDPSentFromListener: requests over UDP leave from the realm's UDP
// listener (the address its Via names), also to a PBX node that never
// sent psigate anything: here its keepalive OPTIONS. (A client's calls
// are checked in TestCallFromPBXToClient.)
func TestUDPSentFromListener(t *testing.T) {
	node, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	cfg := Default()
	cfg.SIPServer.NodeGroups = []NodeGroup{{Name: "PBX", Nodes: []Node{{Name: "n1", Priority: 1, Address: "127.0.0.1", Transport: TransportUDP, Port: node.LocalAddr().(*net.UDPAddr).Port}}}}
	// Probes every 5 s, so a first one lost to a busy machine is not
	// the only one.
	cfg.SIPServer.Keepalive = Keepalive{IntervalSeconds: 5, FailureThreshold: 3}
	lo := netip.MustParseAddr("127.0.0.1")
	corePort := freeUDPPort(t)
	s := NewService(slog.New(slog.NewTextHandler(io.Discard, nil)), nil, nil)
	if err := s.Apply(context.Background(), Desired{Config: cfg, Realms: []Realm{
		{Name: "access", Role: "access", Bind: lo, Advertise: "127.0.0.1", UDP: freeUDPPort(t), MediaMin: 35400, MediaMax: 35449},
		{Name: "core", Role: "core", Bind: lo, Advertise: "127.0.0.1", UDP: corePort, MediaMin: 35450, MediaMax: 35499},
	}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	buf := make([]byte, 4096)
	_ = node.SetReadDeadline(time.Now().Add(15 * time.Second))
	n, from, err := node.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no keepalive reached the node: %v", err)
	}
	if !strings.HasPrefix(string(buf[:n]), "OPTIONS ") || from.Port != corePort {
		t.Errorf("%q from port %d, want an OPTIONS from the core listener's %d", strings.SplitN(string(buf[:n]), "\r\n", 2)[0], from.Port, corePort)
	}
}

// udpPeer is a client on its own UDP socket, written by hand so a test
// decides which ACKs it sends.
type udpPeer struct {
	t    *testing.T
	conn *net.UDPConn
	to   *net.UDPAddr
}

func (p *udpPeer) send(msg string) {
	p.t.Helper()
	msg = strings.ReplaceAll(msg, "{local}", p.conn.LocalAddr().String())
	if _, err := p.conn.WriteToUDP([]byte(msg), p.to); err != nil {
		p.t.Fatal(err)
	}
}

// until reads datagrams until one starts with prefix, within wait.
func (p *udpPeer) until(prefix string, wait time.Duration) (map[string]string, bool) {
	p.t.Helper()
	buf := make([]byte, 8192)
	deadline := time.Now().Add(wait)
	for {
		_ = p.conn.SetReadDeadline(deadline)
		n, _, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return nil, false
		}
		head, _, _ := strings.Cut(string(buf[:n]), "\r\n\r\n")
		lines := strings.Split(head, "\r\n")
		if !strings.HasPrefix(lines[0], prefix) {
			continue
		}
		h := map[string]string{}
		for _, l := range lines[1:] {
			k, v, _ := strings.Cut(l, ":")
			h[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
		return h, true
	}
}

// TestReinviteOKResentOverUDP: the 200 to a client's re-INVITE over UDP
// is sent again until the client's ACK (RFC 3261 section 13.3.1.4).
func TestReinviteOKResentOverUDP(t *testing.T) {
	pbx := startPBXPhone(t)
	r := newCallRig(t, pbx)
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	to, _ := net.ResolveUDPAddr("udp", r.access)
	p := &udpPeer{t: t, conn: conn, to: to}
	sdpFor := func(dir string) string {
		return "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio " +
			strconv.Itoa(r.rtp.LocalAddr().(*net.UDPAddr).Port) + " RTP/AVP 0\r\na=" + dir + "\r\n"
	}
	request := func(method string, cseq int, toTag, body string) string {
		msg := method + " sip:2002@" + r.access + " SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-udp" + method + strconv.Itoa(cseq) + "\r\n" +
			"From: <sip:1001@pbx.example.com>;tag=udppeer\r\nTo: <sip:2002@pbx.example.com>" + toTag + "\r\n" +
			"Call-ID: udp-reinvite-1\r\nCSeq: " + strconv.Itoa(cseq) + " " + method + "\r\nMax-Forwards: 70\r\nContact: <sip:1001@{local}>\r\n"
		if body != "" {
			msg += "Content-Type: application/sdp\r\n"
		}
		return msg + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	p.send(request("INVITE", 1, "", sdpFor("sendrecv")))
	h, ok := p.until("SIP/2.0 200", 10*time.Second)
	if !ok {
		t.Fatal("no 200 to the INVITE")
	}
	_, tag, _ := strings.Cut(h["to"], ";tag=")
	p.send(request("ACK", 1, ";tag="+tag, ""))
	p.send(request("INVITE", 2, ";tag="+tag, sdpFor("sendonly")))
	if _, ok := p.until("SIP/2.0 200", 10*time.Second); !ok {
		t.Fatal("no 200 to the re-INVITE")
	}
	// No ACK yet: the 200 comes again.
	if h, ok := p.until("SIP/2.0 200", 3*time.Second); !ok || !strings.Contains(h["cseq"], "2 INVITE") {
		t.Fatalf("the 200 to the re-INVITE was not sent again (%v)", h)
	}
	p.send(request("ACK", 2, ";tag="+tag, ""))
	p.send(request("BYE", 3, ";tag="+tag, ""))
	if _, ok := p.until("SIP/2.0 200", 10*time.Second); !ok {
		t.Fatal("no 200 to the BYE")
	}
}
