package sbc

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psigate/psigate/sbc/b2bua"
)

// Media benchmarks: concurrent calls with media through the SBC, stepped
// up until packets are lost, and memory per call with media. Run them
// with -benchtime 1x.
//
// SIPp's caller (testdata/sipp/media-uac.xml) calls over UDP into the
// access realm and plays an A-law capture twice per call, 33 packets a
// second, from its media socket to the SBC's access media port. The SBC
// relays the call over UDP to SIPp's callee (media-uas.xml) behind the
// core realm, run with -rtp_echo: one socket that sends every packet
// back. So each packet crosses the SBC twice: caller -> access leg ->
// core leg -> echo -> core leg -> access leg -> caller. The echo socket
// gets a wide receive buffer and the callee a higher priority, so that
// the load generator is not the first to drop packets (startMediaCallee).
// Both sides use plain RTP: the caller's User-Agent maps to no Zoom
// profile, so it gets the default profile, as does the core side.
//
// A step places N calls at once (-l N, -m N), set up within mediaSetup,
// each playing its media then staying quiet for mediaTail before the
// BYE: the N calls carry media together for some ten seconds. The SBC's
// call records (OnCallEnd) give each call's final relay counters, which
// are compared with what the caller played: a packet is lost when it
// never came back out of the access leg towards the caller, wherever it
// was dropped. Each step logs where they went missing: on the way to the
// SBC's access sockets, in the SBC, on the way through the callee and
// back to the SBC's core sockets (with what the kernel dropped for the
// callee's full echo socket), or in the SBC on the way back. A step
// passes when every call succeeded and carried media and under
// mediaLossLimit of the packets were lost; the knee is the highest N
// that passes. The relay's own loss figure (Lost, from sequence numbers)
// is not used: the second play repeats the capture's sequence numbers.
//
// The reference is SIPp's caller straight to its callee, nothing in
// between, measured in the same run: the media the load generator itself
// carries on this machine. Its loss is what the callee's echo socket
// dropped (the caller never reads what comes back); a reference knee at
// the highest step means at least that.
//
// The SBC runs in this process; SIPp's caller and callee are processes of
// their own, and all share the machine's CPUs: each step logs who used
// how much. Each step writes its line to standard error (the testing
// package keeps ten lines of a benchmark's log).

const (
	mediaCallerScenario = "testdata/sipp/media-uac.xml"
	mediaCalleeScenario = "testdata/sipp/media-uas.xml"
	// mediaCapture is the capture media-uac.xml plays, mediaPlays times
	// per call, mediaPlayGap apart (Debian's sip-tester ships it).
	mediaCapture = "/usr/share/sip-tester/g711a.pcap"
	mediaPlays   = 2
	mediaPlayGap = 7100 * time.Millisecond
	// mediaTail is the quiet time from the end of a call's media to its
	// BYE, for the last packets to come back.
	mediaTail = time.Second
	// mediaSetup bounds the time a step takes to set up its calls: its
	// rate is N/mediaSetup calls a second, within mediaMinRate and
	// mediaMaxRate (below the SBC's knee for calls without media).
	mediaSetup   = 4 * time.Second
	mediaMinRate = 25
	mediaMaxRate = 400
	// mediaPoll is how often a step samples the SBC's calls and its CPU
	// time.
	mediaPoll = 500 * time.Millisecond
	// mediaLossLimit is the share of packets a passing step may lose. A
	// step that misses is run again, unless it lost ten times as much.
	mediaLossLimit = 0.001
	// mediaEchoBuffer is the receive buffer the callee's echo socket gets
	// (widenEcho), and mediaEchoNice the callee's nice value.
	mediaEchoBuffer = 4 << 20
	mediaEchoNice   = -10
	// mediaMemCalls are held at once by BenchmarkCallsMediaMemoryPerCall;
	// mediaWarmCalls go first.
	mediaMemCalls  = 400
	mediaWarmCalls = 20
)

