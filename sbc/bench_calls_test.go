package sbc

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/psigate/psigate/sbc/sbctest"
)

// Call benchmarks: calls a second through the SBC. SIPp's caller
// (testdata/sipp/call-uac.xml) sends INVITEs with an SDP offer over UDP to
// the access realm; the SBC relays each call to SIPp's callee
// (call-uas.xml) behind the core realm, over UDP or over TCP. A call is
// INVITE, 100, 180, 200 with the answer, ACK, BYE and its 200 on both
// legs, without media. The references, measured in the same run on the
// same machine: the same caller and callee around Kamailio as a stateful
// proxy with topology hiding (sbctest.StartKamailioProxy), and the caller
// straight to the callee, which shows what the load generator itself
// carries. Run them with -benchtime 1x (make bench-calls).
//
// Each benchmark finds its knee: the highest offered rate at which fewer
// than 0.1% of the calls fail and the calls start at the offered rate
// (the system keeps up; see passed). It steps the rate up (callRates)
// until a step misses, then halves the gap to the last rate carried
// twice. Every step is one SIPp
// run bounded in calls (-m, callStep of calls) and time (-timeout). A
// step that missed leaves calls, retransmissions and full queues
// behind, so the next step runs against a fresh system and callee; a
// rate misses when it missed twice.
//
// The SBC runs in the test process; SIPp and Kamailio are processes of
// their own, and all share the machine's CPUs. Each step writes a line to
// standard error (the testing package keeps ten lines of a benchmark's
// log): calls, failures by SIPp's reason, retransmissions, UDP datagrams
// dropped for full receive buffers (per socket), and the CPU time of the
// system, the callee and the caller. Each knee is reported with the
// system's CPU time per call at that step (calls/s, cpu-ms/call), and
// with the highest rate carried with retransmissions for under 1% of
// the calls (clean-calls/s): over UDP, retransmissions let calls
// succeed through a system that drops what it cannot read in time.

const (
	// callStep is how long each step offers its rate.
	callStep = 4 * time.Second
	// callWarmCalls are placed at callWarmRate on a fresh system before
	// it is measured: its connections, code paths and pools are warm.
	callWarmCalls = 200
	callWarmRate  = 100
)

// callRates are the offered rates, calls a second, in the order tried.
func callRates() []int {
	return []int{100, 200, 400, 600, 800, 1000, 1200, 1600, 2000, 2400, 3200, 4000, 5000, 6000}
}

// BenchmarkCalls_SBC_UDP: the SBC's knee with the callee over UDP.
func BenchmarkCalls_SBC_UDP(b *testing.B) { benchSBCCalls(b, TransportUDP) }

// BenchmarkCalls_SBC_TCP: the SBC's knee with the callee over TCP, one
// connection from the core realm.
func BenchmarkCalls_SBC_TCP(b *testing.B) { benchSBCCalls(b, TransportTCP) }

// BenchmarkCalls_SBC_UDP_Reference: Kamailio's knee as a stateful proxy
// with topology hiding, the callee over UDP.
func BenchmarkCalls_SBC_UDP_Reference(b *testing.B) { benchProxyCalls(b, "udp") }

// BenchmarkCalls_SBC_TCP_Reference: the same with the callee over TCP.
func BenchmarkCalls_SBC_TCP_Reference(b *testing.B) { benchProxyCalls(b, "tcp") }

// BenchmarkCalls_Direct: SIPp's caller straight to its callee over UDP,
// nothing in between: the rate the load generator carries on this
// machine. A knee at the highest rate tried means at least that.
func BenchmarkCalls_Direct(b *testing.B) {
	bin := sbctest.FindPeer(b, "sipp", "sip-tester")
	knee, clean := callKnee(b, bin, func() *callSystem {
		callee := startCallee(b, bin, "udp")
		return &callSystem{
			name: "callee", addr: callee.addr, callee: callee,
			ports: map[string]uint16{"callee": callee.addr.Port()},
			logs:  callee.proc.output,
			stop:  callee.proc.kill,
		}
	})
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(knee.Rate), "calls/s")
	b.ReportMetric(float64(clean.Rate), "clean-calls/s")
}

// benchSBCCalls reports the SBC's knee with the callee over transport,
// and the SBC's CPU time per call at that rate.
func benchSBCCalls(b *testing.B, transport Transport) {
	bin := sbctest.FindPeer(b, "sipp", "sip-tester")
	knee, clean := callKnee(b, bin, func() *callSystem {
		callee := startCallee(b, bin, string(transport))
		sbc := startCallSBC(b, callee.addr, transport)
		return &callSystem{
			name: "SBC", addr: sbc.access, cpu: processCPU, callee: callee,
			ports:  map[string]uint16{"SBC access": sbc.access.Port(), "SBC core": sbc.core, "callee": callee.addr.Port()},
			settle: func() error { return waitNoCalls(sbc.svc, 10*time.Second) },
			logs:   func() string { return callee.proc.output() + sbc.logTail() },
			stop:   func() { sbc.stop(); callee.proc.kill() },
		}
	})
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(knee.Rate), "calls/s")
	b.ReportMetric(float64(clean.Rate), "clean-calls/s")
	b.ReportMetric(knee.cpuPerCall(), "cpu-ms/call")
}

