//go:build psigate_imagedeps

// Package imagedeps names the modules that only the images use: the
// gokrazy init and system programs, the kernels and the Raspberry Pi
// firmware. Nothing imports them from Go code, so without this file
// go mod tidy would drop them from go.mod and the image builder could
// not find them. The build tag is never set: the file is never compiled.
package imagedeps

import (
	_ "github.com/gokrazy/firmware"
	_ "github.com/gokrazy/gokrazy"
	_ "github.com/gokrazy/gokrazy/cmd/dhcp"
	_ "github.com/gokrazy/gokrazy/cmd/ntp"
	_ "github.com/gokrazy/gokrazy/cmd/randomd"
	_ "github.com/gokrazy/kernel.amd64"
	_ "github.com/gokrazy/kernel.rpi"
)
