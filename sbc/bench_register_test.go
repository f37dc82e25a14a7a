package sbc

import (
	"bufio"
	"maps"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/psigate/psigate/sbc/sbctest"
)

// Registration benchmarks: SIPp (testdata/sipp/register.xml, digest
// authentication) registers many users through the SBC to Kamailio, all on
// loopback. Run them with -benchtime 1x (make bench-register): one SIPp
// run is one operation, bounded in calls (-m) and time (-timeout). The SBC
// runs in the test process; SIPp and Kamailio are processes of their own
// on the same machine, so the three share its CPUs: each benchmark logs
// who used how much.

const (
	// benchUsers register once each per SIPp run: enough for a run of
	// about a second through the SBC.
	benchUsers     = 5000
	benchFirstUser = 10000
	// benchWarmUsers register before the measured run, from a user range
	// of their own: the SBC's connection to Kamailio, its code paths and
	// Kamailio's tables are warm when the measurement starts.
	benchWarmUsers = 50
	// benchRate is SIPp's offered rate of new registrations a second and
	// benchLimit the most open at once: the rate is above what either
	// path carries here, so the limit paces the run (a closed loop of
	// benchLimit registrations in flight) and UDP is not pushed into
	// losses and retransmissions.
	benchRate  = 20000
	benchLimit = 100
	// memUsers register over TCP in BenchmarkBindingMemory.
	memUsers = 2000
)

// BenchmarkRegisterThroughSBC: registrations a second through the SBC,
// SIPp over UDP to the access realm, the SBC over TCP to Kamailio; each
// registration is two round trips (the 401 challenge, then the REGISTER
// with credentials), both relayed.
func BenchmarkRegisterThroughSBC(b *testing.B) {
	bin, k, inf, warmInf := benchKamailio(b, benchUsers)
	s, access, _ := sippSBC(b, k, false)
	benchRegister(b, bin, access, inf, warmInf)
	if n := len(s.Bindings()); n < benchUsers {
		b.Errorf("the SBC holds %d bindings after the run, want %d", n, benchUsers)
	}
}

// BenchmarkRegisterThroughSBCReference: the same SIPp run straight to the
// same kind of Kamailio over UDP, measured in the same run.
func BenchmarkRegisterThroughSBCReference(b *testing.B) {
	bin, k, inf, warmInf := benchKamailio(b, benchUsers)
	benchRegister(b, bin, k.Addr, inf, warmInf)
}

// benchKamailio starts Kamailio with n users from benchFirstUser and
// benchWarmUsers after them, and returns SIPp's path and the two
// injection files.
func benchKamailio(b *testing.B, n int) (bin string, k *sbctest.Kamailio, inf, warmInf string) {
	bin = sbctest.FindPeer(b, "sipp", "sip-tester")
	users, inf := sippUsers(b, benchFirstUser, n)
	warm, warmInf := sippUsers(b, benchFirstUser+n, benchWarmUsers)
	maps.Copy(users, warm)
	k = sbctest.StartKamailio(b, sbctest.KamailioOptions{Users: users})
	return bin, k, inf, warmInf
}

// benchRegister warms up with the users of warmInf, then runs SIPp b.N
// times, each registering every user of inf once at target over UDP, and
// reports the successful registrations a second as SIPp counts them (from
// its start to its last call's end).
func benchRegister(b *testing.B, bin string, target netip.AddrPort, inf, warmInf string) {
	wp := startSIPp(b, bin, sippOptions{
		Target: target, Transport: "u1", Users: warmInf,
		Calls: benchWarmUsers, Rate: 100, Timeout: 30 * time.Second,
	})
	if st := wp.wait(b); st.Successful != benchWarmUsers {
		b.Fatalf("warm-up: %d of %d registrations succeeded\n%s", st.Successful, benchWarmUsers, wp.output())
	}

	var ok, failed int
	var elapsed, sippCPU time.Duration
	self0, busy0 := processCPU(), machineBusy()
	wall0 := time.Now()
	b.ResetTimer()
	for range b.N {
		p := startSIPp(b, bin, sippOptions{
			Target: target, Transport: "u1", Users: inf,
			Calls: benchUsers, Rate: benchRate, Limit: benchLimit, Timeout: 60 * time.Second,
		})
		st := p.wait(b)
		b.Logf("sipp: %d registered, %d failed, %d retransmissions in %v", st.Successful, st.Failed, st.Retransmissions, st.Elapsed)
		ok, failed, elapsed, sippCPU = ok+st.Successful, failed+st.Failed, elapsed+st.Elapsed, sippCPU+st.CPU
		if st.Successful < benchUsers*99/100 {
			b.Fatalf("sipp: only %d of %d registrations succeeded (%d failed)\n%s", st.Successful, benchUsers, st.Failed, p.output())
		}
	}
	b.StopTimer()
	wall, self, busy := time.Since(wall0), processCPU()-self0, machineBusy()-busy0
	b.Logf("CPU time over %v on %d CPUs: whole machine %v; this process (the SBC, if any) %v; sipp %v; the rest (Kamailio, anything else) %v",
		wall.Round(time.Millisecond), runtime.NumCPU(), busy.Round(time.Millisecond), self.Round(time.Millisecond),
		sippCPU.Round(time.Millisecond), max(busy-self-sippCPU, 0).Round(time.Millisecond))
	if failed > 0 {
		b.Logf("%d registrations failed", failed)
	}
	b.ReportMetric(float64(ok)/elapsed.Seconds(), "reg/s")
}

