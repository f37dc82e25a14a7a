package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"
)

// healthChecker tells whether the appliance is healthy now (nil) or not.
type healthChecker interface {
	Check(ctx context.Context) error
}

// device is what a rollback needs of gokrazy: point the boot config at the
// other root partition, and reboot.
type device interface {
	Switch(ctx context.Context) error
	Reboot(ctx context.Context) error
}

// clock is time as bootguard sees it. Durations are measured between Now
// readings, which carry Go's monotonic clock, so NTP setting the wall
// clock at boot (from 1970 on a box without RTC) does not end a trial.
type clock interface {
	Now() time.Time
	Sleep(ctx context.Context, d time.Duration) error
}

// config is bootguard's configuration (its flags).
type config struct {
	stateDir      string        // e.g. "/perm/bootguard"
	interval      time.Duration // between health checks, e.g. 2s
	settle        time.Duration // how long the appliance must stay healthy, e.g. 60s
	deadline      time.Duration // from bootguard's start, for a trial to settle, e.g. 5m
	maxTrialBoots int           // boots of a trial root before rolling back at once, e.g. 3
	retry         time.Duration // between attempts at a failed write, switch or reboot, e.g. 10s
}

// bootInfo is what bootguard learns about this boot at start.
type bootInfo struct {
	root    int     // the running root partition, 2 or 3
	release release // the running root's release file
	bootID  string  // /proc/sys/kernel/random/boot_id, e.g. "6f1c…"; may be empty
}

// mode is what this boot is to bootguard.
type mode int

const (
	modeFirstBoot mode = iota // no state yet: the running root becomes the good one once healthy
	modeNormal                // the good root runs
	modeTrial                 // another root runs: it must become healthy in time or be rolled back
)

