package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is a program the demo runs: the appliance or a baresip. It has
// a process group of its own, so that a Ctrl-C in the terminal reaches
// the demo alone, which then stops everything in order; and it gets
// SIGTERM should the demo die without stopping it.
type process struct {
	name   string
	cmd    *exec.Cmd
	out    *logBuffer    // stdout and stderr, also written to a log file
	exited chan struct{} // closed once cmd.Wait has returned
	err    error         // cmd.Wait's, set before exited closes
}

// startProcess starts cmd, its output going to the log file logPath and
// kept in memory for the demo to read.
func startProcess(name string, cmd *exec.Cmd, logPath string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, out: &logBuffer{file: logFile}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	cmd.WaitDelay = 5 * time.Second // output pipes of a grandchild left over
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, cmd.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	return p, nil
}

// stop sends SIGTERM and waits up to timeout for the process to exit,
// then kills its process group. It returns how the process exited (nil
// for status 0); killed says whether it had to be killed.
func (p *process) stop(timeout time.Duration) (killed bool, err error) {
	select {
	case <-p.exited:
		return false, p.err
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return false, p.err
	case <-time.After(timeout):
	}
	// Its group, while the process is not yet reaped, is still its own.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
	return true, p.err
}

// waitOutput waits until the process has written a line starting with
// prefix and returns the rest of that line.
func (p *process) waitOutput(ctx context.Context, prefix string, timeout time.Duration) (string, error) {
	var rest string
	err := poll(ctx, timeout, func() (bool, error) {
		for line := range strings.Lines(p.out.String()) {
			if r, ok := strings.CutPrefix(line, prefix); ok && strings.HasSuffix(r, "\n") {
				rest = strings.TrimSpace(r)
				return true, nil
			}
		}
		select {
		case <-p.exited:
			return false, fmt.Errorf("%s exited (%v) before writing %q", p.name, p.err, prefix)
		default:
			return false, nil
		}
	})
	if errors.Is(err, errTimeout) {
		return "", fmt.Errorf("%s wrote no %q within %v", p.name, prefix, timeout)
	}
	return rest, err
}

// logBuffer keeps a process's output in memory and writes it to its log
// file; the process writes while the demo reads.
type logBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	file io.Writer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	return b.file.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// errTimeout is what poll returns when its time is up.
var errTimeout = errors.New("timed out")

// pollInterval is how often poll looks again.
const pollInterval = 50 * time.Millisecond

// poll calls check until it reports done or an error, for at most
// timeout; it returns errTimeout when the time is up and ctx's cause
// when ctx ends first.
func poll(ctx context.Context, timeout time.Duration, check func() (done bool, err error)) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		done, err := check()
		if done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-deadline.C:
			return errTimeout
		case <-tick.C:
		}
	}
}

// lastLines is the end of s, n lines at most.
func lastLines(s string, n int) string {
	lines := strings.SplitAfter(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}
