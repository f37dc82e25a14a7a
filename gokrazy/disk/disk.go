// Package disk assembles a gokrazy disk image: a GPT with a hybrid MBR, the
// boot FAT on partition 1, the root squashfs on partition 2 (partition 3
// stays empty for the first over-the-air update) and an ext4 file system
// for /perm on partition 4.
//
// The layout, the partition GUIDs and the MBR are the ones gokrazy's gok
// writes (github.com/gokrazy/tools, package packer), so that gokrazy's init
// finds its root (root=PARTUUID=<PartUUID>/PARTNROFF=1) and its update
// handlers find the partitions. The GPT follows UEFI 2.10 section 5.3; the
// code is our own.
package disk

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Arch is the CPU architecture of the image; it chooses the partition type
// GUID of the root partition.
type Arch string

// The architectures gokrazy has kernels for.
const (
	AMD64 Arch = "amd64"
	ARM64 Arch = "arm64" // also the Raspberry Pi
)

func (a Arch) String() string { return string(a) }

// rootType is the type GUID of root partitions for a, from the Discoverable
// Partitions Specification, the one gok uses for partition 2.
func (a Arch) rootType() (string, bool) {
	switch a {
	case AMD64:
		return "4f68bce3-e8cd-4db1-96e7-fbcaf984b709", true
	case ARM64:
		return "b921b045-1df0-41c3-af44-4c6f280d3fae", true
	}
	return "", false
}

// Partition and disk sizes in bytes.
const (
	// BootSize is partition 1's size: the largest boot FAT.
	BootSize int64 = 100 << 20
	// RootSize is the size of partitions 2 and 3: the largest root squashfs.
	RootSize int64 = 500 << 20
	// MinSize is the smallest disk: 4 MiB before partition 1, 1100 MiB for
	// boot and the two roots, and about 100 MiB for /perm (gok's minimum).
	MinSize int64 = 4<<20 + 1200<<20
)

var (
	// ErrInvalid is wrapped by the errors of Image.Validate.
	ErrInvalid = errors.New("invalid disk image")
	// ErrTooLarge means that a file system does not fit its partition.
	ErrTooLarge = errors.New("file system larger than its partition")
	// ErrNoMke2fs means that /perm cannot be formatted: e2fsprogs' mke2fs
	// is not installed.
	ErrNoMke2fs = errors.New("mke2fs not found (install e2fsprogs)")
)

// Image describes a disk image to write.
type Image struct {
	// Hostname names the gokrazy instance; its FNV-1a hash makes the
	// partition GUIDs and the MBR disk signature. E.g. "psigate".
	Hostname string
	// Arch chooses the root partition's type GUID. E.g. AMD64.
	Arch Arch
	// Size is the disk size in bytes, a multiple of 512 and at least
	// MinSize. E.g. 2 << 30.
	Size int64
	// Boot is the boot FAT file system, at most BootSize bytes, written at
	// the start of partition 1; nil leaves the partition zero.
	Boot io.Reader
	// Root is the root squashfs, at most RootSize bytes, written at the
	// start of partition 2; nil leaves the partition zero.
	Root io.Reader
	// Perm formats partition 4 as ext4 labelled "perm", which gokrazy
	// mounts at /perm. It needs e2fsprogs' mke2fs. Without it partition 4
	// stays zero and gokrazy runs without /perm.
	Perm bool
	// PermFiles are put into /perm (with Perm), by name, mode 0600: e.g.
	// "gokr-pw.txt", the gokrazy password, which gokrazy reads from /perm
	// before /etc so that it is in the first-install image only, not in
	// every update's root.
	PermFiles map[string][]byte
	// Time is the creation time recorded in /perm (required with Perm), so
	// that equal inputs give equal images. E.g. the build's commit time.
	Time time.Time
}

// Validate checks img without I/O; its errors wrap ErrInvalid and name the
// field.
func (img Image) Validate() error {
	if img.Hostname == "" {
		return fmt.Errorf("Image.Hostname: empty: %w", ErrInvalid)
	}
	if _, ok := img.Arch.rootType(); !ok {
		return fmt.Errorf("Image.Arch: %q is not %s or %s: %w", img.Arch, AMD64, ARM64, ErrInvalid)
	}
	if img.Size < MinSize {
		return fmt.Errorf("Image.Size: %d bytes, need at least %d (%d MiB): %w", img.Size, MinSize, MinSize>>20, ErrInvalid)
	}
	if img.Size%sectorSize != 0 {
		return fmt.Errorf("Image.Size: %d bytes is not a multiple of %d: %w", img.Size, sectorSize, ErrInvalid)
	}
	if img.Perm && img.Time.Unix() <= 0 {
		return fmt.Errorf("Image.Time: %v, need a time after 1970 to format /perm reproducibly: %w", img.Time, ErrInvalid)
	}
	return nil
}

// Write writes img as a sparse file at path, replacing it only when the
// whole image is written. Equal inputs give equal bytes for a given
// e2fsprogs version.
func Write(path string, img Image) (err error) {
	if err := img.Validate(); err != nil {
		return err
	}
	var mke2fs string
	if img.Perm {
		if mke2fs, err = findMke2fs(); err != nil {
			return err
		}
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("creating disk image for %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := writeParts(f, img); err != nil {
		return fmt.Errorf("writing disk image %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing disk image %s: %w", path, err)
	}
	if img.Perm {
		p4 := layout(img)[3]
		if err := formatPerm(mke2fs, tmp, img, p4); err != nil {
			return fmt.Errorf("writing disk image %s: %w", path, err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing disk image %s: %w", path, err)
	}
	return nil
}

// writeParts writes the partition tables, the boot and the root file
// systems into the empty file f.
func writeParts(f *os.File, img Image) error {
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Truncate(img.Size); err != nil {
		return err
	}
	parts := layout(img)
	if err := writeTables(f, img, parts); err != nil {
		return err
	}
	if img.Boot != nil {
		if err := copyInto(f, parts[0], img.Boot); err != nil {
			return fmt.Errorf("boot file system: %w", err)
		}
	}
	if img.Root != nil {
		if err := copyInto(f, parts[1], img.Root); err != nil {
			return fmt.Errorf("root file system: %w", err)
		}
	}
	return f.Sync()
}

// writeTables writes the hybrid MBR (LBA 0), the primary GPT (LBAs 1–33)
// and the backup GPT (the last 33 LBAs).
func writeTables(f *os.File, img Image, parts []partition) error {
	t := gpt{disk: diskGUID(img.Hostname), sectors: uint64(img.Size / sectorSize), parts: parts}
	mbr := hybridMBR(img.Hostname)
	if _, err := f.WriteAt(mbr[:], 0); err != nil {
		return fmt.Errorf("MBR: %w", err)
	}
	if _, err := f.WriteAt(t.primary(), sectorSize); err != nil {
		return fmt.Errorf("primary GPT: %w", err)
	}
	if _, err := f.WriteAt(t.backup(), int64(t.backupEntriesLBA())*sectorSize); err != nil {
		return fmt.Errorf("backup GPT: %w", err)
	}
	return nil
}
