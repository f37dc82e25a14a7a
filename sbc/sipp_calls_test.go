package sbc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/psigate/psigate/sbc/sbctest"
)

// Call flows a real client rarely produces, played by SIPp on both sides
// of an SBC that runs in the test: a caller on the access realm (UDP) and
// a callee as the PBX, the SBC's one node, on the core realm (TCP). Each
// side's scenario (testdata/sipp/flow-*.xml) checks every message it
// expects, with regular expressions on headers and bodies where the
// content matters; SIPp exits 0 only when every message it waited for
// came and every check held. After each flow the SBC must hold no call
// and no media session.
//
// A callee runs until the test tells it to stop (SIGUSR1, SIPp's
// "finish the calls in progress, then exit"): psigate's keepalive
// OPTIONS reach it at times no scenario can predict, and each is a SIPp
// call of its own, so a call count (-m) cannot end it.

// Media port ranges of the flow tests' SBCs. The tests run in parallel,
// each with an SBC of its own: a port pool skips the pairs another
// holds.
const (
	flowAccessMediaMin, flowAccessMediaMax = 26000, 26999
	flowCoreMediaMin, flowCoreMediaMax     = 27000, 27999
)

const (
	// flowRecvTimeout fails a SIPp call that waits longer than this for
	// its next message: every message of these flows follows the one
	// before within milliseconds.
	flowRecvTimeout = 3 * time.Second
	// flowRunTimeout bounds a whole SIPp run.
	flowRunTimeout = 20 * time.Second
)

// flowRig is an SBC between the flow tests' SIPp peers.
type flowRig struct {
	t   *testing.T
	bin string
	svc *Service
	// access takes the caller's requests over UDP; core the PBX's over
	// TCP.
	access, core netip.AddrPort
	// pbx is the SBC's PBX node: where the callee listens, over TCP.
	pbx netip.AddrPort
	log *flowLog
}

// newFlowRig runs an SBC on loopback whose one PBX node is at a port
// picked for the callee; the callee is started by callee.
func newFlowRig(t *testing.T) *flowRig {
	t.Helper()
	bin := sbctest.FindPeer(t, "sipp", "sip-tester")
	lo := netip.MustParseAddr("127.0.0.1")
	ports := map[int]bool{}
	pick := func() int {
		for {
			if p := sippFreePort(t); !ports[p] {
				ports[p] = true
				return p
			}
		}
	}
	r := &flowRig{t: t, bin: bin, log: &flowLog{},
		access: netip.AddrPortFrom(lo, uint16(pick())),
		core:   netip.AddrPortFrom(lo, uint16(pick())),
		pbx:    netip.AddrPortFrom(lo, uint16(pick())),
	}
	cfg := Default()
	cfg.Calls.OpenToUnregistered = true // SIPp callers do not register
	cfg.SIPServer.NodeGroups = []NodeGroup{{Name: "PBX", Nodes: []Node{
		{Name: "sipp", Priority: 1, Address: "127.0.0.1", Transport: TransportTCP, Port: int(r.pbx.Port())},
	}}}
	// Probes that find nobody before the callee starts must not take
	// the node out of service.
	cfg.SIPServer.Keepalive = Keepalive{IntervalSeconds: 600, FailureThreshold: 10}
	r.svc = NewService(slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug})), nil, nil)
	err := r.svc.Apply(context.Background(), Desired{Config: cfg, Realms: []Realm{
		{Name: "access", Role: "access", Bind: lo, Advertise: "127.0.0.1", UDP: int(r.access.Port()),
			MediaMin: flowAccessMediaMin, MediaMax: flowAccessMediaMax},
		{Name: "core", Role: "core", Bind: lo, Advertise: "127.0.0.1", TCP: int(r.core.Port()),
			MediaMin: flowCoreMediaMin, MediaMax: flowCoreMediaMax},
	}})
	if err != nil {
		t.Fatal(err)
	}
	audit.enroll(t, r.svc, r.pbx.String())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.svc.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("--- SBC log (end):\n%s", r.log.tail(60))
		}
	})
	return r
}

// flowPeer is one SIPp of a flow, with its messages traced.
type flowPeer struct {
	*sippProc
	role     string // "caller", "callee", "client", "PBX peer"
	scenario string
	messages string // the -trace_msg file
}

