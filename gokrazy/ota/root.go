package ota

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

var (
	// gptGUID is a partition GUID as gokrazy writes it into root=, e.g.
	// 60c24cc1-f3f9-427a-8199-a1b2c3d40001 (partition 1's).
	gptGUID = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	// mbrSignature is an MBR disk signature, e.g. a1b2c3d4.
	mbrSignature = regexp.MustCompile(`^[0-9a-fA-F]{8}$`)
	// devRoot is the old root=/dev/... form (gokrazy/internal/rootdev).
	devRoot = regexp.MustCompile(`^/dev/(?:mmcblk[01]p|sda|loop0p|nvme0n1p)([23])$`)
)

// Root is the root partition a kernel command line boots.
type Root struct {
	// Partition is 2 or 3.
	Partition int
	// Disk names the disk as root= does: partition 1's GUID in lower
	// case (GPT), or the MBR disk signature; "" for the /dev/ form.
	Disk string
}

// ParseRoot reads root= of a kernel command line.
func ParseRoot(cmdline string) (Root, error) {
	p, err := RootPartition(cmdline)
	if err != nil {
		return Root{}, err
	}
	r := Root{Partition: p}
	for _, field := range strings.Fields(cmdline) {
		v, ok := strings.CutPrefix(field, "root=PARTUUID=")
		if !ok {
			continue
		}
		if guid, _, ok := strings.Cut(v, "/PARTNROFF="); ok {
			r.Disk = strings.ToLower(guid)
		} else if sig, _, ok := strings.Cut(v, "-"); ok {
			r.Disk = strings.ToLower(sig)
		}
	}
	return r, nil
}

// RootPartition returns the root partition, 2 or 3, that the kernel
// command line boots, in any of the forms gokrazy writes:
//
//	root=PARTUUID=<GUID of partition 1>/PARTNROFF=1   GPT: partition 2 (PARTNROFF=2: 3)
//	root=PARTUUID=<disk signature>-02                  MBR only: partition 2 (-03: 3)
//	root=/dev/sda2, /dev/mmcblk0p3, …                  older installations
//
// gokrazy's /update/switch rewrites every root= at once, so several that
// disagree mean the boot config is not gokrazy's: that is an error, as is
// any other form.
func RootPartition(cmdline string) (int, error) {
	part := 0
	for _, field := range strings.Fields(cmdline) {
		v, ok := strings.CutPrefix(field, "root=")
		if !ok {
			continue
		}
		p, err := parseRoot(v)
		if err != nil {
			return 0, err
		}
		if part != 0 && p != part {
			return 0, fmt.Errorf("kernel command line names root partitions %d and %d", part, p)
		}
		part = p
	}
	if part == 0 {
		return 0, errors.New("kernel command line has no root=")
	}
	return part, nil
}

// parseRoot parses the value of root=.
func parseRoot(v string) (int, error) {
	if m := devRoot.FindStringSubmatch(v); m != nil {
		return int(m[1][0] - '0'), nil
	}
	id, ok := strings.CutPrefix(v, "PARTUUID=")
	if !ok {
		return 0, fmt.Errorf("root=%q is not a gokrazy root partition", v)
	}
	if guid, off, ok := strings.Cut(id, "/PARTNROFF="); ok {
		if !gptGUID.MatchString(guid) {
			return 0, fmt.Errorf("root=%q: %q is not a partition GUID", v, guid)
		}
		switch off {
		case "1":
			return 2, nil
		case "2":
			return 3, nil
		}
		return 0, fmt.Errorf("root=%q: PARTNROFF=%s is not a root partition (1 or 2)", v, off)
	}
	sig, nr, ok := strings.Cut(id, "-")
	if !ok || !mbrSignature.MatchString(sig) {
		return 0, fmt.Errorf("root=%q is not a gokrazy root partition", v)
	}
	switch nr {
	case "02":
		return 2, nil
	case "03":
		return 3, nil
	}
	return 0, fmt.Errorf("root=%q: partition %q is not a root partition (02 or 03)", v, nr)
}
