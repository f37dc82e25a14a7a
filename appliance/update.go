package main

import (
	"crypto/ed25519"
	"path/filepath"

	"github.com/psigate/psigate/appliance/firmware"
	"github.com/psigate/psigate/gokrazy/bundle"
)

// newUpdater builds the firmware updater from the release file, the
// update key and gokrazy's update API. Whatever of them is missing is
// logged and leaves updates unavailable, with the reason on the Firmware
// page: it must not stop the appliance, or no update could repair it. It
// raises the rollback alarm if bootguard left a rollback event.
func newUpdater(o options, alarms firmware.Alarms) *firmware.Updater {
	log := o.log.With("service", "firmware")
	rel := firmware.Release{Version: version}
	if o.releaseFile != "" {
		r, err := firmware.ReadRelease(o.releaseFile)
		if err != nil {
			log.Error("no release file; firmware updates are not possible", "err", err)
		} else {
			rel = r
		}
	}
	var key ed25519.PublicKey
	if o.updateKey != "" {
		k, err := bundle.LoadPublicKey(o.updateKey)
		if err != nil {
			log.Error("no update key; firmware updates are not possible", "err", err)
		} else {
			key = k
		}
	}
	dev, err := updateDevice()
	noDevice := ""
	if err != nil {
		log.Error("no access to gokrazy's update API; firmware updates are not possible", "err", err)
		noDevice = err.Error()
	}
	u := firmware.New(firmware.Options{
		Dir: filepath.Join(o.dataDir, "firmware"), PublicKey: key, Release: rel,
		Device: dev, NoDevice: noDevice, RollbackFile: o.rollbackFile, Alarms: alarms, Log: log,
	})
	if ev, err := u.RefreshAlarm(); err != nil {
		log.Error("reading the rollback event", "err", err)
	} else if ev != nil {
		log.Warn("a firmware update was rolled back", "from", ev.FromVersion, "to", ev.ToVersion, "reason", ev.Reason)
	}
	return u
}
