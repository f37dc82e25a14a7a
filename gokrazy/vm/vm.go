// Package vm boots a psigate disk image in QEMU on the build machine:
// amd64 with the kernel loaded directly or through UEFI (OVMF and the
// image's systemd-boot), and the Raspberry Pi image on QEMU's raspi3b
// board. The guest's network is QEMU's user network restricted to the
// ports forwarded from 127.0.0.1, so a booted image reaches nothing but
// the host's loopback forwards.
package vm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Boot selects how the guest starts.
type Boot int

const (
	// Direct loads the kernel with QEMU's -kernel and -append: fastest,
	// but the boot partition's cmdline.txt is not read, so a root switch
	// only takes effect through gokrazy's kexec reboot.
	Direct Boot = iota
	// UEFI boots OVMF, which runs the image's systemd-boot, which reads
	// the loader entry gokrazy rewrites on updates: what a PC does.
	UEFI
	// RaspberryPi boots QEMU's raspi3b board with the Pi kernel and
	// device tree loaded directly.
	RaspberryPi
)

// Options describe one VM.
type Options struct {
	Disk   string // raw disk image; written by the guest
	Boot   Boot
	Kernel string // vmlinuz, for Direct and RaspberryPi
	DTB    string // device tree, for RaspberryPi
	Append string // kernel command line, for Direct and RaspberryPi
	// Forward maps guest TCP ports to host ports on 127.0.0.1 (0 picks a
	// free one; see VM.Port).
	Forward map[int]int
	// Serial is the file the guest's serial console is written to.
	Serial string
	// Memory in MiB; default 1024.
	Memory int
	// Timeout bounds the VM's life; default 10 minutes.
	Timeout time.Duration
}

// VM is a running QEMU process.
type VM struct {
	opts  Options
	cmd   *exec.Cmd
	ports map[int]int
	done  chan struct{}
	mu    sync.Mutex
	err   error
	out   bytes.Buffer
}

const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// Tools lists the host programs a Boot needs; the first missing one is
// reported.
func Tools(b Boot) error {
	var need []string
	switch b {
	case Direct:
		need = []string{"qemu-system-x86_64"}
	case UEFI:
		need = []string{"qemu-system-x86_64", ovmfCode}
	case RaspberryPi:
		need = []string{"qemu-system-aarch64"}
	}
	for _, n := range need {
		if strings.HasPrefix(n, "/") {
			if _, err := os.Stat(n); err != nil {
				return fmt.Errorf("%s missing (Debian's ovmf)", n)
			}
			continue
		}
		if _, err := exec.LookPath(n); err != nil {
			return fmt.Errorf("%s missing (Debian's qemu-system-x86 / qemu-system-arm)", n)
		}
	}
	return nil
}

