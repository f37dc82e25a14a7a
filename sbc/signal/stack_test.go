package signal

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

var lo = netip.MustParseAddr("127.0.0.1")

func TestApplyReconcilesListeners(t *testing.T) {
	st := New(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	defer st.Close()
	ctx := context.Background()
	udp, tcp := freePort(t, "udp"), freePort(t, "tcp")
	spec := RealmSpec{Name: "core", Advertise: "127.0.0.1", Listeners: []Listener{
		{Transport: UDP, Addr: netip.AddrPortFrom(lo, uint16(udp))},
		{Transport: TCP, Addr: netip.AddrPortFrom(lo, uint16(tcp))},
	}}
	if err := st.Apply(ctx, []RealmSpec{spec}); err != nil {
		t.Fatal(err)
	}
	r := st.Realm("core")
	if r.Port(UDP) != udp || r.Port(TCP) != tcp {
		t.Fatalf("listeners %v", r.Listeners())
	}
	// A client connected to the TCP listener keeps its connection when
	// the UDP listener goes.
	conn, err := net.Dial("tcp", netip.AddrPortFrom(lo, uint16(tcp)).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	spec.Listeners = spec.Listeners[1:]
	if err := st.Apply(ctx, []RealmSpec{spec}); err != nil {
		t.Fatal(err)
	}
	if st.Realm("core") != r || r.Port(UDP) != 0 || r.Port(TCP) != tcp {
		t.Fatalf("after removing UDP: %v", r.Listeners())
	}
	conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := conn.Read(make([]byte, 1)); err == nil || !isTimeout(err) {
		t.Fatalf("the kept listener's connection was closed: %v", err)
	}
	if c, err := net.ListenPacket("udp", netip.AddrPortFrom(lo, uint16(udp)).String()); err != nil {
		t.Fatalf("the removed UDP port is still held: %v", err)
	} else {
		c.Close()
	}
	// A TLS listener without a certificate is an error for that listener
	// only.
	spec.Listeners = append(spec.Listeners, Listener{Transport: TLS, Addr: netip.AddrPortFrom(lo, 0)})
	if err := st.Apply(ctx, []RealmSpec{spec}); err == nil {
		t.Fatal("TLS without certificate accepted")
	}
	if r.Port(TCP) != tcp {
		t.Fatal("the TCP listener went with the TLS error")
	}
	// A realm that is no longer wanted is closed.
	if err := st.Apply(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if st.Realm("core") != nil {
		t.Fatal("realm kept")
	}
	if ln, err := net.Listen("tcp", netip.AddrPortFrom(lo, uint16(tcp)).String()); err != nil {
		t.Fatalf("TCP port still held: %v", err)
	} else {
		ln.Close()
	}
}

func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestRealmDialsOnlyWhereAllowed: a realm without MayDial opens no TCP
// connection (nothing reaches a listener), one with it opens only those
// it allows.
func TestRealmDialsOnlyWhereAllowed(t *testing.T) {
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	accepted := make(chan struct{}, 4)
	go func() {
		for {
			c, err := target.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Close()
		}
	}()
	addr := target.Addr().(*net.TCPAddr).AddrPort()
	st := New(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	defer st.Close()
	apply := func(may func(netip.AddrPort) bool) *Realm {
		if err := st.Apply(context.Background(), []RealmSpec{{Name: "r", Advertise: "127.0.0.1", NoDNS: true, MayDial: may,
			Listeners: []Listener{{Transport: TCP, Addr: netip.AddrPortFrom(lo, 0)}}}}); err != nil {
			t.Fatal(err)
		}
		return st.Realm("r")
	}
	options := func(r *Realm) error {
		req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: int(addr.Port())})
		req.SetDestination(addr.String())
		req.SetTransport("TCP")
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, err := r.Client.Do(ctx, req)
		return err
	}
	if err := options(apply(nil)); err == nil || !strings.Contains(err.Error(), "opens no connection") {
		t.Fatalf("a realm without MayDial: %v", err)
	}
	select {
	case <-accepted:
		t.Fatal("a connection was opened")
	default:
	}
	options(apply(func(ap netip.AddrPort) bool { return ap == addr }))
	select {
	case <-accepted:
	case <-time.After(2 * time.Second):
		t.Fatal("the allowed connection was not opened")
	}
}

func TestContactURI(t *testing.T) {
	st := New(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	defer st.Close()
	udp, tcp := freePort(t, "udp"), freePort(t, "tcp")
	spec := RealmSpec{Name: "core", Advertise: "192.0.2.7", Listeners: []Listener{
		{Transport: UDP, Addr: netip.AddrPortFrom(lo, uint16(udp))},
		{Transport: TCP, Addr: netip.AddrPortFrom(lo, uint16(tcp))},
	}}
	if err := st.Apply(context.Background(), []RealmSpec{spec}); err != nil {
		t.Fatal(err)
	}
	r := st.Realm("core")
	for _, tc := range []struct {
		network string
		want    string
	}{
		{"UDP", fmt.Sprintf("sip:192.0.2.7:%d", udp)},
		{"tcp", fmt.Sprintf("sip:192.0.2.7:%d;transport=tcp", tcp)},
		{"TCP", fmt.Sprintf("sip:192.0.2.7:%d;transport=tcp", tcp)},
		// No TLS listener: the UDP port, without a transport parameter.
		{"TLS", fmt.Sprintf("sip:192.0.2.7:%d", udp)},
	} {
		u := r.ContactURI(TransportOf(tc.network))
		if got := u.String(); got != tc.want {
			t.Errorf("ContactURI(%s) = %s, want %s", tc.network, got, tc.want)
		}
	}
}
