// Command psigate-qemu boots a psigate amd64 disk image in QEMU on this
// machine, through UEFI as a PC does, with the portal, gokrazy's page and
// the access realm's SIP TLS port forwarded from 127.0.0.1. It runs a
// copy of the image (kept next to it, so the box's state survives a
// restart) until Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/psigate/psigate/gokrazy/vm"
)

func main() {
	disk := flag.String("disk", "out/amd64/disk.img", "the disk image built by psigate-image")
	fresh := flag.Bool("fresh", false, "start again from the built image, discarding the copy's state")
	portal := flag.Int("portal", 8443, "host port for the portal (guest 443)")
	gokrazy := flag.Int("gokrazy", 8080, "host port for gokrazy's page and update endpoints (guest 8080)")
	sip := flag.Int("sip", 65061, "host port for the access realm's SIP TLS (guest 65061)")
	direct := flag.Bool("direct", false, "load the kernel directly instead of booting through UEFI")
	hours := flag.Int("hours", 8, "stop the VM after this many hours")
	flag.Parse()
	if err := run(*disk, *fresh, *direct, map[int]int{443: *portal, 8080: *gokrazy, 65061: *sip}, time.Duration(*hours)*time.Hour); err != nil {
		fmt.Fprintln(os.Stderr, "psigate-qemu:", err)
		os.Exit(1)
	}
}

func run(disk string, fresh, direct bool, fwd map[int]int, life time.Duration) error {
	dir := filepath.Dir(disk)
	img := filepath.Join(dir, "qemu.img")
	if _, err := os.Stat(img); fresh || err != nil {
		if out, err := exec.Command("cp", "--sparse=always", disk, img).CombinedOutput(); err != nil {
			return fmt.Errorf("copying %s: %v: %s", disk, err, out)
		}
	}
	o := vm.Options{Disk: img, Boot: vm.UEFI, Forward: fwd, Serial: filepath.Join(dir, "qemu-serial.log"), Timeout: life}
	if direct {
		cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline.txt"))
		if err != nil {
			return err
		}
		o.Boot, o.Kernel, o.Append = vm.Direct, filepath.Join(dir, "vmlinuz"), strings.TrimSpace(string(cmdline))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	v, err := vm.Start(context.Background(), o)
	if err != nil {
		return err
	}
	defer v.Stop()
	fmt.Printf("booting %s (serial console in %s)\n", img, o.Serial)
	fmt.Printf("  portal:         https://127.0.0.1:%d/\n", fwd[443])
	fmt.Printf("  gokrazy:        http://127.0.0.1:%d/ (user gokrazy, password in %s)\n", fwd[8080], filepath.Join(dir, "gokr-pw.txt"))
	fmt.Printf("  SIP over TLS:   127.0.0.1:%d\n", fwd[65061])
	fmt.Println("Ctrl-C stops the VM.")
	err = v.Poll(ctx, "the VM", func() bool { return false })
	if ctx.Err() != nil {
		return nil
	}
	return err
}