// run starts SIPp with a scenario of testdata/sipp and the options every
// flow peer shares; remote is the address it sends to ("" for a
// callee).
func (r *flowRig) run(role, scenario, remote, transport string, extra ...string) *flowPeer {
	r.t.Helper()
	sf, err := filepath.Abs(filepath.Join("testdata/sipp", scenario))
	if err != nil {
		r.t.Fatal(err)
	}
	messages := filepath.Join(r.t.TempDir(), "messages.log")
	var args []string
	if remote != "" {
		args = append(args, remote)
	}
	args = append(args,
		"-sf", sf,
		"-s", "2002",
		"-t", transport,
		"-i", "127.0.0.1",
		"-recv_timeout", strconv.FormatInt(flowRecvTimeout.Milliseconds(), 10),
		"-timeout", strconv.Itoa(int(flowRunTimeout/time.Second))+"s",
		"-timeout_error",
		"-trace_msg", "-message_file", messages,
	)
	if transport == "t1" {
		// Below the open file limit (SIPp's default 50000 may not be).
		args = append(args, "-max_socket", "64")
	}
	p := &flowPeer{sippProc: runSIPp(r.t, r.bin, append(args, extra...), flowRunTimeout),
		role: role, scenario: scenario, messages: messages}
	r.t.Cleanup(func() {
		if r.t.Failed() {
			r.t.Logf("--- %s %s:\n%s%s", p.role, p.scenario, p.output(), p.trace(120))
		}
	})
	return p
}

// callee starts SIPp as the PBX at the node's address, running scenario
// until stopped, and waits until it answers OPTIONS.
func (r *flowRig) callee(scenario string) *flowPeer {
	r.t.Helper()
	p := r.run("callee", scenario, "", "t1", "-p", strconv.Itoa(int(r.pbx.Port())))
	sbctest.WaitOptions(r.t, "tcp", r.pbx, 10*time.Second)
	return p
}

// caller runs SIPp's scenario once from the access realm's side (UDP).
func (r *flowRig) caller(scenario string) *flowPeer {
	r.t.Helper()
	return r.once("caller", scenario, r.access, "u1")
}

// once runs SIPp's scenario once (one SIPp call) against to.
func (r *flowRig) once(role, scenario string, to netip.AddrPort, transport string) *flowPeer {
	r.t.Helper()
	return r.run(role, scenario, to.String(), transport, "-p", strconv.Itoa(sippFreePort(r.t)), "-m", "1")
}

// passed waits for SIPp to exit and reports whether it exited 0: every
// message its scenario waits for arrived and every check held.
func (p *flowPeer) passed(t *testing.T, within time.Duration) bool {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		p.kill()
		t.Errorf("the %s (%s) did not finish within %v", p.role, p.scenario, within)
		return false
	}
	var exit *exec.ExitError
	switch {
	case p.err == nil:
		return true
	case errors.As(p.err, &exit):
		t.Errorf("the %s (%s) failed: SIPp exit status %d", p.role, p.scenario, exit.ExitCode())
	default:
		t.Errorf("the %s (%s): %v", p.role, p.scenario, p.err)
	}
	return false
}

// stop tells SIPp to finish the calls it has and exit.
func (p *flowPeer) stop() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Signal(syscall.SIGUSR1) // our own child, by its pid
	}
}

// trace is the end of the messages SIPp sent and received.
func (p *flowPeer) trace(lines int) string {
	data, err := os.ReadFile(p.messages)
	if err != nil {
		return fmt.Sprintf("(no message trace: %v)\n", err)
	}
	l := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return "--- messages (end):\n" + strings.Join(l, "\n") + "\n"
}

// check waits for the caller, then stops the callee and waits for it;
// both must pass. Then the SBC must drop the call and its media.
func (r *flowRig) check(caller, callee *flowPeer) {
	r.t.Helper()
	caller.passed(r.t, flowRunTimeout+5*time.Second)
	callee.stop()
	// A callee still in a call ends it within its receive timeout.
	callee.passed(r.t, flowRecvTimeout+5*time.Second)
	r.idle()
}

// idle waits until the SBC holds no call and no media session.
func (r *flowRig) idle() {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		calls, sessions := r.svc.calls.Load().Active(), r.svc.engine.Load().Active()
		if calls == 0 && sessions == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.t.Errorf("after the flow the SBC holds %d calls and %d media sessions, want none", calls, sessions)
			return
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

// flowLog keeps the SBC's log for a failed test.
type flowLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *flowLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *flowLog) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.SplitAfter(l.buf.String(), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "")
}