// benchProxyCalls reports Kamailio's knee with the callee over
// transport, and Kamailio's CPU time per call at that rate.
func benchProxyCalls(b *testing.B, transport string) {
	bin := sbctest.FindPeer(b, "sipp", "sip-tester")
	knee, clean := callKnee(b, bin, func() *callSystem {
		callee := startCallee(b, bin, transport)
		k := sbctest.StartKamailioProxy(b, sbctest.KamailioProxyOptions{Next: callee.addr, NextTransport: transport})
		return &callSystem{
			name: "Kamailio", addr: k.Addr, cpu: k.CPU, callee: callee,
			ports: map[string]uint16{"Kamailio": k.Addr.Port(), "callee": callee.addr.Port()},
			logs: func() string {
				return callee.proc.output() + "--- Kamailio log (end):\n" + k.LogTail(40)
			},
			stop: func() { k.Stop(); callee.proc.kill() },
		}
	})
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(knee.Rate), "calls/s")
	b.ReportMetric(float64(clean.Rate), "clean-calls/s")
	b.ReportMetric(knee.cpuPerCall(), "cpu-ms/call")
}

// callSystem is a system under test with its callee, as started for a
// knee search.
type callSystem struct {
	name string
	// addr takes the caller's INVITEs over UDP.
	addr netip.AddrPort
	// cpu is the processor time the system has used so far; nil for the
	// callee's.
	cpu    func() time.Duration
	callee *sippCallee
	// ports are the UDP ports whose receive drops each step reports,
	// by name: the system's own and the callee's.
	ports map[string]uint16
	// settle, if set, waits until the calls of a step are all gone.
	settle func() error
	// logs is the end of the system's and the callee's logs, for a
	// failed benchmark.
	logs func() string
	// stop ends the system and its callee.
	stop func()
}

// systemCPU is the system's processor time so far.
func (s *callSystem) systemCPU() time.Duration {
	if s.cpu == nil {
		return s.callee.cpu()
	}
	return s.cpu()
}

// callStepResult is one SIPp run at one offered rate.
type callStepResult struct {
	Rate, Calls int // offered calls a second, offered calls
	Stats       sippStats
	// Failures are SIPp's non-zero failure counters by reason.
	Failures string
	// Started is how long the caller took to start all calls (to within
	// a second), 0 if it did not.
	Started time.Duration
	// CPU is the system's processor time during the step; CalleeCPU the
	// callee's.
	CPU, CalleeCPU time.Duration
	// Drops are the datagrams the kernel dropped during the step because
	// a UDP socket's receive buffer was full: in all, then per socket.
	Drops string
	// Caller is the end of the caller's output and error log when calls
	// failed, for a failed benchmark.
	Caller string
}

// passed: every call ended, under 0.1% failed, and the calls were
// started at the offered rate. The caller keeps at most a second of
// calls open (-l): a system that falls behind holds it back, and the
// calls take longer to start than callStep (the statistics row that
// shows them all started comes a second later at most).
func (r callStepResult) passed() bool {
	st := r.Stats
	return st.Successful+st.Failed == r.Calls && st.Failed*1000 < r.Calls &&
		r.Started > 0 && r.Started <= callStep+1500*time.Millisecond
}

// clean: the step passed with retransmissions for under 1% of its
// calls. Over UDP, retransmissions hide a system that drops requests
// because it falls behind; a rate carried cleanly needed none of them.
func (r callStepResult) clean() bool {
	return r.passed() && r.Stats.Retransmissions*100 < r.Calls
}

// cpuPerCall is the system's CPU milliseconds per successful call.
func (r callStepResult) cpuPerCall() float64 {
	if r.Stats.Successful == 0 {
		return 0
	}
	return float64(r.CPU) / float64(time.Millisecond) / float64(r.Stats.Successful)
}

