package sbc

// The topology-hiding audit: every SIP message any SBC of this package's
// tests writes or reads is traced (sipgo's tracer sees every transport
// write and read in the process). Each SBC a test starts is enrolled with
// its access and core listeners. After the whole run, the identifiers of
// each side (Call-IDs, tags, Via and Contact addresses, the peers'
// addresses and their SDP media ports) are collected, and no message the
// SBC wrote on one side may carry one of the other side's.

import (
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestMain(m *testing.M) {
	sip.SIPDebug = true
	sip.SIPDebugTracer(audit)
	code := m.Run()
	if code == 0 {
		if leaks := audit.leaks(); len(leaks) > 0 {
			fmt.Fprintf(os.Stderr, "topology hiding audit: %d leaks\n%s\n", len(leaks), strings.Join(leaks, "\n"))
			code = 1
		} else {
			fmt.Fprintf(os.Stderr, "topology hiding audit: %d SBCs, %d messages, no leaks\n", audit.sbcs(), audit.count())
		}
	}
	os.Exit(code)
}

// auditMsg is one message on an SBC's socket.
type auditMsg struct {
	write bool // the SBC wrote it (else read it)
	peer  string
	raw   string
}

// auditSBC is one SBC's messages by side.
type auditSBC struct {
	name         string
	access, core map[string]bool // listener addresses
	pbx          map[string]bool // the PBX nodes' addresses
	done         bool            // its test ended: its ports may serve others now
	msgs         [2][]auditMsg   // [0] access, [1] core
}

type auditLog struct {
	mu   sync.Mutex
	list []*auditSBC
	// allowed are strings that may appear on both sides (the URIs of
	// From and To cross by design, for example).
}

var audit = &auditLog{}

// enroll adds an SBC to the audit: the listeners of its realms and the
// PBX addresses it talks to.
func (a *auditLog) enroll(t testing.TB, s *Service, pbx ...string) {
	t.Helper()
	r := s.relay.Load()
	x := &auditSBC{name: t.Name(), access: map[string]bool{}, core: map[string]bool{}, pbx: map[string]bool{}}
	for name, set := range map[string]map[string]bool{r.AccessRealm: x.access, r.CoreRealm: x.core} {
		realm := s.stack.Realm(name)
		if realm == nil {
			t.Fatalf("audit: no realm %q", name)
		}
		for _, l := range realm.Listeners() {
			set[l.Addr.String()] = true
		}
	}
	for _, p := range pbx {
		x.pbx[p] = true
	}
	a.mu.Lock()
	a.list = append(a.list, x)
	a.mu.Unlock()
	t.Cleanup(func() {
		a.mu.Lock()
		x.done = true
		a.mu.Unlock()
	})
}

func (a *auditLog) trace(write bool, laddr, raddr string, msg []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, x := range a.list {
		if x.done {
			continue
		}
		side := -1
		switch {
		case x.access[laddr]:
			side = 0
		case x.core[laddr] || x.pbx[raddr]:
			side = 1
		}
		if side >= 0 {
			x.msgs[side] = append(x.msgs[side], auditMsg{write: write, peer: raddr, raw: string(msg)})
			return
		}
	}
}

func (a *auditLog) SIPTraceRead(transport, laddr, raddr string, msg []byte) {
	a.trace(false, laddr, raddr, msg)
}

func (a *auditLog) SIPTraceWrite(transport, laddr, raddr string, msg []byte) {
	a.trace(true, laddr, raddr, msg)
}

func (a *auditLog) sbcs() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.list)
}

func (a *auditLog) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, x := range a.list {
		n += len(x.msgs[0]) + len(x.msgs[1])
	}
	return n
}

// identifiers are a side's: Call-IDs, tags, the addresses in Via,
// Contact and Record-Route, the peers' addresses, and the media ports of
// their SDP. psigate's own listeners on the side are included: the other
// side must not learn them either.
func (x *auditSBC) identifiers(side int) map[string]string {
	ids := map[string]string{}
	if side == 1 {
		// The core side's addresses: the PBX's and psigate's own there.
		// (psigate's access address is no secret from the PBX: a
		// client's REGISTER names it in its Request-URI and digest uri,
		// which cross unchanged.)
		for p := range x.pbx {
			ids[p] = "PBX address"
		}
		for l := range x.core {
			ids[l] = "core listener"
		}
	}
	for _, m := range x.msgs[side] {
		if !m.write {
			ids[m.peer] = "peer address"
		}
		msg, err := sip.ParseMessage([]byte(m.raw))
		if err != nil {
			continue
		}
		if h := msg.CallID(); h != nil && len(h.Value()) >= 6 {
			ids[h.Value()] = "Call-ID"
		}
		for _, h := range []sip.Header{msg.From(), msg.To()} {
			if h == nil {
				continue
			}
			var tag string
			switch h := h.(type) {
			case *sip.FromHeader:
				tag, _ = h.Params.Get("tag")
			case *sip.ToHeader:
				tag, _ = h.Params.Get("tag")
			}
			if len(tag) >= 6 {
				ids[tag] = "tag"
			}
		}
		if m.write {
			continue // what psigate writes on a side is not the side's own
		}
		names := []string{"Contact", "Record-Route"}
		if _, ok := msg.(*sip.Request); ok {
			names = append(names, "Via") // a response's Via is psigate's own
		}
		for _, name := range names {
			for _, h := range msg.GetHeaders(name) {
				if hp := sentBy(h); hp != "" {
					ids[hp] = name
				}
			}
		}
		for _, line := range strings.Split(string(msg.Body()), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && strings.HasPrefix(f[0], "m=") && f[1] != "0" && f[1] != "9" {
				ids["m="+strings.TrimPrefix(f[0], "m=")+" "+f[1]+" "] = "SDP media port"
			}
		}
	}
	return ids
}

// sentBy is the host:port a Via, Contact or Record-Route names; ""
// without a port (a bare host, here always a loopback address, says
// nothing).
func sentBy(h sip.Header) string {
	var host string
	var port int
	switch h := h.(type) {
	case *sip.ViaHeader:
		host, port = h.Host, h.Port
	case *sip.ContactHeader:
		host, port = h.Address.Host, h.Address.Port
	case *sip.RecordRouteHeader:
		host, port = h.Address.Host, h.Address.Port
	default:
		var u sip.Uri
		params := sip.NewParams()
		if _, err := sip.ParseAddressValue(h.Value(), &u, &params); err != nil {
			return ""
		}
		host, port = u.Host, u.Port
	}
	if port == 0 {
		return ""
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// leaks lists every identifier of one side in a message the SBC wrote on
// the other.
func (a *auditLog) leaks() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, x := range a.list {
		for side := range 2 {
			ids := x.identifiers(1 - side)
			for _, m := range x.msgs[side] {
				if !m.write {
					continue
				}
				for id, what := range ids {
					if strings.Contains(m.raw, id) {
						dir := [2]string{"access", "core"}[side]
						out = append(out, fmt.Sprintf("%s: the %s side got the other side's %s %q:\n%s", x.name, dir, what, id, m.raw))
					}
				}
			}
		}
	}
	sort.Strings(out)
	return out
}