// mediaSteps are the numbers of concurrent calls tried, in order: up to
// what the media port ranges hold.
func mediaSteps() []int { return []int{50, 100, 200, 400, 600, 800, 1000, 1200, 1400} }

// BenchmarkCallsMediaKnee: the most concurrent calls with media the SBC
// relays with under 0.1% of packets lost (calls), the loss at that step
// (%lost) and the SBC's CPU time per second of a call's media
// (cpu-ms/call-s), measured while all the step's calls carry media.
func BenchmarkCallsMediaKnee(b *testing.B) {
	rig := startMediaRig(b, true)
	knee := mediaKnee(b, rig)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(knee.Calls), "calls")
	b.ReportMetric(100*knee.lossRatio(), "%lost")
	b.ReportMetric(knee.cpuPerCallSecond(), "cpu-ms/call-s")
}

// BenchmarkCallsMediaKneeReference: the same steps from SIPp's caller
// straight to its callee. Its loss is %dropped, named apart from the
// SBC's %lost so that benchfmt's _ratio line compares the calls.
func BenchmarkCallsMediaKneeReference(b *testing.B) {
	rig := startMediaRig(b, false)
	knee := mediaKnee(b, rig)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(knee.Calls), "calls")
	b.ReportMetric(100*knee.lossRatio(), "%dropped")
}

// BenchmarkCallsMediaMemoryPerCall: what one established call with media
// flowing costs the SBC in memory. After a warm-up, SIPp places
// mediaMemCalls calls with media; while all of them carry it, the test
// process's HeapInuse+StackInuse (after a GC) and its resident memory are
// compared with before, per call (kB, kB-rss, goroutines).
//
// What it counts: what BenchmarkCalls_Memory_Per_Call counts (both
// dialogs, the B2BUA's call, the media session with its four UDP sockets
// and their relay goroutines) plus what media adds: the relay loops'
// packet buffers in use, their stacks as they run, latching and
// statistics state. What it leaves out: kernel socket buffers.
func BenchmarkCallsMediaMemoryPerCall(b *testing.B) {
	rig := startMediaRig(b, true)
	if warm := runMediaStep(b, rig, mediaWarmCalls, nil); warm.Stats.Successful != mediaWarmCalls {
		mediaFatalf(b, rig.logs(), "warm-up: %d of %d calls succeeded%s", warm.Stats.Successful, mediaWarmCalls, warm.Failures)
	}
	var before, after memFigures
	var rss0, rss1 uint64
	b.ResetTimer()
	r := runMediaStep(b, rig, mediaMemCalls, &memProbe{
		before: func() { before, rss0 = memNow(), residentBytes() },
		during: func() { after, rss1 = memNow(), residentBytes() },
	})
	b.StopTimer()
	if r.Stats.Successful != mediaMemCalls || r.Silent > 0 || after.goroutines == 0 {
		mediaFatalf(b, rig.logs(), "%d of %d calls succeeded%s, %d without media, measured: %v",
			r.Stats.Successful, mediaMemCalls, r.Failures, r.Silent, after.goroutines != 0)
	}
	n := float64(mediaMemCalls)
	heap := (float64(after.heapInuse) - float64(before.heapInuse)) / n
	stack := (float64(after.stackInuse) - float64(before.stackInuse)) / n
	rss := (float64(rss1) - float64(rss0)) / n
	goroutines := float64(after.goroutines-before.goroutines) / n
	b.Logf("per call with media: heap in use %.0f B (live objects %.0f B), stacks %.0f B, goroutines %.2f, resident %.0f B",
		heap, (float64(after.heapAlloc)-float64(before.heapAlloc))/n, stack, goroutines, rss)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric((heap+stack)/1024, "kB")
	b.ReportMetric(rss/1024, "kB-rss")
	b.ReportMetric(goroutines, "goroutines")
}

