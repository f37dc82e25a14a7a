// Command demo shows psigate at work on one machine, on loopback only:
// it starts the appliance (data in a temporary folder, its self-signed
// certificate), Kamailio as the PBX and two baresip clients, one
// registered through psigate over TLS with SRTP (the Zoom client), one
// registered at Kamailio (a phone on the PBX). It configures the
// appliance through its API as an admin would, has the Zoom client call
// the phone, shows the call in the active calls and then in the call
// history, and stops everything.
//
//	make demo
//	go run ./sbc/demo -appliance ./bin/appliance [-hold 10s] [-http 127.0.0.1:0] [-password ...] [-keep]
//
// It exits 0 once everything it started is stopped, after the whole demo
// or after Ctrl-C (SIGINT or SIGTERM), as the appliance does; 1 when
// something failed or a program is missing (kamailio, baresip-core). A
// second Ctrl-C quits at once, leaving the temporary folder.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	var o options
	flag.StringVar(&o.appliance, "appliance", "./bin/appliance", "the appliance program to run (make build writes it)")
	flag.StringVar(&o.httpAddr, "http", "127.0.0.1:0", "the admin portal's HTTPS address, on loopback; port 0 picks a free port")
	flag.DurationVar(&o.hold, "hold", 10*time.Second, "how long the call stays up")
	flag.StringVar(&o.password, "password", "", "the admin password to set; empty makes one up")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary folder (data, configurations, logs)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal now kills the demo
	}()
	_, err := run(ctx, o, os.Stdout)
	switch {
	case err == errInterrupted: // and nothing else went wrong
		fmt.Fprintln(os.Stderr, "demo: interrupted; everything is stopped")
	case err != nil:
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}
