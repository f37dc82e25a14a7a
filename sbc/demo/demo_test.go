package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/psigate/psigate/sbc/sbctest"
)

// TestDemo runs the demo with a short call: the call is listed in the
// active calls with SRTP towards the Zoom client, RTP towards the PBX
// and media both ways, then in the call history as answered and ended
// by the caller; nothing the demo started is left, nor its folder.
func TestDemo(t *testing.T) {
	o := demoOptions(t)
	o.hold = 2 * time.Second
	var out bytes.Buffer
	res, err := run(t.Context(), o, &out)
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("demo: %v", err)
	}

	a := res.active
	if a.From != "sip:"+zoomUser+"@"+sbctest.KamailioRealm || !strings.HasPrefix(a.To, "sip:"+phoneUser+"@"+sbctest.KamailioRealm) || a.Direction != "client to PBX" {
		t.Errorf("active call %s -> %s (%s), want the Zoom client calling the PBX phone", a.From, a.To, a.Direction)
	}
	if a.SRTP != [2]bool{true, false} || a.Answered.IsZero() {
		t.Errorf("active call: SRTP %v answered %v, want SRTP to the Zoom client only, answered", a.SRTP, a.Answered)
	}
	if a.PacketsIn[0] == 0 || a.PacketsIn[1] == 0 || a.PacketsOut[0] == 0 || a.PacketsOut[1] == 0 {
		t.Errorf("active call: packets in %v out %v, want media both ways on both legs", a.PacketsIn, a.PacketsOut)
	}

	e := res.ended
	if e.From != a.From || e.To != a.To || e.Result != "answered" || e.Code != 200 || e.Reason != "caller hung up" {
		t.Errorf("history: %s -> %s %s %d %q, want the same call, answered, 200, \"caller hung up\"", e.From, e.To, e.Result, e.Code, e.Reason)
	}
	if e.DurationS < o.hold.Seconds() || e.DurationS > o.hold.Seconds()+10 {
		t.Errorf("history: connected %.1f s, want about the %v hold", e.DurationS, o.hold)
	}
	if e.SRTP != a.SRTP || e.PacketsIn[0] < a.PacketsIn[0] || e.PacketsIn[1] < a.PacketsIn[1] {
		t.Errorf("history: SRTP %v packets in %v, want %v and at least %v", e.SRTP, e.PacketsIn, a.SRTP, a.PacketsIn)
	}
	for _, want := range []string{res.portal, "admin / " + res.password, "Active calls", "Call history"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the output does not show %q", want)
		}
	}
	checkNothingLeft(t, res.dir)
}

// TestDemoInterrupted: Ctrl-C while the call is up stops everything
// all the same.
func TestDemoInterrupted(t *testing.T) {
	o := demoOptions(t)
	o.hold = time.Minute
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &watchWriter{marker: "holding the call", hit: cancel}
	res, err := run(ctx, o, out)
	t.Logf("demo output:\n%s", out.String())
	if err != errInterrupted {
		t.Fatalf("demo: %v, want %v alone", err, errInterrupted)
	}
	if !strings.Contains(out.String(), "holding the call") {
		t.Fatal("interrupted before the call was up")
	}
	checkNothingLeft(t, res.dir)
}

// demoOptions are the demo's options with a freshly built appliance; the
// test ends as sbctest.PeerMissing says without Kamailio or baresip.
func demoOptions(t *testing.T) options {
	t.Helper()
	sbctest.FindPeer(t, "kamailio", "kamailio", "/usr/sbin", "/usr/local/sbin")
	sbctest.FindPeer(t, "baresip", "baresip-core")
	sbctest.BaresipModules(t, baresipModules...)
	bin := filepath.Join(t.TempDir(), "appliance")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/psigate/psigate/appliance").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return options{appliance: bin, httpAddr: "127.0.0.1:0", password: "demo test: a long passphrase"}
}

// checkNothingLeft checks that the demo's folder is gone and that no
// process names it (the appliance's -data, baresip's -f, Kamailio's -f).
func checkNothingLeft(t *testing.T, dir string) {
	t.Helper()
	if dir == "" {
		t.Fatal("the demo made no folder")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the demo's folder %s is still there (%v)", dir, err)
	}
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range cmdlines {
		b, err := os.ReadFile(f)
		if err == nil && bytes.Contains(b, []byte(dir)) {
			t.Errorf("a process the demo started is still running: %s: %s", f, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
}

// watchWriter keeps what the demo writes and calls hit once it has
// written marker.
type watchWriter struct {
	marker string
	hit    func()

	mu   sync.Mutex
	buf  bytes.Buffer
	done bool
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.done && strings.Contains(w.buf.String(), w.marker) {
		w.done = true
		w.hit()
	}
	return len(p), nil
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
