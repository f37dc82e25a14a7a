// Package fat writes the FAT16 file system of a gokrazy image's boot
// partition: kernel, loader entry, cmdline.txt and, for the Raspberry Pi,
// firmware, device trees and overlays.
//
// The layout is the one gokrazy's on-device reader
// (github.com/gokrazy/internal/fat) needs to edit /cmdline.txt and
// /loader/entries/gokrazy.conf in place during an update: FAT16 with
// 512-byte sectors, exactly one FAT, a fixed root directory, every file and
// directory in contiguous clusters, and 8.3 names stored in lower case.
// Names that are not lower-case 8.3 also get long (VFAT) names, which
// systemd-boot, the Raspberry Pi firmware and Linux read.
//
// Output is reproducible: the same files and Options give the same bytes,
// whatever order the files were added in.
//
// Structures follow Microsoft's "FAT: General Overview of On-Disk Format"
// (fatgen103, version 1.03), cited by section title.
package fat

import (
	"errors"
	"fmt"
	"strings"
)

// Errors returned (wrapped) by Add, WriteTo and Extent.
var (
	ErrInvalidPath = errors.New("invalid path")
	ErrExists      = errors.New("path already added")
	ErrTooLarge    = errors.New("contents do not fit")
	ErrNotFound    = errors.New("file not found")
)

const (
	sectorSize   = 512
	dirEntrySize = 32

	// FAT16 has 4085 to 65524 data clusters (fatgen103, "FAT Type
	// Determination"); keep a margin from both ends for implementations
	// that count the boundary differently.
	minClusters = 4096
	maxClusters = 65500

	// maxSectorsPerCluster gives 32 KiB clusters; 64 KiB clusters are
	// not portable (fatgen103, "Boot Sector and BPB", BPB_SecPerClus).
	maxSectorsPerCluster = 64

	// minRootEntries is what mkfs.fat and gok use for FAT16.
	minRootEntries = 512

	attrArchive   = 0x20
	attrDirectory = 0x10
	attrVolumeID  = 0x08
	attrLongName  = 0x0f // read-only | hidden | system | volume ID

	// Case flags in the reserved byte 12 of a short entry (Windows NT),
	// which Linux and mtools also honour: base and extension are lower case.
	caseLowerBase = 0x08
	caseLowerExt  = 0x10
)

// Writer collects files and writes them as one FAT16 file system image.
// A Writer is not safe for concurrent use.
type Writer struct {
	opts Options
	root *node
	laid *layout // the last layout, until the next Add
}

// New returns a Writer with the given options; they are validated by
// WriteTo and Extent.
func New(o Options) *Writer {
	return &Writer{opts: o, root: newDir("")}
}

// Add adds a file, e.g. "/EFI/BOOT/BOOTX64.EFI" or "cmdline.txt" (the
// leading slash is optional). Directories are created implicitly. FAT
// names are case-insensitive, so a path that differs from an added one
// only in case is a duplicate (ErrExists). Add keeps data without copying
// it: do not modify it until the last WriteTo returns.
func (w *Writer) Add(path string, data []byte) error {
	parts, err := splitPath(path)
	if err != nil {
		return fmt.Errorf("fat: add %q: %w", path, err)
	}
	w.laid = nil
	d := w.root
	for i, name := range parts {
		last := i == len(parts)-1
		c := d.children[fold(name)]
		switch {
		case c == nil && last:
			d.children[fold(name)] = &node{name: name, data: data}
			return nil
		case c == nil:
			c = newDir(name)
			d.children[fold(name)] = c
		case last || c.name != name || !c.isDir():
			return fmt.Errorf("fat: add %q: %w", path, conflict(parts[:i], name, c, last))
		}
		d = c
	}
	return nil
}

// Extent returns where the file at path lies in the image WriteTo writes:
// its byte offset from the start of the file system and its size. An empty
// file has offset 0. The image builder uses it to point the legacy MBR
// loader at /vmlinuz and /cmdline.txt.
func (w *Writer) Extent(path string) (offset, size int64, err error) {
	l, err := w.layout()
	if err != nil {
		return 0, 0, err
	}
	parts, err := splitPath(path)
	if err != nil {
		return 0, 0, fmt.Errorf("fat: extent of %q: %w", path, err)
	}
	n := w.root
	for _, name := range parts {
		if n = n.children[fold(name)]; n == nil {
			return 0, 0, fmt.Errorf("fat: extent of %q: %w", path, ErrNotFound)
		}
	}
	if n.isDir() {
		return 0, 0, fmt.Errorf("fat: extent of %q: %w: it is a directory", path, ErrNotFound)
	}
	if len(n.data) == 0 {
		return 0, 0, nil
	}
	return l.offset(n.cluster), int64(len(n.data)), nil
}

// conflict explains why the path component name clashes with node c in
// directory dir; last is whether name is the file's own name.
func conflict(dir []string, name string, c *node, last bool) error {
	existing := strings.Join(append(dir[:len(dir):len(dir)], c.name), "/")
	switch {
	case c.name != name:
		return fmt.Errorf("%w: %q differs from %q only in case (FAT names are case-insensitive)", ErrExists, name, existing)
	case last && c.isDir():
		return fmt.Errorf("%w: %q is a directory", ErrExists, existing)
	case last:
		return ErrExists
	default:
		return fmt.Errorf("%w: %q is a file", ErrExists, existing)
	}
}

// node is a file or a directory; directories have non-nil children.
type node struct {
	name     string           // as added, e.g. "bcm2711-rpi-4-b.dtb"
	data     []byte           // file contents
	children map[string]*node // by fold(name)

	// Set by layout.
	sorted   []*node  // children in name order
	short    [11]byte // 8.3 name, e.g. "bcm271~1dtb"
	caseFlag byte     // caseLowerBase, caseLowerExt when there is no long name
	long     bool     // has long-name entries
	entries  int      // directories: 32-byte entries, dot entries included
	parent   *node    // directories: the one holding it, nil for the root
	cluster  uint16   // first cluster; 0 for the root and empty files
	clusters int64    // cluster count
}

func newDir(name string) *node { return &node{name: name, children: map[string]*node{}} }

func (n *node) isDir() bool { return n.children != nil }

// fold is the key under which FAT considers two names equal.
func fold(name string) string { return strings.ToUpper(name) }
