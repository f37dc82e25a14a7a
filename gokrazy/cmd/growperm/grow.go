package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/psigate/psigate/gokrazy/disk"
)

const nothingToDo = "/perm fills its disk: nothing to do"

// system is what grow needs of the box, so that tests can stand in.
type system interface {
	// Mounts is /proc/self/mounts.
	Mounts() (io.Reader, error)
	// Resolve is the sysfs path of a block device, e.g. "vda4" ->
	// "/sys/devices/.../block/vda/vda4".
	Resolve(dev string) (string, error)
	// Sectors is a block device's size in 512-byte sectors.
	Sectors(dev string) (uint64, error)
	// Open opens a disk read-write.
	Open(dev string) (disk.ReadWriterAt, io.Closer, error)
	// ResizePartition tells the kernel partition n of the disk now
	// covers offset..offset+length bytes.
	ResizePartition(d disk.ReadWriterAt, n int, offset, length int64) error
	// ResizeFS grows the ext4 file system mounted at dir to length bytes.
	ResizeFS(dir string, length int64) error
}

// partitionDev is a partition's device name: sda4, vda4, mmcblk0p4,
// nvme0n1p4.
var partitionDev = regexp.MustCompile(`^/dev/((?:sd|vd|xvd)[a-z]+4|(?:mmcblk[0-9]+|nvme[0-9]+n[0-9]+)p4)$`)

// grow grows /perm to fill its disk; it says what it did.
func grow(sys system) (string, error) {
	mounts, err := sys.Mounts()
	if err != nil {
		return "", err
	}
	src, fstype, err := permMount(mounts)
	if err != nil {
		return "", err
	}
	if fstype != "ext4" {
		return "", fmt.Errorf("/perm is %s, not ext4: not grown", fstype)
	}
	m := partitionDev.FindStringSubmatch(src)
	if m == nil {
		return "", fmt.Errorf("/perm is on %s, not partition 4 of a disk: not grown", src)
	}
	sysPath, err := sys.Resolve(m[1])
	if err != nil {
		return "", err
	}
	diskDev := filepath.Base(filepath.Dir(sysPath))
	sectors, err := sys.Sectors(diskDev)
	if err != nil {
		return "", err
	}
	d, closer, err := sys.Open(diskDev)
	if err != nil {
		return "", err
	}
	defer closer.Close()
	p4, changed, err := disk.Grow(d, sectors)
	if err != nil {
		return "", fmt.Errorf("/dev/%s: %w", diskDev, err)
	}
	if !changed {
		return nothingToDo, nil
	}
	off, length := p4.Bytes()
	if err := sys.ResizePartition(d, 4, off, length); err != nil {
		return "", fmt.Errorf("the partition table of /dev/%s now gives partition 4 %d MiB, but the kernel was not told (it will see it at the next boot): %w", diskDev, length>>20, err)
	}
	if err := sys.ResizeFS("/perm", length); err != nil {
		return "", fmt.Errorf("growing /perm's file system to %d MiB: %w", length>>20, err)
	}
	return fmt.Sprintf("/perm grown to %d MiB, the rest of /dev/%s", length>>20, diskDev), nil
}

// permMount finds /perm's device and file system type in
// /proc/self/mounts.
func permMount(r io.Reader) (src, fstype string, err error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 3 && f[1] == "/perm" {
			src, fstype = f[0], f[2]
		}
	}
	if err := sc.Err(); err != nil {
		return "", "", err
	}
	if src == "" {
		return "", "", errors.New("/perm is not mounted: not grown")
	}
	return src, fstype, nil
}

// sectorsOf reads a sysfs size file.
func sectorsOf(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}
