package sbctest

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/psigate/psigate/sbc"
)

// TestRegisterTLSThroughSBC: 50 users register over TLS, each on its own
// connection, through an SBC (access realm on TLS, core realm on TCP) to
// Kamailio; one more user has a wrong password and is counted as failed
// with Kamailio's 403. The SBC then holds 50 bindings, each on a TLS flow
// from a source of its own, and Kamailio 50 locations. A second Register
// refreshes over the same connections: with register throttling the SBC
// answers the refreshes itself, which it does only on the flow the
// binding came on, so the connections stayed open.
func TestRegisterTLSThroughSBC(t *testing.T) {
	const n = 50
	users := map[string]string{}
	var names []string
	for i := range n {
		u := fmt.Sprintf("tls%04d", 1000+i)
		users[u] = "pw-" + u
		names = append(names, u)
	}
	users["mallory"] = "the-right-one"
	k := StartKamailio(t, KamailioOptions{Users: users})

	tc := NewCertificate(t)
	cert, pool := tc.TLS, tc.Pool
	s, target := startTLSSBC(t, k.Addr, cert)

	passwords := map[string]string{"mallory": "a-wrong-one"}
	for _, u := range names {
		passwords[u] = users[u]
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	res, err := RegisterTLS(ctx, TLSLoadOptions{
		Target: target, Users: append(names, "mallory"), Passwords: passwords,
		Domain: KamailioRealm, Concurrency: 8, Expires: 3600,
		RootCAs: pool, // the SBC's certificate is verified, for 127.0.0.1
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Close() })
	t.Logf("%v (%.0f reg/s), granted %ds", res, res.Rate(), res.Granted)
	if res.Users != n+1 || res.Connected != n+1 || res.Registered != n || res.Failed != 1 {
		t.Fatalf("result %v, want %d connected, %d registered, 1 failed", res, n+1, n)
	}
	if res.Failures["register: status 403 Forbidden"] != 1 || len(res.Examples) != 1 || !strings.HasPrefix(res.Examples[0], "mallory: ") {
		t.Errorf("failures %v, examples %q; want mallory's 403", res.Failures, res.Examples)
	}
	// Register throttling: TLS clients are given the SBC's stream timer.
	if want := sbc.DefaultRemoteSubscribers().RegisterThrottling.StreamSeconds; res.Granted != want {
		t.Errorf("granted %ds, want the throttled %ds", res.Granted, want)
	}

	bindings := s.Bindings()
	sources := map[string]bool{}
	for _, b := range bindings {
		if b.Flow.Transport != "TLS" {
			t.Errorf("binding %s on flow %+v, want TLS", b.AOR, b.Flow)
		}
		sources[b.Flow.Source] = true
	}
	if len(bindings) != n || len(sources) != n {
		t.Errorf("the SBC holds %d bindings from %d sources, want %d from %d", len(bindings), len(sources), n, n)
	}
	if locs := k.Locations(t); len(locs) != n {
		t.Errorf("Kamailio holds %d locations, want %d", len(locs), n)
	}

	// Refresh over the open connections (the failed user's too, which is
	// refused again).
	before := len(k.Requests(t))
	l := res.load
	again, err := l.Register(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("refresh: %v", again)
	if again.Registered != n || again.Failed != 1 {
		t.Errorf("refresh %v, want %d registered", again, n)
	}
	// Only mallory's two REGISTERs (challenge and refused retry) reach
	// Kamailio; the SBC answers the refreshes on the flows it knows.
	if got := len(k.Requests(t)) - before; got != 2 {
		t.Errorf("the refresh sent %d requests to Kamailio, want 2 (mallory's)", got)
	}
	if err := res.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

// TestRegisterTLSRefused: a target nobody listens on is a counted failure,
// not an error.
func TestRegisterTLSRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	res, err := RegisterTLS(t.Context(), TLSLoadOptions{
		Target: target, Users: []string{"a", "b"}, Password: func(string) string { return "x" },
		InsecureSkipVerify: true, Timeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	if res.Connected != 0 || res.Failed != 2 || res.Failures["connect: connection refused"] != 2 {
		t.Fatalf("result %v, want 2 refused connections", res)
	}
}

// TestDigestAuthorization: the examples of RFC 2617 section 3.5 (MD5) and
// RFC 7616 section 3.9.1 (SHA-256).
func TestDigestAuthorization(t *testing.T) {
	for _, c := range []struct {
		challenge, method, uri, user, pass, cnonce, want string
	}{
		{
			challenge: `Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"`,
			method:    "GET", uri: "/dir/index.html", user: "Mufasa", pass: "Circle Of Life", cnonce: "0a4f113b",
			want: `response="6629fae49393a05397450978507c4ef1"`,
		},
		{
			challenge: `Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"`,
			method:    "GET", uri: "/dir/index.html", user: "Mufasa", pass: "Circle of Life", cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
			want: `response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"`,
		},
	} {
		ch, err := pickChallenge([]string{`Basic realm="x"`, c.challenge})
		if err != nil {
			t.Fatal(err)
		}
		got, err := digestAuthorization(ch, c.method, c.uri, c.user, c.pass, c.cnonce, "00000001")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(got, c.want) || !strings.Contains(got, "qop=auth, nc=00000001") || !strings.Contains(got, `opaque="`+ch.params["opaque"]+`"`) {
			t.Errorf("authorization %s, want %s with qop, nc and opaque", got, c.want)
		}
	}
	if _, err := pickChallenge([]string{`Digest realm="r", nonce="n", algorithm=SHA-512-256`}); err == nil {
		t.Error("an unsupported algorithm was taken")
	}
}

// TestReadMessage: stream framing by Content-Length, keepalive CRLFs,
// compact and folded headers.
func TestReadMessage(t *testing.T) {
	stream := "\r\n\r\n" +
		"SIP/2.0 100 Trying\r\nl: 5\r\ni: a@b\r\n\r\nhello" +
		"SIP/2.0 200 OK\r\nCall-ID: a@b\r\nContact: <sip:u@h;transport=tls>;expires=60,\r\n <sip:other@h>;expires=99\r\nContent-Length: 0\r\n\r\n"
	r := bufio.NewReader(strings.NewReader(stream))
	start, h, err := readMessage(r)
	if err != nil || start != "SIP/2.0 100 Trying" || len(h) != 2 || h[0] != [2]string{"content-length", "5"} || h[1][0] != "call-id" {
		t.Fatalf("first message %q %q %v", start, h, err)
	}
	start, h, err = readMessage(r)
	if err != nil || start != "SIP/2.0 200 OK" {
		t.Fatalf("second message %q %v", start, err)
	}
	res := &response{status: 200, headers: h}
	if g := grantedExpiry(res, "sip:u@h;transport=tls", 3600); g != 60 {
		t.Errorf("granted %d, want 60", g)
	}
	if g := grantedExpiry(res, "sip:other@h", 3600); g != 99 {
		t.Errorf("granted %d for the folded contact, want 99", g)
	}
	if _, _, err := readMessage(r); err != io.EOF {
		t.Errorf("after the last message: %v, want EOF", err)
	}
}

// startTLSSBC runs an SBC on loopback: the access realm on TLS with cert,
// the core realm on TCP, Kamailio at pbx its only node, the remote
// subscriber settings at their defaults (register throttling on).
func startTLSSBC(t *testing.T, pbx netip.AddrPort, cert tls.Certificate) (*sbc.Service, netip.AddrPort) {
	t.Helper()
	cfg := sbc.Default()
	cfg.SIPServer.NodeGroups = []sbc.NodeGroup{{Name: "PBX", Nodes: []sbc.Node{
		{Name: "kamailio", Priority: 1, Address: pbx.Addr().String(), Transport: sbc.TransportTCP, Port: int(pbx.Port())},
	}}}
	lo := netip.MustParseAddr("127.0.0.1")
	tlsPort, corePort := freePort(t, lo), freePort(t, lo)
	for corePort == tlsPort {
		corePort = freePort(t, lo)
	}
	s := sbc.NewService(slog.New(slog.NewTextHandler(io.Discard, nil)), nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	err := s.Apply(ctx, sbc.Desired{Config: cfg, Certificate: cert, Realms: []sbc.Realm{
		{Name: "access", Role: "access", Bind: lo, Advertise: "127.0.0.1", TLS: tlsPort},
		{Name: "core", Role: "core", Bind: lo, Advertise: "127.0.0.1", TCP: corePort},
	}})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the SBC did not stop within 10s")
		}
	})
	return s, netip.AddrPortFrom(lo, uint16(tlsPort))
}
