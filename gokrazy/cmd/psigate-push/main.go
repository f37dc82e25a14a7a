// Command psigate-push installs a signed psigate update bundle on a box on
// the LAN, through gokrazy's update protocol, the way `gok update` does:
//
//	psigate-push -host 192.168.1.20:8080 -password-file out/amd64/gokr-pw.txt \
//		[-key update-signing.pub] bundle.psig
//
// It checks the bundle's sizes and hashes (and its signature, given -key)
// before it sends anything, writes the root, boot and MBR images, switches
// the root partition, reboots the box, and waits until the box runs the
// bundle's build.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"
)

func main() {
	o := options{poll: time.Second}
	flag.StringVar(&o.host, "host", "", "the box's gokrazy HTTP address, e.g. 192.168.1.20:8080 or http://192.168.1.20:8080")
	flag.StringVar(&o.passwordFile, "password-file", "", "file with the box's gokrazy password (gokr-pw.txt), e.g. out/amd64/gokr-pw.txt")
	flag.StringVar(&o.keyFile, "key", "", "public key (PEM) to check the bundle's signature with before sending; without it only sizes and hashes are checked")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long to wait for the box to come back running the new build")
	flag.BoolVar(&o.kexec, "kexec", false, "let the box kexec its new kernel (amd64) instead of a full reset through its firmware and boot loader (which also proves the new boot partition boots)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: psigate-push -host ADDR -password-file FILE [-key PUB] BUNDLE\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 || o.host == "" || o.passwordFile == "" {
		flag.Usage()
		os.Exit(2)
	}
	o.bundle = flag.Arg(0)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := push(ctx, o, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "psigate-push: %v\n", err)
		os.Exit(1)
	}
}
