package sbc

// Interop with a real SIP client over TLS: baresip registers through the
// SBC's access realm (TLS) to Kamailio, the PBX behind the core realm (TCP).

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/psigate/psigate/sbc/registrar"
	"github.com/psigate/psigate/sbc/sbctest"
)

// TestBaresipRegistersOverTLS: baresip (1.0.0) registers user 3001 over
// TLS to the SBC's access realm, with the SBC as its outbound proxy and
// the SBC's self-signed certificate as its CA. The SBC relays the
// registration (and the digest challenge) to Kamailio over TCP. Both ends
// must then hold the binding: the SBC's on a TLS flow, Kamailio's with the
// SBC's token contact on the core realm; both with baresip's User-Agent.
//
// baresip 1.0.0 cannot set its User-Agent (it is compiled in: "baresip
// v1.0.0 (arch/os)"), so the test reads the one baresip sent from its SIP
// trace (-s) and checks the SBC and Kamailio kept exactly that.
func TestBaresipRegistersOverTLS(t *testing.T) {
	bin := sbctest.FindPeer(t, "baresip", "baresip-core")
	modules := sbctest.BaresipModules(t, "account.so")

	const user, pass, domain = "3001", "pw-3001-tls", sbctest.KamailioRealm
	k := sbctest.StartKamailio(t, sbctest.KamailioOptions{Users: map[string]string{user: pass}})

	tc := sbctest.NewCertificate(t)
	cert, certPEM := tc.TLS, tc.PEM
	s, tlsPort, corePort := startTLSService(t, k.Addr, cert)

	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	account := fmt.Sprintf(`<sip:%s@%s;transport=tls>;auth_pass=%s;outbound="sip:127.0.0.1:%d;transport=tls";regint=600;mwi=no;answermode=manual`,
		user, domain, pass, tlsPort)
	writeBaresipSBCConfig(t, dir, modules, caFile, account)
	bs := startBaresipSBC(t, bin, dir)

	// Wait until both ends hold the registration, and baresip's trace
	// shows the User-Agent it sent.
	wantAOR := "sip:" + user + "@" + domain
	var (
		ua      string
		binding registrar.Binding
		loc     sbctest.Location
		why     string
	)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ua, binding, loc, why = baresipRegistered(t, s, k, bs, wantAOR, user, corePort)
		if why == "" {
			break
		}
		select {
		case <-bs.exited:
			t.Fatalf("baresip exited before it registered (%s)", why)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not registered within 30s: %s\nSBC bindings: %+v\nKamailio: %+v", why, s.Bindings(), k.Locations(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("baresip's User-Agent: %q", ua)
	t.Logf("SBC binding: token %s, contact %s, flow %+v, expires in %v (PBX %v)", binding.Token, binding.Contact,
		binding.Flow, time.Until(binding.Expires).Round(time.Second), time.Until(binding.PBXExpires).Round(time.Second))
	t.Logf("Kamailio: contact %s, received %s, socket %s", loc.Contact, loc.Received, loc.Socket)

	if !regexp.MustCompile(`^baresip v\d+\.\d+\.\d+ \(`).MatchString(ua) {
		t.Errorf("baresip sent User-Agent %q, want baresip's own \"baresip vX.Y.Z (arch/os)\"", ua)
	}
	if binding.Flow.Realm != "access" {
		t.Errorf("binding on realm %q, want access", binding.Flow.Realm)
	}
	if src, err := netip.ParseAddrPort(binding.Flow.Source); err != nil || !src.Addr().IsLoopback() || src.Port() == uint16(tlsPort) {
		t.Errorf("binding's flow source %q, want baresip's loopback address", binding.Flow.Source)
	}
	if !strings.Contains(strings.ToLower(binding.Contact), "transport=tls") {
		t.Errorf("binding's client contact %q has no transport=tls", binding.Contact)
	}
	// The SBC reached Kamailio over TCP, from the core realm.
	if !strings.Contains(loc.Received, "transport=tcp") || !strings.HasPrefix(loc.Socket, "tcp:") {
		t.Errorf("Kamailio's binding arrived over received %q socket %q, want TCP", loc.Received, loc.Socket)
	}
	if ttl := time.Until(loc.Expires); ttl < 60*time.Second || ttl > 601*time.Second {
		t.Errorf("Kamailio's binding expires in %v, want up to the 600s baresip asked for (throttled to the PBX at most 1800s)", ttl)
	}

	// The digest exchange crossed the SBC: Kamailio challenged a REGISTER
	// and took one with baresip's credentials.
	var plain, authorized int
	for _, r := range k.Requests(t) {
		if r.Method != "REGISTER" || r.Msg == nil {
			continue
		}
		if h := r.Msg.GetHeader("Authorization"); h != nil && strings.Contains(h.Value(), `username="`+user+`"`) {
			authorized++
		} else {
			plain++
		}
	}
	if plain == 0 || authorized == 0 {
		t.Errorf("Kamailio got %d REGISTERs without and %d with baresip's credentials, want a challenge and an authorized retry", plain, authorized)
	}

	// Stop baresip: on SIGTERM it de-registers (or tries to) and quits.
	bs.stop(t, 15*time.Second)
	// Either it de-registered (both ends dropped the binding) or not (both
	// keep it); a de-registration the SBC took must have reached the PBX.
	sbcHas := false
	for _, b := range s.Bindings() {
		if b.Token == binding.Token {
			sbcHas = true
		}
	}
	pbxHas := false
	for _, l := range k.Locations(t) {
		if u, err := baresipParseURI(l.Contact); err == nil && u.User == binding.Token {
			pbxHas = true
		}
	}
	t.Logf("after baresip stopped: SBC binding kept %v, Kamailio binding kept %v", sbcHas, pbxHas)
	if !sbcHas && pbxHas {
		t.Errorf("the SBC dropped the binding but Kamailio still has %s", binding.Token)
	}
}

// baresipRegistered checks once whether the registration is complete; why
// says what is missing, "" when everything is there.
func baresipRegistered(t *testing.T, s *Service, k *sbctest.Kamailio, bs *baresipSBC, aor, user string, corePort int) (ua string, binding registrar.Binding, loc sbctest.Location, why string) {
	t.Helper()
	ua = bs.userAgent()
	if ua == "" {
		return "", binding, loc, "no REGISTER with a User-Agent in baresip's SIP trace"
	}
	found := false
	for _, b := range s.Bindings() {
		if b.AOR != aor {
			continue
		}
		if found {
			return ua, binding, loc, "the SBC has more than one binding for " + aor
		}
		binding, found = b, true
	}
	switch {
	case !found:
		return ua, binding, loc, "the SBC has no binding for " + aor
	case binding.Pending:
		return ua, binding, loc, "the SBC's binding is still pending (challenged)"
	case binding.Flow.Transport != "TLS":
		return ua, binding, loc, fmt.Sprintf("the SBC's binding has flow transport %q, want TLS", binding.Flow.Transport)
	case binding.UserAgent != ua:
		return ua, binding, loc, fmt.Sprintf("the SBC's binding has User-Agent %q, want %q", binding.UserAgent, ua)
	}
	var mine []sbctest.Location
	for _, l := range k.Locations(t) {
		if l.AOR == user {
			mine = append(mine, l)
		}
	}
	if len(mine) != 1 {
		return ua, binding, loc, fmt.Sprintf("Kamailio has %d bindings for %s, want 1: %+v", len(mine), user, mine)
	}
	loc = mine[0]
	u, err := baresipParseURI(loc.Contact)
	if err != nil {
		return ua, binding, loc, fmt.Sprintf("Kamailio's contact %q: %v", loc.Contact, err)
	}
	tr, _ := u.UriParams.Get("transport")
	if u.User != binding.Token || u.Host != "127.0.0.1" || u.Port != corePort || !strings.EqualFold(tr, "tcp") {
		return ua, binding, loc, fmt.Sprintf("Kamailio's contact %q, want sip:%s@127.0.0.1:%d;transport=tcp", loc.Contact, binding.Token, corePort)
	}
	if loc.UserAgent != ua {
		return ua, binding, loc, fmt.Sprintf("Kamailio's binding has User-Agent %q, want %q", loc.UserAgent, ua)
	}
	return ua, binding, loc, ""
}

func baresipParseURI(s string) (sip.Uri, error) {
	var u sip.Uri
	err := sip.ParseUri(s, &u)
	return u, err
}

// startTLSService runs an SBC on loopback with the access realm on TLS
// and the core realm on TCP, Kamailio at pbx its only PBX node. Each edit
// changes the desired state before it is applied (Realms[0] is the access
// realm, Realms[1] the core realm). The SBC's log is shown if the test
// fails.
func startTLSService(t *testing.T, pbx netip.AddrPort, cert tls.Certificate, edit ...func(*Desired)) (s *Service, tlsPort, corePort int) {
	t.Helper()
	cfg := Default()
	cfg.SIPServer.NodeGroups = []NodeGroup{{Name: "OS4K", Nodes: []Node{
		{Name: "kamailio", Priority: 1, Address: pbx.Addr().String(), Transport: TransportTCP, Port: int(pbx.Port())},
	}}}
	cfg.SIPServer.Keepalive = Keepalive{IntervalSeconds: 5, FailureThreshold: 3}
	lo := netip.MustParseAddr("127.0.0.1")
	tlsPort, corePort = freeTCPPort(t), freeTCPPort(t)
	for corePort == tlsPort {
		corePort = freeTCPPort(t)
	}
	log := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("SBC log:\n%s", log.String())
		}
	})
	s = NewService(slog.New(slog.NewTextHandler(log, nil)), nil, nil)
	d := Desired{Config: cfg, Certificate: cert, Realms: []Realm{
		{Name: "access", Role: "access", Bind: lo, Advertise: "127.0.0.1", TLS: tlsPort},
		{Name: "core", Role: "core", Bind: lo, Advertise: "127.0.0.1", TCP: corePort},
	}}
	for _, e := range edit {
		e(&d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	err := s.Apply(ctx, d)
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
	// The TLS listener answers a handshake before baresip starts.
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := &net.Dialer{Timeout: time.Second}
		c, err := tls.DialWithDialer(d, "tcp", "127.0.0.1:"+strconv.Itoa(tlsPort), &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the SBC's TLS listener on port %d: %v", tlsPort, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s, tlsPort, corePort
}

// writeBaresipSBCConfig writes a config directory for a headless baresip
// that only registers: SIP on loopback (UDP, TCP and TLS, ephemeral
// ports), the test certificate as the TLS CA, no audio or UI modules.
//
// baresip 1.0.0 (libre 1.1.0) does not verify the server's certificate
// on its own (there is no sip_verify_server yet); sip_cafile is given
// anyway, so a baresip that does verify accepts the SBC's certificate.
func writeBaresipSBCConfig(t *testing.T, dir, modules, caFile, account string) {
	t.Helper()
	writeBaresipConfigOn(t, dir, netip.MustParseAddr("127.0.0.1"), modules, caFile, account)
}

// writeBaresipConfigOn is writeBaresipSBCConfig for a baresip on the
// loopback address host (SIP and RTP), with caFile left out when empty
// and the extra config lines (modules, audio) added.
func writeBaresipConfigOn(t *testing.T, dir string, host netip.Addr, modules, caFile, account string, extra ...string) {
	t.Helper()
	lines := []string{
		"poll_method epoll",
		"sip_listen " + netip.AddrPortFrom(host, 0).String(),
		"dns_server 127.0.0.1:53", // any lookup baresip makes stays on loopback
		"net_interface " + host.String(),
		"module_path " + modules,
		"module_tmp account.so", // reads the accounts file
	}
	if caFile != "" {
		lines = append(lines, "sip_cafile "+caFile)
	}
	config := strings.Join(append(lines, extra...), "\n") + "\n"
	for name, content := range map[string]string{"config": config, "accounts": account + "\n", "contacts": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// baresipSBC is a running baresip whose output is collected.
type baresipSBC struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	out    syncBuffer
}

func (b *baresipSBC) output() string { return b.out.String() }

// syncBuffer is a bytes.Buffer that a process or a logger may write to
// while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// baresipUserAgentRE finds the User-Agent header of a REGISTER in
// baresip's SIP trace (-s): the messages it sends and receives, raw.
var baresipUserAgentRE = regexp.MustCompile(`(?m)^REGISTER sip:[^\r\n]*\r?\n(?:[^\r\n]+\r?\n)*?User-Agent: *([^\r\n]+)`)

// userAgent is the User-Agent of the first REGISTER baresip's trace
// shows, "" before there is one.
func (b *baresipSBC) userAgent() string {
	m := baresipUserAgentRE.FindStringSubmatch(b.output())
	if m == nil {
		return ""
	}
	return strings.TrimSpace(m[1])
}

// startBaresipSBC runs baresip with the config in dir and its SIP trace
// on. It is killed when the test ends; its output is logged if the test
// failed.
func startBaresipSBC(t *testing.T, bin, dir string) *baresipSBC {
	t.Helper()
	// -t: baresip quits by itself should the test binary die.
	cmd := exec.Command(bin, "-f", dir, "-s", "-t", "120")
	b := &baresipSBC{cmd: cmd, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &b.out, &b.out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting baresip: %v", err)
	}
	go func() {
		_ = cmd.Wait()
		close(b.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-b.exited:
		default:
			_ = cmd.Process.Kill()
			<-b.exited
		}
		if t.Failed() {
			t.Logf("baresip output:\n%s", b.output())
		}
	})
	return b
}

// stop asks baresip to quit (SIGTERM: it de-registers first) and waits
// up to timeout, then kills it.
func (b *baresipSBC) stop(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-b.exited:
		return
	default:
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(timeout):
		t.Logf("baresip did not quit within %v of SIGTERM; killing it", timeout)
		_ = b.cmd.Process.Kill()
		<-b.exited
	}
}