// processCPU is the CPU time of the test process, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineBusy is the CPU time all CPUs have spent on anything but idling
// (/proc/stat, in clock ticks of 10 ms); 0 when it cannot be read.
func machineBusy() time.Duration {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0
	}
	fields := strings.Fields(sc.Text()) // cpu user nice system idle iowait irq softirq steal ...
	if len(fields) < 6 || fields[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range fields[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 && i < 8 { // not idle or iowait; not guest (counted in user)
			busy += n
		}
	}
	return time.Duration(busy) * 10 * time.Millisecond
}

// BenchmarkBindingMemory: what one registered subscriber with its own TCP
// connection costs the SBC in memory. SIPp registers memUsers users over
// TCP with one connection per call (-t tn) and holds each call, so its
// connection, open; with all bindings in place the test process's
// HeapInuse+StackInuse (after a GC) is compared with before, per binding.
//
// What it counts: the binding table, the per-connection state of the
// SBC's TCP transport (connection object, sipgo's read buffer, the
// reading goroutine's stack), and whatever else the SBC retained for these
// registrations (transactions not yet reaped, Go's heap fragmentation).
// What it leaves out: kernel socket buffers, and TLS, which real clients
// use: Debian's SIPp is built without TLS, so a TLS connection's own state
// (its record buffers and session) would come on top.
func BenchmarkBindingMemory(b *testing.B) {
	bin, k, inf, warmInf := benchKamailio(b, memUsers)
	s, access, _ := sippSBC(b, k, true)

	// Warm up over TCP too; these connections close when their calls
	// end.
	wp := startSIPp(b, bin, sippOptions{
		Target: access, Transport: "tn", Users: warmInf,
		Calls: benchWarmUsers, Rate: 100, Timeout: 30 * time.Second,
	})
	if st := wp.wait(b); st.Successful != benchWarmUsers {
		b.Fatalf("warm-up: %d of %d registrations succeeded\n%s", st.Successful, benchWarmUsers, wp.output())
	}
	time.Sleep(time.Second) // the SBC notices the closed connections
	before := memNow()

	b.ResetTimer()
	p := startSIPp(b, bin, sippOptions{
		Target: access, Transport: "tn", Users: inf,
		Calls: memUsers, Rate: 500, Limit: memUsers,
		// Each call, so its connection, stays open this long after its
		// 200: longer than the run and the measurement take.
		Hold: 2 * time.Minute, Timeout: 3 * time.Minute,
	})
	deadline := time.Now().Add(time.Minute)
	for len(s.Bindings()) < benchWarmUsers+memUsers {
		select {
		case <-p.done:
			b.Fatalf("sipp ended before all users registered (%d bindings)\n%s", len(s.Bindings()), p.output())
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d bindings after a minute\n%s", len(s.Bindings())-benchWarmUsers, memUsers, p.output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	after := memNow()
	b.StopTimer()
	p.kill()

	n := float64(memUsers)
	heap := float64(after.heapInuse) - float64(before.heapInuse)
	stack := float64(after.stackInuse) - float64(before.stackInuse)
	goroutines := float64(after.goroutines-before.goroutines) / n
	b.Logf("per binding: heap in use %.0f B (live objects %.0f B), stacks %.0f B, goroutines %.2f",
		heap/n, (float64(after.heapAlloc)-float64(before.heapAlloc))/n, stack/n, goroutines)
	b.ReportMetric((heap+stack)/n, "bytes/binding")
	b.ReportMetric(goroutines, "goroutines/binding")
}

// memFigures is the test process's memory after a full collection.
type memFigures struct {
	heapInuse, stackInuse, heapAlloc uint64
	goroutines                       int
}

func memNow() memFigures {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memFigures{heapInuse: m.HeapInuse, stackInuse: m.StackInuse, heapAlloc: m.HeapAlloc, goroutines: runtime.NumGoroutine()}
}
