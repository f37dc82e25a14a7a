//go:build !gokrazy

package main

import "github.com/psigate/psigate/appliance/firmware"

// Off a gokrazy box: state next to the working directory, portal on
// loopback, no firmware updates (the flags can name a release file, key
// and rollback file, e.g. for tests; bundles are then verified only).
const (
	defaultData         = "./var"
	defaultHTTP         = "127.0.0.1:8443"
	defaultRelease      = ""
	defaultUpdateKey    = ""
	defaultRollbackFile = ""
)

// updateDevice is none: there are no partitions to write.
func updateDevice() (firmware.Device, error) { return nil, nil }
