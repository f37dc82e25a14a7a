package store

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const crashDirEnv = "PSIGATE_STORE_CRASH_DIR"

// TestCrashChild is the process that TestKillDuringApply kills. It
// applies a new hostname over and over until it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestKillDuringApply")
	}
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(3)
	}
	fmt.Println("ready")
	for i := 0; ; i++ {
		c, err := s.Candidate()
		if err != nil {
			fmt.Println("candidate:", err)
			os.Exit(3)
		}
		// Hostname and comment go together: a mix of two applies
		// would show up as a mismatch.
		c.System.Hostname = "h" + strconv.Itoa(i)
		c.SBC.RemoteSubscribers.MinIntervalSeconds = 300 + i%1000
		if _, err := s.SetCandidate(c); err != nil {
			fmt.Println("set candidate:", err)
			os.Exit(3)
		}
		if _, err := s.Apply(ApplyOptions{Author: "crash", Comment: c.System.Hostname}); err != nil {
			fmt.Println("apply:", err)
			os.Exit(3)
		}
	}
}

// TestKillDuringApply kills a process with SIGKILL at random moments while
// it applies configurations, and checks after each kill that the file is
// consistent and the running configuration is exactly one applied
// revision.
func TestKillDuringApply(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a child process many times; skipped with -short")
	}
	dir := t.TempDir()
	const kills = 100
	running := 0
	for i := range kills {
		child := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		child.Env = append(os.Environ(), crashDirEnv+"="+dir)
		out, err := child.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		child.Stderr = os.Stderr
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(out).ReadString('\n')
		if strings.TrimSpace(line) != "ready" {
			child.Process.Kill()
			child.Wait()
			t.Fatalf("kill %d: child said %q", i, line)
		}
		time.Sleep(time.Duration(rand.IntN(40_000)) * time.Microsecond) // a random moment, not a synchronisation
		if err := child.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err = child.Wait()
		if ws, ok := child.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("kill %d: child ended on its own: %v", i, err)
		}
		running = checkAfterCrash(t, dir, i, running)
	}
	if running < kills/2 {
		t.Errorf("running revision only %d after %d runs: the kills did not hit applies", running, kills)
	}
	t.Logf("%d kills; revision %d running, every state consistent", kills, running)
}

// checkAfterCrash opens the store left by a killed child and verifies it;
// it returns the number of the running revision.
func checkAfterCrash(t *testing.T, dir string, kill, lastRunning int) int {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("kill %d: reopen: %v", kill, err)
	}
	defer s.Close()
	if err := s.Check(); err != nil {
		t.Fatalf("kill %d: file corrupt: %v", kill, err)
	}
	run, err := s.Running()
	if err != nil {
		t.Fatalf("kill %d: running: %v", kill, err)
	}
	if int(run.Number) < lastRunning {
		t.Fatalf("kill %d: running went back from %d to %d", kill, lastRunning, run.Number)
	}
	if err := run.Config.Validate(); err != nil {
		t.Fatalf("kill %d: running config invalid: %v", kill, err)
	}
	if run.Kind == KindApply && run.Comment != run.Config.System.Hostname {
		t.Fatalf("kill %d: revision %d mixes apply %q with config %q", kill, run.Number, run.Comment, run.Config.System.Hostname)
	}
	revs, err := s.Revisions()
	if err != nil {
		t.Fatalf("kill %d: %v", kill, err)
	}
	if revs[0].Number != run.Number {
		t.Fatalf("kill %d: newest revision %d but running %d", kill, revs[0].Number, run.Number)
	}
	if _, err := s.Candidate(); err != nil {
		t.Fatalf("kill %d: candidate: %v", kill, err)
	}
	return int(run.Number)
}
