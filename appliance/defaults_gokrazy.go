//go:build gokrazy

package main

import (
	"context"
	"fmt"

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

// otaDevice is an ota.Client as a firmware.Device: it reboots with
// gokrazy's defaults.
type otaDevice struct{ *ota.Client }

func (d otaDevice) Reboot(ctx context.Context) error { return d.Client.Reboot(ctx) }
