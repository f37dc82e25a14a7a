package sbctest

import (
	"strings"
	"testing"
)

// endTB records how a helper ended the test: like testing.T's, its Fatal
// and Skip do not return (they unwind to run).
type endTB struct {
	testing.TB
	fatal, skip string
}

type ended struct{}

func (e *endTB) Helper()           {}
func (e *endTB) Fatal(args ...any) { e.fatal = args[0].(string); panic(ended{}) }
func (e *endTB) Skip(args ...any)  { e.skip = args[0].(string); panic(ended{}) }

// run calls f, which may end e's test.
func (e *endTB) run(f func()) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(ended); !ok {
				panic(r)
			}
		}
	}()
	f()
}

func TestFindPeer(t *testing.T) {
	const missing = "psigate-no-such-peer"
	t.Run("found", func(t *testing.T) {
		// sh is on every machine the tests run on; a directory of extra
		// places is searched only after PATH.
		if p := FindPeer(t, "sh", "dash", t.TempDir()); !strings.HasSuffix(p, "/sh") {
			t.Fatalf("FindPeer(sh) = %q", p)
		}
	})
	t.Run("missing, skipped", func(t *testing.T) {
		t.Setenv(RequirePeersEnv, "")
		e := &endTB{TB: t}
		p := "unset"
		e.run(func() { p = FindPeer(e, missing, "psigate-pkg", t.TempDir()) })
		if p != "unset" || e.fatal != "" {
			t.Fatalf("returned %q, fatal %q", p, e.fatal)
		}
		if !strings.Contains(e.skip, missing) || !strings.Contains(e.skip, "Debian package psigate-pkg") {
			t.Fatalf("skip message %q", e.skip)
		}
	})
	t.Run("missing, required", func(t *testing.T) {
		t.Setenv(RequirePeersEnv, "1")
		e := &endTB{TB: t}
		e.run(func() { FindPeer(e, missing, "psigate-pkg") })
		if e.skip != "" || !strings.Contains(e.fatal, missing) || !strings.Contains(e.fatal, RequirePeersEnv+"=1") {
			t.Fatalf("fatal %q, skip %q", e.fatal, e.skip)
		}
	})
	t.Run("module missing, required", func(t *testing.T) {
		t.Setenv(RequirePeersEnv, "1")
		e := &endTB{TB: t}
		e.run(func() { BaresipModules(e, "psigate-no-such-module.so") })
		if !strings.Contains(e.fatal, "psigate-no-such-module.so") {
			t.Fatalf("fatal %q", e.fatal)
		}
	})
}