// callKnee finds the knee of the systems start makes, starting one for
// the search and a fresh one after each step that missed. It fails the
// benchmark, with SIPp's and the system's logs, when a warm-up or the
// lowest rate does not pass.
func callKnee(b *testing.B, bin string, start func() *callSystem) (best, clean callStepResult) {
	var sys *callSystem
	name := ""
	// try runs a step at rate, and once more on a fresh system if it
	// missed: the machine is shared, and one stall of another program
	// can fail a few calls of a step.
	try := func(rate int) bool {
		for attempt := 1; attempt <= 2; attempt++ {
			if sys == nil {
				sys = warmUp(b, bin, start)
				name = sys.name
			}
			r := runCallStep(b, bin, sys, rate, rate*int(callStep/time.Second))
			if r.passed() {
				if r.Rate > best.Rate {
					best = r
				}
				if r.clean() && r.Rate > clean.Rate {
					clean = r
				}
				return true
			}
			if rate == callRates()[0] && attempt == 2 {
				fatalf(b, r.Caller+sys.logs(), "%s carries not even %d calls a second: %d of %d calls failed%s",
					sys.name, rate, r.Stats.Failed, r.Calls, r.Failures)
			}
			sys.stop()
			sys = nil
		}
		return false
	}
	failed := 0
	for _, rate := range callRates() {
		if !try(rate) {
			failed = rate
			break
		}
	}
	for range 2 {
		if failed == 0 || failed-best.Rate <= 100 {
			break
		}
		if mid := (best.Rate + failed) / 2 / 50 * 50; !try(mid) {
			failed = mid
		}
	}
	if failed == 0 {
		b.Logf("knee: %s carried every rate tried, up to %d calls a second", name, best.Rate)
	} else {
		b.Logf("knee: %s carries %d calls a second, not %d", name, best.Rate, failed)
	}
	b.Logf("at %d calls/s: %d calls, %d retransmissions, UDP drops %s; CPU %.3f ms/call", best.Rate, best.Calls, best.Stats.Retransmissions, best.Drops, best.cpuPerCall())
	b.Logf("without retransmissions (under 1%% of calls): %d calls a second", clean.Rate)
	return best, clean
}

// warmUp starts a system and places callWarmCalls through it.
func warmUp(b *testing.B, bin string, start func() *callSystem) *callSystem {
	sys := start()
	warm := runCallStep(b, bin, sys, callWarmRate, callWarmCalls)
	if warm.Stats.Successful == 0 || !warm.passed() {
		fatalf(b, warm.Caller+sys.logs(), "warm-up: %s: %d of %d calls succeeded, %d failed%s",
			sys.name, warm.Stats.Successful, warm.Calls, warm.Stats.Failed, warm.Failures)
	}
	return sys
}

// runCallStep runs the caller at rate for calls calls against sys, and
// waits for sys to settle after it.
func runCallStep(b *testing.B, bin string, sys *callSystem, rate, calls int) callStepResult {
	b.Helper()
	cpu0, callee0 := sys.systemCPU(), sys.callee.cpu()
	drops0, ports0 := udpDrops()
	p := startCaller(b, bin, callerRun{
		Target: sys.addr, Rate: rate, Calls: calls,
		Timeout: 2*time.Duration(calls/rate)*time.Second + 15*time.Second,
	})
	st, err := p.finish()
	if err != nil {
		fatalf(b, p.output(), "sipp at %d calls a second: %v", rate, err)
	}
	r := callStepResult{Rate: rate, Calls: calls, Stats: st, Failures: p.failures(),
		CPU: sys.systemCPU() - cpu0, CalleeCPU: sys.callee.cpu() - callee0}
	r.Started, _ = p.created(calls)
	if st.Failed > 0 {
		r.Caller = p.output()
	}
	drops1, ports1 := udpDrops()
	var per []string
	rest := drops1 - drops0
	for _, name := range slices.Sorted(maps.Keys(sys.ports)) {
		port := sys.ports[name]
		n := ports1[port] - ports0[port]
		per = append(per, fmt.Sprintf("%s %d", name, n))
		rest -= min(n, rest)
	}
	// The caller's socket is closed by now: its drops are among the rest.
	r.Drops = fmt.Sprintf("%d (%s, caller and others %d)", drops1-drops0, strings.Join(per, ", "), rest)
	cpu := fmt.Sprintf("%s %v (%.3f ms/call)", sys.name, r.CPU.Round(time.Millisecond), r.cpuPerCall())
	if sys.cpu != nil {
		cpu += fmt.Sprintf(", callee %v", r.CalleeCPU.Round(time.Millisecond))
	}
	progress("%s at %d calls/s: %d of %d calls succeeded, %d failed%s, %d retransmissions; all started after %v, ended after %v; UDP drops %s; CPU %s, caller %v",
		sys.name, rate, st.Successful, calls, st.Failed, r.Failures, st.Retransmissions, r.Started.Round(time.Millisecond), st.Elapsed.Round(time.Millisecond),
		r.Drops, cpu, st.CPU.Round(time.Millisecond))
	if sys.settle != nil {
		if err := sys.settle(); err != nil {
			progress("%s after %d calls/s: %v", sys.name, rate, err)
		}
	}
	return r
}

// progress writes a line of a knee search to standard error: the
// testing package keeps only ten lines of a benchmark's log.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "calls: "+format+"\n", args...)
}

