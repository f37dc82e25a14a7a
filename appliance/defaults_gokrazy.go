//go:build gokrazy

package main

import (
	"context"
	"fmt"
	"time"

	"github.com/psigate/psigate/appliance/firmware"
	"github.com/psigate/psigate/gokrazy/ota"
)

// On a gokrazy box (built with -tags gokrazy): state on the writable
// /perm partition, portal on every address, firmware updates through
// gokrazy's update API with the image's release file and update key.
const (
	defaultData         = "/perm/psigate"
	defaultHTTP         = ":443"
	defaultRelease      = "/etc/psigate/release.json"
	defaultUpdateKey    = "/etc/psigate/update-signing.pub"
	defaultRollbackFile = "/perm/bootguard/rollback.json"
)

// updateDevice is gokrazy's update API on this box.
func updateDevice() (firmware.Device, error) {
	pw, err := ota.ReadPassword()
	if err != nil {
		return nil, fmt.Errorf("the gokrazy update password cannot be read: %w", err)
	}
	return otaDevice{ota.Local(pw)}, nil
}

// otaDevice is an ota.Client as a firmware.Device. It reboots through
// the firmware and boot loader, not kexec, so that the new version's
// trial also proves the boot partition boots as after a power cut; and
// synchronously, so that gokrazy stops the services (this appliance
// included: its calls records and store are written back) and unmounts
// /perm before the reset.
type otaDevice struct{ *ota.Client }

func (d otaDevice) Reboot(ctx context.Context) error {
	return d.Client.Reboot(ctx, ota.WithoutKexec(), ota.Synchronous(), ota.WaitPerSignal(15*time.Second))
}
