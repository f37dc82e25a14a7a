// Command appliance is the one program that runs on a psigate box: the
// admin portal, the configuration store and, as they are built, the SBC,
// the network configuration and the cloud connector, all under one
// context.
//
// It exits non-zero on failure so that gokrazy restarts it, and 0 after a
// clean shutdown on SIGTERM or SIGINT (a second signal exits at once).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// version is set at build time: -ldflags "-X main.version=...".
var version = "dev"

func main() {
	var o options
	flag.StringVar(&o.dataDir, "data", defaultData, "state directory (configuration, identity, sessions)")
	flag.StringVar(&o.httpAddr, "http", defaultHTTP, "admin portal HTTPS address; port 0 picks a free port")
	flag.DurationVar(&o.drain, "drain", 10*time.Second, "how long to let running requests finish on shutdown")
	flag.StringVar(&o.releaseFile, "release", defaultRelease, "release file of the running image (version, target, build time); empty: this build's version, no target")
	flag.StringVar(&o.updateKey, "update-key", defaultUpdateKey, "public key (PEM) that firmware update bundles must be signed with; empty: updates refused")
	flag.StringVar(&o.rollbackFile, "rollback-file", defaultRollbackFile, "where bootguard records a firmware rollback; empty: none")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "appliance: -log-level: %v\n", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	o.log = log

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-ctx.Done()
		stop() // a second signal now kills the process
	}()
	if err := run(ctx, o); err != nil {
		log.Error("appliance stopped", "err", err)
		os.Exit(1)
	}
	log.Info("appliance stopped cleanly")
}