// fatalf writes details (logs) to standard error, where they are not
// cut short, and fails the benchmark.
func fatalf(b *testing.B, details, format string, args ...any) {
	b.Helper()
	fmt.Fprintf(os.Stderr, "calls: %s\n%s\n", fmt.Sprintf(format, args...), details)
	b.Fatalf(format+" (logs on standard error)", args...)
}

// Memory per call: memCalls calls held open at once, memHold each, placed
// at memRate a second. memHold stays below the media's initial
// inactivity timeout (30 s), after which the SBC hangs up calls without
// media.
const (
	memCalls = 2000
	memRate  = 200
	memHold  = 20 * time.Second
)

// BenchmarkCalls_Memory_Per_Call: what one established call costs the
// SBC in memory. SIPp places memCalls calls through the SBC to the callee
// over TCP and holds each for memHold after its ACK; once all are
// established at once, the test process's HeapInuse+StackInuse (after a
// GC) and its resident memory are compared with before, per call
// (kB, kB-rss, goroutines). kB-ended is HeapInuse+StackInuse per call
// again right after every call has ended: what ended calls still hold,
// such as transactions that wait out their timers (up to 64*T1, 32 s,
// over UDP, RFC 3261 section 17 and RFC 6026).
//
// What it counts: both dialogs and their transactions in sipgo, the
// call's state in the B2BUA, the media session with its two port pairs
// (four UDP sockets, their relay goroutines and buffers), and whatever
// else the SBC keeps per call (timers, Go's heap fragmentation). What it
// leaves out: kernel socket buffers; media, as none flows.
func BenchmarkCalls_Memory_Per_Call(b *testing.B) {
	bin := sbctest.FindPeer(b, "sipp", "sip-tester")
	callee := startCallee(b, bin, "tcp")
	sbc := startCallSBC(b, callee.addr, TransportTCP)
	logs := func(p *sippProc) string { return p.output() + callee.proc.output() + sbc.logTail() }

	warm := startCaller(b, bin, callerRun{Target: sbc.access, Rate: callWarmRate, Calls: callWarmCalls, Timeout: 30 * time.Second})
	if st, err := warm.finish(); err != nil || st.Successful != callWarmCalls {
		fatalf(b, logs(warm), "warm-up: %d of %d calls succeeded (%v)%s", st.Successful, callWarmCalls, err, warm.failures())
	}
	if err := waitNoCalls(sbc.svc, 10*time.Second); err != nil {
		b.Fatal(err)
	}
	before, rss0 := memNow(), residentBytes()

	b.ResetTimer()
	p := startCaller(b, bin, callerRun{
		Target: sbc.access, Rate: memRate, Calls: memCalls, Limit: memCalls, Hold: memHold,
		Timeout: memHold + 2*memCalls/memRate*time.Second + 30*time.Second,
	})
	deadline := time.Now().Add(memHold)
	for len(sbc.svc.Calls()) < memCalls {
		select {
		case <-p.done:
			fatalf(b, logs(p), "sipp ended with %d calls established", len(sbc.svc.Calls()))
		default:
		}
		if time.Now().After(deadline) {
			fatalf(b, logs(p), "%d of %d calls established after %v", len(sbc.svc.Calls()), memCalls, memHold)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	after, rss1 := memNow(), residentBytes()
	if st, err := p.finish(); err != nil || st.Successful != memCalls {
		progress("%s", logs(p))
		b.Errorf("sipp: %d of %d calls succeeded, %d failed (%v)%s (logs on standard error)", st.Successful, memCalls, st.Failed, err, p.failures())
	}
	if err := waitNoCalls(sbc.svc, 10*time.Second); err != nil {
		b.Error(err)
	}
	ended := memNow()
	b.StopTimer()

	n := float64(memCalls)
	perCall := func(m memFigures) float64 {
		return (float64(m.heapInuse+m.stackInuse) - float64(before.heapInuse+before.stackInuse)) / n
	}
	rss := (float64(rss1) - float64(rss0)) / n
	goroutines := float64(after.goroutines-before.goroutines) / n
	b.Logf("per call: heap in use %.0f B (live objects %.0f B), stacks %.0f B, goroutines %.2f, resident %.0f B",
		(float64(after.heapInuse)-float64(before.heapInuse))/n, (float64(after.heapAlloc)-float64(before.heapAlloc))/n,
		(float64(after.stackInuse)-float64(before.stackInuse))/n, goroutines, rss)
	b.Logf("per call right after all ended: heap and stacks %.0f B (live objects %.0f B)", perCall(ended), (float64(ended.heapAlloc)-float64(before.heapAlloc))/n)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(perCall(after)/1024, "kB")
	b.ReportMetric(rss/1024, "kB-rss")
	b.ReportMetric(goroutines, "goroutines")
	b.ReportMetric(perCall(ended)/1024, "kB-ended")
}