// Start boots the VM. Stop it with Stop; it also stops by itself when
// Timeout passes.
func Start(ctx context.Context, o Options) (*VM, error) {
	if err := Tools(o.Boot); err != nil {
		return nil, err
	}
	if o.Memory == 0 {
		o.Memory = 1024
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	v := &VM{opts: o, ports: map[int]int{}, done: make(chan struct{})}
	var fwd []string
	guests := make([]int, 0, len(o.Forward))
	for g := range o.Forward {
		guests = append(guests, g)
	}
	sort.Ints(guests)
	for _, g := range guests {
		h := o.Forward[g]
		if h == 0 {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			h = p
		}
		v.ports[g] = h
		fwd = append(fwd, fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-:%d", h, g))
	}
	// restrict=on: the guest reaches nothing outside; the forwards still
	// work, and QEMU's DHCP server still answers.
	netdev := strings.Join(append([]string{"user,id=net0,restrict=on"}, fwd...), ",")
	args := []string{fmt.Sprintf("%ds", int(o.Timeout.Seconds()))}
	switch o.Boot {
	case Direct, UEFI:
		args = append(args, "qemu-system-x86_64", "-M", "q35", "-m", strconv.Itoa(o.Memory), "-smp", "2",
			"-display", "none", "-monitor", "none", "-serial", "file:"+o.Serial,
			"-drive", "file="+o.Disk+",format=raw,if=virtio",
			"-netdev", netdev, "-device", "virtio-net-pci,netdev=net0")
		if o.Boot == Direct {
			args = append(args, "-kernel", o.Kernel, "-append", o.Append)
		} else {
			vars := o.Disk + ".ovmf-vars"
			if err := copyFile(ovmfVars, vars); err != nil {
				return nil, err
			}
			args = append(args,
				"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
				"-drive", "if=pflash,format=raw,unit=1,file="+vars)
		}
	case RaspberryPi:
		// The board's emulated watchdog resets the guest moments after
		// gokrazy opens /dev/watchdog: its driver is kept from loading.
		args = append(args, "qemu-system-aarch64", "-M", "raspi3b", "-display", "none", "-monitor", "none",
			"-serial", "file:"+o.Serial, // the PL011, ttyAMA1 in the Pi device tree
			"-kernel", o.Kernel, "-dtb", o.DTB, "-drive", "if=sd,format=raw,file="+o.Disk,
			// earlycon: the kernel's first messages reach the serial
			// console before its driver loads.
			"-append", o.Append+" initcall_blacklist=bcm2835_wdt_driver_init earlycon=pl011,mmio32,0x3f201000")
	default:
		return nil, fmt.Errorf("vm: unknown boot %d", o.Boot)
	}
	cmd := exec.CommandContext(ctx, "timeout", args...)
	// QEMU's own output is kept for errors; never connected to ours, so
	// nothing blocks on a pipe.
	cmd.Stdout, cmd.Stderr = &lockedWriter{v: v}, &lockedWriter{v: v}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("vm: %w", err)
	}
	v.cmd = cmd
	go func() {
		err := cmd.Wait()
		v.mu.Lock()
		v.err = err
		v.mu.Unlock()
		close(v.done)
	}()
	return v, nil
}

type lockedWriter struct{ v *VM }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.v.mu.Lock()
	defer w.v.mu.Unlock()
	if w.v.out.Len() < 1<<20 {
		w.v.out.Write(p)
	}
	return len(p), nil
}

// Port is the host port on 127.0.0.1 forwarded to the guest's port.
func (v *VM) Port(guest int) int { return v.ports[guest] }

// Addr is "127.0.0.1:<host port>" for the guest's port.
func (v *VM) Addr(guest int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(v.ports[guest]))
}

// Exited reports whether QEMU has stopped, and why.
func (v *VM) Exited() (bool, error) {
	select {
	case <-v.done:
		v.mu.Lock()
		defer v.mu.Unlock()
		return true, fmt.Errorf("qemu exited: %v: %s", v.err, strings.TrimSpace(v.out.String()))
	default:
		return false, nil
	}
}

// Stop kills QEMU (its whole process group) and waits for it.
func (v *VM) Stop() {
	if v.cmd == nil || v.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL)
	<-v.done
}

// Output is what QEMU itself printed (its errors).
func (v *VM) Output() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.out.String()
}

// Serial is what the guest has written to its serial console so far.
func (v *VM) Serial() string {
	b, _ := os.ReadFile(v.opts.Serial)
	return string(b)
}

// WaitSerial waits until the serial console shows want, or the VM stops,
// or ctx ends.
func (v *VM) WaitSerial(ctx context.Context, want string) error {
	return v.poll(ctx, func() bool { return strings.Contains(v.Serial(), want) }, "serial console to show "+strconv.Quote(want))
}

// Poll calls ok every half second until it returns true, the VM stops or
// ctx ends.
func (v *VM) Poll(ctx context.Context, what string, ok func() bool) error {
	return v.poll(ctx, ok, what)
}

func (v *VM) poll(ctx context.Context, ok func() bool, what string) error {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		if ok() {
			return nil
		}
		if gone, err := v.Exited(); gone {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("vm: %w", err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
