// Command bootguard rolls a psigate firmware update back when the new
// version does not become healthy. It runs on the box next to the
// appliance, supervised by gokrazy.
//
// gokrazy's own safety net, /update/testboot, does not work with
// systemd-boot and is a no-op for cmdline.txt as gok writes it, so
// psigate-push and the portal use /update/switch, after which a broken
// root boots forever. bootguard closes that gap from inside the new root:
//
//   - It keeps in -state (on /perm) which root partition is known to work.
//   - When another root partition runs (the first boot after an update),
//     the appliance must answer 200 on -health without a break for
//     -settle, within -deadline of bootguard's start. Then that root is
//     recorded as the good one. Otherwise bootguard writes rollback.json,
//     switches the boot config back to the good root (gokrazy's
//     /update/switch flips to the partition that was inactive at boot) and
//     reboots. A trial root that boots more than -max-trial-boots times
//     (the new version reboots the box) is rolled back at once.
//   - With no state (first boot) or on the good root, it waits for health
//     and records the running root as good.
//
// The rollback reboots with kexec=off: a full reset reinitialises every
// device the failed version may have wedged, and it boots through the
// firmware and boot loader exactly as a power cut would, so a boot config
// that only kexec could boot does not go unnoticed until then. (kexec
// would not bring back the old kernel either: it loads /vmlinuz from the
// boot partition, which the update replaced.) The Raspberry Pi never
// kexecs anyway; the reset costs some seconds of POST on a PC.
//
// What bootguard cannot do: the update also wrote the boot partition
// (kernel, firmware, cmdline.txt) and the MBR, which have no A/B copy. A
// rollback runs the old root on the new kernel, and a kernel that does not
// boot never starts bootguard at all.
//
// bootguard logs to stderr with log/slog, which gokrazy captures. It never
// exits on errors (gokrazy would restart it, and the trial deadline with
// it): it logs, retries, and once done it sleeps until gokrazy stops it.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/psigate/psigate/gokrazy/ota"
)

func main() {
	cfg := config{maxTrialBoots: 3, retry: 10 * time.Second}
	flag.StringVar(&cfg.stateDir, "state", "/perm/bootguard", "directory for state.json and rollback.json, on /perm")
	health := flag.String("health", "https://127.0.0.1:443/healthz", "the appliance's health URL; 200 is healthy (TLS is not verified: loopback, self-signed)")
	flag.DurationVar(&cfg.settle, "settle", 60*time.Second, "how long the appliance must stay healthy without a break")
	flag.DurationVar(&cfg.deadline, "deadline", 5*time.Minute, "how long after bootguard's start a new version has to settle before it is rolled back")
	flag.DurationVar(&cfg.interval, "interval", 2*time.Second, "between health checks")
	flag.IntVar(&cfg.maxTrialBoots, "max-trial-boots", cfg.maxTrialBoots, "roll back at once when a new version boots more often than this without settling")
	cmdline := flag.String("cmdline", "/proc/cmdline", "kernel command line (for tests)")
	releasePath := flag.String("release", "/etc/psigate/release.json", "the running root's release file")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	g := &guard{
		cfg:    cfg,
		log:    log,
		health: newHTTPHealth(*health),
		dev:    &gokrazyDevice{socket: ota.SocketPath, password: ota.ReadPassword},
		clock:  realClock{},
		start:  time.Now(),
	}
	b, err := waitForBootInfo(ctx, log, g.clock, *cmdline, *releasePath, "/proc/sys/kernel/random/boot_id")
	if err != nil {
		return // stopped
	}
	log.Info("done", "outcome", g.run(ctx, b))
	<-ctx.Done() // sleep until gokrazy stops us: an exit would be restarted
}

// waitForBootInfo reads which root runs and its release, retrying every
// minute while the kernel command line cannot be understood.
func waitForBootInfo(ctx context.Context, log *slog.Logger, clk clock, cmdlinePath, releasePath, bootIDPath string) (bootInfo, error) {
	for {
		b, err := readBootInfo(log, cmdlinePath, releasePath, bootIDPath)
		if err == nil {
			return b, nil
		}
		log.Error("cannot tell which root partition runs; not guarding until it can", "err", err)
		if err := clk.Sleep(ctx, time.Minute); err != nil {
			return bootInfo{}, err
		}
	}
}

func readBootInfo(log *slog.Logger, cmdlinePath, releasePath, bootIDPath string) (bootInfo, error) {
	cmdline, err := os.ReadFile(cmdlinePath)
	if err != nil {
		return bootInfo{}, err
	}
	root, err := ota.RootPartition(string(cmdline))
	if err != nil {
		return bootInfo{}, err
	}
	rel, err := readRelease(releasePath)
	if err != nil {
		log.Warn("release file unreadable; version unknown", "err", err)
	}
	return bootInfo{root: root, release: rel, bootID: readBootID(bootIDPath)}, nil
}