func (m mode) String() string {
	switch m {
	case modeFirstBoot:
		return "first boot"
	case modeNormal:
		return "normal"
	case modeTrial:
		return "trial"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// outcome is how a guard run ended.
type outcome int

const (
	outcomeConfirmed  outcome = iota // the running root is recorded as good
	outcomeRolledBack                // rollback.json written, switched back, reboot requested
	outcomeInactive                  // no persistent state (no /perm): this boot is not guarded
	outcomeStopped                   // the context ended first
)

func (o outcome) String() string {
	switch o {
	case outcomeConfirmed:
		return "confirmed"
	case outcomeRolledBack:
		return "rolled back"
	case outcomeInactive:
		return "inactive"
	case outcomeStopped:
		return "stopped"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// guard decides, once per boot, whether the running root partition is
// good, and rolls a failed update back.
type guard struct {
	cfg    config
	log    *slog.Logger
	health healthChecker
	dev    device
	clock  clock
	start  time.Time // when bootguard started; the trial deadline counts from here
}

// run guards this boot. It returns once the running root is confirmed, a
// rollback is under way, or there is nothing to do; until then it only
// logs errors and tries again.
func (g *guard) run(ctx context.Context, b bootInfo) outcome {
	if err := os.MkdirAll(g.cfg.stateDir, 0o700); err != nil {
		g.log.Error("no persistent state directory (is /perm mounted?): not guarding this boot", "dir", g.cfg.stateDir, "err", err)
		return outcomeInactive
	}
	st, m := g.mode(b)
	g.log.Info("guarding boot", "mode", m, "root", b.root, "version", b.release.Version, "goodRoot", st.GoodRoot, "goodVersion", st.GoodVersion)
	if m == modeTrial {
		return g.trial(ctx, b, st)
	}
	return g.confirm(ctx, b, st, m)
}

// mode reads the state and tells what this boot is.
func (g *guard) mode(b bootInfo) (state, mode) {
	st, err := loadState(g.cfg.stateDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return state{}, modeFirstBoot
	case err != nil:
		// Without a trustworthy record there is no root to roll back to.
		g.log.Error("state unreadable, treating this as a first boot", "err", err)
		return state{}, modeFirstBoot
	case st.GoodRoot == b.root:
		return st, modeNormal
	}
	return st, modeTrial
}

// confirm waits until the appliance is healthy and records the running
// root as good (first boot, normal boot). It never rolls back.
func (g *guard) confirm(ctx context.Context, b bootInfo, st state, m mode) outcome {
	if err := g.waitHealthy(ctx, time.Time{}); err != nil {
		return outcomeStopped
	}
	if m == modeNormal && st.GoodVersion == b.release.Version && st.Trial == nil {
		g.log.Info("healthy; the good root runs, nothing to do", "root", b.root, "version", b.release.Version)
		return outcomeConfirmed
	}
	if m == modeNormal && st.GoodVersion != b.release.Version {
		// The good root partition was overwritten (an update installed
		// during a trial, or by other means): there is no older good
		// root any more, so the running one is taken as it is.
		g.log.Warn("the good root partition holds another version than recorded", "recorded", st.GoodVersion, "running", b.release.Version)
	}
	since := g.clock.Now()
	if m == modeNormal && st.GoodVersion == b.release.Version {
		since = st.Since
	}
	return g.record(ctx, state{GoodRoot: b.root, GoodVersion: b.release.Version, Since: since})
}

// record writes the state, retrying until it is written.
func (g *guard) record(ctx context.Context, st state) outcome {
	err := g.retryUntilDone(ctx, "recording the good root", func(context.Context) error {
		return writeJSON(g.cfg.stateDir, stateFile, st)
	})
	if err != nil {
		return outcomeStopped
	}
	g.log.Info("recorded the good root", "root", st.GoodRoot, "version", st.GoodVersion)
	return outcomeConfirmed
}

// trial gives the running root until the deadline to become healthy, and
// rolls back to the good root when it does not.
func (g *guard) trial(ctx context.Context, b bootInfo, st state) outcome {
	t := st.Trial
	if t == nil || t.Root != b.root || t.Version != b.release.Version {
		t = &trial{Root: b.root, Version: b.release.Version}
	}
	if b.bootID == "" || b.bootID != t.BootID {
		t.Boots++
		t.BootID = b.bootID
	}
	st.Trial = t
	if err := writeJSON(g.cfg.stateDir, stateFile, st); err != nil {
		g.log.Error("counting the trial boot", "err", err)
	}
	if t.Boots > g.cfg.maxTrialBoots {
		return g.rollback(ctx, b, st, fmt.Sprintf("version %s booted %d times without becoming healthy for %v", b.release.Version, t.Boots, g.cfg.settle))
	}
	err := g.waitHealthy(ctx, g.start.Add(g.cfg.deadline))
	switch {
	case err == nil:
		return g.record(ctx, state{GoodRoot: b.root, GoodVersion: b.release.Version, Since: g.clock.Now()})
	case ctx.Err() != nil:
		return outcomeStopped
	}
	return g.rollback(ctx, b, st, fmt.Sprintf("version %s was not healthy for %v without a break within %v of boot; %v", b.release.Version, g.cfg.settle, g.cfg.deadline, err))
}

// waitHealthy checks health every interval until the appliance has been
// healthy without a break for settle, and then returns nil. When ctx ends
// it returns ctx's error; at deadline (unless zero) an error that says how
// the appliance failed.
func (g *guard) waitHealthy(ctx context.Context, deadline time.Time) error {
	var lastFailure error
	var healthySince time.Time
	for {
		err := g.health.Check(ctx)
		now := g.clock.Now()
		switch {
		case err == nil && healthySince.IsZero():
			g.log.Info("appliance healthy", "settle", g.cfg.settle)
			healthySince = now
		case err != nil && (!healthySince.IsZero() || lastFailure == nil || lastFailure.Error() != err.Error()):
			g.log.Warn("appliance not healthy", "err", err) // on changes only: it may crash-loop for minutes
			healthySince = time.Time{}
		}
		if err != nil {
			lastFailure = err
		}
		if !healthySince.IsZero() && now.Sub(healthySince) >= g.cfg.settle {
			return nil
		}
		if !deadline.IsZero() && !now.Before(deadline) {
			if !healthySince.IsZero() {
				return fmt.Errorf("healthy for only %v at the deadline; last failure: %v", now.Sub(healthySince), lastFailure)
			}
			return fmt.Errorf("last check: %w", lastFailure)
		}
		if err := g.clock.Sleep(ctx, g.cfg.interval); err != nil {
			return err
		}
	}
}

// rollback records why, points the boot config back at the good root and
// reboots. It keeps trying the switch and the reboot until they are done.
func (g *guard) rollback(ctx context.Context, b bootInfo, st state, reason string) outcome {
	rec := rollbackRecord{
		Time:        g.clock.Now(),
		FromVersion: b.release.Version,
		FromRoot:    b.root,
		ToRoot:      st.GoodRoot,
		ToVersion:   st.GoodVersion,
		Reason:      reason,
	}
	g.log.Error("rolling back", "fromRoot", rec.FromRoot, "fromVersion", rec.FromVersion, "toRoot", rec.ToRoot, "toVersion", rec.ToVersion, "reason", reason)
	// The record is for the admin; the rollback matters more, so a
	// failure to write it does not stop it.
	if err := writeJSON(g.cfg.stateDir, rollbackFile, rec); err != nil {
		g.log.Error("writing the rollback record", "err", err)
	}
	if err := g.retryUntilDone(ctx, "switching back to the good root", g.dev.Switch); err != nil {
		return outcomeStopped
	}
	if err := g.retryUntilDone(ctx, "rebooting", g.dev.Reboot); err != nil {
		return outcomeStopped
	}
	g.log.Info("reboot requested", "toRoot", rec.ToRoot)
	return outcomeRolledBack
}

// retryUntilDone calls f until it succeeds or ctx ends. Each attempt has
// two minutes: a request that hangs (a dying SD card under gokrazy's
// handler) must not stop the retries. The synchronous reboot waits for
// every service to stop, well within that.
func (g *guard) retryUntilDone(ctx context.Context, what string, f func(context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := f(actx)
		cancel()
		if err == nil {
			return nil
		}
		g.log.Error(what+" failed, will retry", "err", err, "in", g.cfg.retry)
		if err := g.clock.Sleep(ctx, g.cfg.retry); err != nil {
			return err
		}
	}
}