// TestSIPpLateOffer: a caller's INVITE without SDP reaches the PBX
// without SDP; the PBX's offer in its 200 reaches the caller; the
// caller's answer in its ACK reaches the PBX in the PBX's ACK; the BYE
// ends both dialogs.
func TestSIPpLateOffer(t *testing.T) {
	t.Parallel()
	r := newFlowRig(t)
	callee := r.callee("flow-late-offer-uas.xml")
	r.check(r.caller("flow-late-offer-uac.xml"), callee)
}

// TestSIPpCancelCrossingThe200: a caller's CANCEL and the callee's 200
// cross (RFC 3261 sections 9.1 and 9.2). On the caller's leg, a CANCEL
// arriving after psigate sent the 200 changes nothing: the caller has a
// call it ACKs and hangs up, the CANCEL gets 200 or 481, and no CANCEL
// reaches the PBX. On the PBX's leg, the PBX's 200 arriving after
// psigate passed the CANCEL on: the caller gets 487, and psigate ACKs
// the PBX's 200 and hangs up with BYE. Never a half-open dialog on
// either side.
func TestSIPpCancelCrossingThe200(t *testing.T) {
	t.Parallel()
	t.Run("caller leg", func(t *testing.T) {
		t.Parallel()
		r := newFlowRig(t)
		callee := r.callee("flow-answer-uas.xml")
		r.check(r.caller("flow-cancel-after-200-uac.xml"), callee)
	})
	t.Run("PBX leg", func(t *testing.T) {
		t.Parallel()
		r := newFlowRig(t)
		callee := r.callee("flow-cancel-crossed-uas.xml")
		r.check(r.caller("flow-cancel-before-200-uac.xml"), callee)
	})
}

// TestSIPpReinviteGlare: the caller's re-INVITE (hold) and the PBX's
// cross at psigate (RFC 3261 section 14.1): psigate refuses the PBX's
// with 491 while the hold is pending, relays the PBX's 491 for the hold
// to the caller, and the call stays usable: the PBX's retry and the
// caller's retried hold go through with their answers, and the BYE ends
// both dialogs.
func TestSIPpReinviteGlare(t *testing.T) {
	t.Parallel()
	r := newFlowRig(t)
	callee := r.callee("flow-glare-uas.xml")
	r.check(r.caller("flow-glare-uac.xml"), callee)
}

// TestSIPpMalformedSDP: INVITEs whose offer is not SDP one can read are
// refused with 488 (or 400) by psigate itself; nothing reaches the PBX
// and nothing stays open.
func TestSIPpMalformedSDP(t *testing.T) {
	t.Parallel()
	r := newFlowRig(t)
	callee := r.callee("flow-idle-uas.xml")
	r.check(r.caller("flow-bad-sdp-uac.xml"), callee)
}

// TestSIPpOutOfDialog: a BYE for no dialog, or without a To tag, gets
// 481 on the access realm (from a client, over UDP) and on the core
// realm (from the PBX, over TCP); none is passed on.
func TestSIPpOutOfDialog(t *testing.T) {
	t.Parallel()
	strays(t, "flow-stray-uac.xml")
}

// TestSIPpStrayCancel: a CANCEL that matches no INVITE transaction gets
// 481 (RFC 3261 section 9.2) on either realm, and is not passed on.
func TestSIPpStrayCancel(t *testing.T) {
	t.Parallel()
	strays(t, "flow-stray-cancel-uac.xml")
}

// strays sends the requests of scenario to both realms, with a PBX that
// must hear none of them.
func strays(t *testing.T, scenario string) {
	r := newFlowRig(t)
	callee := r.callee("flow-idle-uas.xml")
	access := r.once("client", scenario, r.access, "u1")
	core := r.once("PBX peer", scenario, r.core, "t1")
	access.passed(t, flowRunTimeout+5*time.Second)
	r.check(core, callee)
}

// TestSIPp100rel: reliable provisional responses (RFC 3262) hop by hop
// on both legs. psigate offers 100rel to the PBX itself and PRACKs the
// PBX's reliable 183 with the right RAck and CSeq; a caller that requires
// 100rel gets that 183 reliably with psigate's own RSeq, and the 200 only
// after its PRACK; the call then goes on with ACK and BYE in CSeq order.
func TestSIPp100rel(t *testing.T) {
	t.Parallel()
	r := newFlowRig(t)
	callee := r.callee("flow-100rel-uas.xml")
	r.check(r.caller("flow-100rel-uac.xml"), callee)
}
