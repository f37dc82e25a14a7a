package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// programs are the programs the demo runs.
type programs struct {
	appliance string // built from this repository (make build)
	kamailio  string
	baresip   string
	modules   string // baresip's module directory
}

// baresipModules are the baresip modules the two clients load, all in
// Debian's baresip-core.
var baresipModules = []string{"account.so", "g711.so", "srtp.so", "ausine.so", "aubridge.so", "menu.so", "ctrl_tcp.so"}

// findPrograms finds every program, or says which are missing and which
// Debian package provides each.
func findPrograms(appliance string) (programs, error) {
	var p programs
	var missing []string
	if fi, err := os.Stat(appliance); err != nil || !fi.Mode().IsRegular() {
		missing = append(missing, fmt.Sprintf("the appliance program %s (run make build, or give -appliance)", appliance))
	} else {
		p.appliance = appliance
	}
	var err error
	if p.kamailio, err = lookPath("kamailio", "/usr/sbin", "/usr/local/sbin"); err != nil {
		missing = append(missing, "kamailio: install the Debian package kamailio")
	}
	if p.baresip, err = lookPath("baresip"); err != nil {
		missing = append(missing, "baresip: install the Debian package baresip-core")
	}
	if p.modules = moduleDir(); p.modules == "" {
		missing = append(missing, fmt.Sprintf("baresip's modules %s: install the Debian package baresip-core", strings.Join(baresipModules, ", ")))
	}
	if len(missing) > 0 {
		return p, errors.New("missing:\n  " + strings.Join(missing, "\n  "))
	}
	return p, nil
}

// lookPath finds name on PATH, then in dirs (sbin directories are not on
// a normal user's PATH).
func lookPath(name string, dirs ...string) (string, error) {
	path, err := exec.LookPath(name)
	if err == nil {
		return path, nil
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, serr := os.Stat(p); serr == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", err
}

// moduleDir is the directory of baresip's modules that holds all of
// baresipModules, Debian's first; "" when there is none.
func moduleDir() string {
dirs:
	for _, d := range []string{"/usr/lib/baresip/modules", "/usr/local/lib/baresip/modules", "/usr/lib64/baresip/modules"} {
		for _, m := range baresipModules {
			if _, err := os.Stat(filepath.Join(d, m)); err != nil {
				continue dirs
			}
		}
		return d
	}
	return ""
}