// mediaKnee steps the calls up until a step misses and returns the last
// step that passed (zero Calls when none did). A step that misses by
// little runs once more before it counts as missed. It fails the
// benchmark, with the logs, when no call of the first step carried
// media.
func mediaKnee(b *testing.B, rig *mediaRig) mediaStepResult {
	var best mediaStepResult
	for i, n := range mediaSteps() {
		r := runMediaStep(b, rig, n, nil)
		if !r.passed() && r.lossRatio() < 10*mediaLossLimit {
			r = runMediaStep(b, rig, n, nil) // once more: the machine is shared
		}
		if i == 0 && !r.mediaThrough() {
			mediaFatalf(b, rig.logs(), "%s: no call with media got through: %d of %d calls succeeded%s, %d packets of %d came back",
				rig.name, r.Stats.Successful, n, r.Failures, r.OutA, r.Played)
		}
		if !r.passed() {
			b.Logf("knee: %s carries %d calls with media, not %d (%.3f%% lost, %d calls failed)", rig.name, best.Calls, n, 100*r.lossRatio(), r.Stats.Failed)
			return best
		}
		best = r
	}
	b.Logf("knee: %s carried every step, up to %d calls with media", rig.name, best.Calls)
	return best
}

// mediaStepResult is one step: n calls with media.
type mediaStepResult struct {
	Calls, Rate int
	Stats       sippStats
	Failures    string // SIPp's failure counters, ", Reason n, ..."
	// Played is the RTP packets the caller's calls played; Lost those
	// that did not come back out of the SBC (direct: that the callee's
	// echo socket dropped).
	Played, Lost uint64
	// InA, OutB, InB and OutA are the SBC's relay counters summed over
	// the step's call records: from the caller, to the callee, back
	// from the callee, back to the caller.
	InA, OutB, InB, OutA uint64
	// SeqLost is the relay's own loss figure per leg (from sequence
	// numbers, RFC 3550 appendix A.3), summed: not used for the knee.
	SeqLost [2]int64
	// Records is the number of call records; Silent those whose caller
	// leg got no packet; Results the records' ends by reason.
	Records, Silent int
	Results         map[string]int
	// MaxJitter is the highest jitter on each leg over the calls, as
	// last sampled (after the media: the jump of the capture's timestamps
	// from one play to the next has faded from the estimate by then).
	MaxJitter [2]time.Duration
	// CalleeDrops are the datagrams the kernel dropped for the callee's
	// echo socket, for a full receive buffer.
	CalleeDrops uint64
	// CPU is this process's (the SBC's) processor time during the step;
	// FullCPU during FullWindow, while all its calls carried media.
	CPU, FullCPU time.Duration
	FullWindow   time.Duration
	// CalleeCPU is the callee's processor time during the step, Busy the
	// whole machine's.
	CalleeCPU, Busy time.Duration
}

// lossRatio is the share of the played packets lost.
func (r mediaStepResult) lossRatio() float64 {
	if r.Played == 0 {
		return 0
	}
	return float64(r.Lost) / float64(r.Played)
}

// mediaThrough: some call carried media, as far as the step can tell
// (direct, without an SBC to count packets, some call succeeded).
func (r mediaStepResult) mediaThrough() bool {
	if r.Records > 0 || r.InA > 0 {
		return r.OutA > 0
	}
	return r.Stats.Successful > 0
}

// passed: every call succeeded, each carried media, and under
// mediaLossLimit of the packets were lost.
func (r mediaStepResult) passed() bool {
	return r.Calls > 0 && r.Stats.Successful == r.Calls && r.Stats.Failed == 0 && r.Silent == 0 &&
		r.Played > 0 && r.lossRatio() < mediaLossLimit
}

// cpuPerCallSecond is the SBC's CPU milliseconds per second of one
// call's media, while all the step's calls carried media; 0 when that
// window was too short to tell.
func (r mediaStepResult) cpuPerCallSecond() float64 {
	if r.FullWindow < time.Second || r.Calls == 0 {
		return 0
	}
	return float64(r.FullCPU) / float64(time.Millisecond) / (float64(r.Calls) * r.FullWindow.Seconds())
}

// memProbe measures memory at a step's start and while all its calls
// carry media.
type memProbe struct{ before, during func() }

// runMediaStep places n calls with media through rig, watches them, and
// returns what it saw once they have all ended and the SBC has settled.
func runMediaStep(b *testing.B, rig *mediaRig, n int, mem *memProbe) mediaStepResult {
	b.Helper()
	rate := min(max(int(float64(n)/mediaSetup.Seconds()), mediaMinRate), mediaMaxRate)
	r := mediaStepResult{Calls: n, Rate: rate, Played: uint64(n * mediaPlays * rig.packets), Results: map[string]int{}}
	if mem != nil {
		mem.before()
	}
	cpu0, callee0, busy0 := processCPU(), rig.callee.cpu(), machineBusy()
	drops0 := loopbackUDP()[rig.callee.media].drops
	setup := time.Duration(n/rate+1) * time.Second
	p := startMediaCaller(b, rig.bin, rig.target, n, rate, setup+mediaPlayGap+mediaPlayGap+mediaTail+30*time.Second)
	w := &mediaWatch{jitter: map[string][2]time.Duration{}}
	if rig.sbc != nil {
		w.watch(rig, p, n, mem)
	}
	st, err := p.finish()
	if err != nil {
		mediaFatalf(b, p.output()+rig.logs(), "sipp, %d calls with media: %v", n, err)
	}
	r.Stats, r.Failures = st, p.failures()
	r.CPU, r.CalleeCPU, r.Busy = processCPU()-cpu0, rig.callee.cpu()-callee0, machineBusy()-busy0
	r.FullCPU, r.FullWindow, r.MaxJitter = w.fullCPU, w.fullWindow, w.maxJitter()
	if d := loopbackUDP()[rig.callee.media].drops; d >= drops0 {
		r.CalleeDrops = d - drops0
	}
	if rig.sbc != nil {
		if err := rig.sbc.settle(15 * time.Second); err != nil {
			mediaProgress("%s after %d calls: %v", rig.name, n, err)
		}
		r.addRecords(rig.sbc.records, p.cmd.Process.Pid)
		r.Lost = r.Played - min(r.OutA, r.Played)
	} else {
		r.Lost = min(r.CalleeDrops, r.Played)
	}
	r.progress(rig.name, st.CPU)
	return r
}

// addRecords sums the relay counters of the call records waiting in
// records that are of calls of the caller with process id pid: a call
// of an earlier step that outlived it (a step that overloads the SBC
// leaves some to its media timeout) does not count.
func (r *mediaStepResult) addRecords(records chan b2bua.Record, pid int) {
	mine := "-" + strconv.Itoa(pid) + "@"
	for {
		select {
		case rec := <-records:
			if !strings.Contains(rec.CallID, mine) {
				continue
			}
			r.Records++
			r.Results[string(rec.Result)+": "+rec.Reason]++
			r.InA += rec.PacketsIn[0]
			r.OutB += rec.PacketsOut[1]
			r.InB += rec.PacketsIn[1]
			r.OutA += rec.PacketsOut[0]
			r.SeqLost[0] += rec.Lost[0]
			r.SeqLost[1] += rec.Lost[1]
			if rec.PacketsIn[0] == 0 {
				r.Silent++
			}
		default:
			return
		}
	}
}

// progress writes the step's line to standard error.
func (r mediaStepResult) progress(name string, callerCPU time.Duration) {
	line := fmt.Sprintf("%s, %d calls (%d/s): %d succeeded, %d failed%s, %d retransmissions in %v; %d packets played, %d lost (%.4f%%)",
		name, r.Calls, r.Rate, r.Stats.Successful, r.Stats.Failed, r.Failures, r.Stats.Retransmissions,
		r.Stats.Elapsed.Round(time.Millisecond), r.Played, r.Lost, 100*r.lossRatio())
	if r.Records > 0 || r.InA > 0 {
		line += fmt.Sprintf(" [SBC: from caller %d, to callee %d, back from callee %d, to caller %d; %d records %v, %d without media; relay's lost caller leg %d, callee leg %d; jitter max caller leg %v, callee leg %v]",
			r.InA, r.OutB, r.InB, r.OutA, r.Records, r.Results, r.Silent, r.SeqLost[0], r.SeqLost[1],
			r.MaxJitter[0].Round(10*time.Microsecond), r.MaxJitter[1].Round(10*time.Microsecond))
		line += fmt.Sprintf("; lost on the way to the SBC's access sockets %d, in the SBC %d, via the callee %d (its echo socket dropped %d), in the SBC on the way back %d",
			r.Played-min(r.InA, r.Played), r.InA-min(r.OutB, r.InA), r.OutB-min(r.InB, r.OutB), r.CalleeDrops, r.InB-min(r.OutA, r.InB))
	} else {
		line += fmt.Sprintf("; the callee's echo socket dropped %d", r.CalleeDrops)
	}
	line += fmt.Sprintf("; CPU: this process %v", r.CPU.Round(time.Millisecond))
	if r.FullWindow > 0 {
		line += fmt.Sprintf(" (%v during %v with all calls up: %.3f ms per call-second)", r.FullCPU.Round(time.Millisecond), r.FullWindow.Round(time.Millisecond), r.cpuPerCallSecond())
	}
	line += fmt.Sprintf(", callee %v, caller %v, machine %v on %d CPUs", r.CalleeCPU.Round(time.Millisecond),
		callerCPU.Round(time.Millisecond), r.Busy.Round(time.Millisecond), runtime.NumCPU())
	mediaProgress("%s", line)
}

// mediaWatch is what watch saw of a step.
type mediaWatch struct {
	// jitter is each call's jitter per leg as last sampled, by Call-ID.
	jitter map[string][2]time.Duration
	// fullCPU is this process's CPU time during fullWindow, from the
	// first sample with all calls established to the last one before the
	// first call's media ended.
	fullCPU    time.Duration
	fullWindow time.Duration
}

// watch samples the SBC's established calls (their count, first answer
// and jitter) and this process's CPU time every mediaPoll, until the
// caller exits. With mem, it measures memory once, at the first sample
// with all n calls established.
func (w *mediaWatch) watch(rig *mediaRig, p *sippProc, n int, mem *memProbe) {
	media := time.Duration(mediaPlays-1)*mediaPlayGap + rig.length
	var fullStart time.Time
	var cpuStart time.Duration
	t := time.NewTicker(mediaPoll)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		now, cpu := time.Now(), processCPU()
		if up, first := w.sampleCalls(rig.sbc.svc); up < n {
			continue
		} else if fullStart.IsZero() {
			fullStart, cpuStart = now, cpu
			if mem != nil {
				mem.during()
			}
		} else if now.Before(first.Add(media)) {
			w.fullCPU, w.fullWindow = cpu-cpuStart, now.Sub(fullStart)
		}
	}
}

// sampleCalls reads the SBC's established calls: how many, the earliest
// answer, and their jitter.
func (w *mediaWatch) sampleCalls(s *Service) (up int, first time.Time) {
	calls := s.Calls()
	for _, c := range calls {
		if first.IsZero() || c.Answered.Before(first) {
			first = c.Answered
		}
		w.jitter[c.CallID] = [2]time.Duration{c.Stats[0].Jitter, c.Stats[1].Jitter}
	}
	return len(calls), first
}

// maxJitter is the highest jitter per leg over the calls.
func (w *mediaWatch) maxJitter() (m [2]time.Duration) {
	for _, j := range w.jitter {
		m[0], m[1] = max(m[0], j[0]), max(m[1], j[1])
	}
	return m
}

// mediaProgress writes a line of a media benchmark to standard error:
// the testing package keeps only ten lines of a benchmark's log.
func mediaProgress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "media: "+format+"\n", args...)
}

// mediaFatalf writes details (logs) to standard error, where they are
// not cut short, and fails the benchmark.
func mediaFatalf(b *testing.B, details, format string, args ...any) {
	b.Helper()
	fmt.Fprintf(os.Stderr, "media: %s\n%s\n", fmt.Sprintf(format, args...), details)
	b.Fatalf(format+" (logs on standard error)", args...)
}
