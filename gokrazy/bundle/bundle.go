// Package bundle reads and writes psigate's signed firmware update bundles.
//
// A bundle is an uncompressed tar archive. Its entries are, in this order:
//
//	manifest.json  the Manifest, as JSON
//	manifest.sig   the raw 64-byte ed25519 signature of manifest.json's exact bytes
//	boot.img       the boot (FAT) partition, gokrazy partition 1
//	root.img       the root (squashfs) file system, written to the inactive root partition
//	mbr.img        the first 446 bytes of the disk: boot code and disk signature
//
// The parts follow in the order the manifest lists them. The manifest carries
// each part's size and SHA-256, so the signature over the manifest covers the
// whole bundle; a box checks the signature before it looks at any part.
//
// The parts are exactly what gokrazy's update protocol takes (PUT
// /update/boot, /update/root and /update/mbr), see package ota.
package bundle

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Format is the bundle format this package writes and reads.
const Format = 1

// Product is the only product a bundle may be for.
const Product = "psigate"

// Names of the manifest's entries.
const (
	ManifestFile  = "manifest.json"
	SignatureFile = "manifest.sig"
)

// Names of the parts.
const (
	PartBoot = "boot"
	PartRoot = "root"
	PartMBR  = "mbr"
)

// Limits. The partition sizes are those of gokrazy's disk layout.
const (
	MaxManifestSize = 64 << 10  // bytes
	MaxBootSize     = 100 << 20 // bytes: the boot partition is 100 MiB
	MaxRootSize     = 500 << 20 // bytes: each root partition is 500 MiB
	MBRSize         = 446       // bytes: boot code (0–439), disk signature (440–443), zero (444–445)
)

// partOrder is the order in which Write puts the parts: the order of
// gokrazy's partitions on disk.
var partOrder = []string{PartBoot, PartRoot, PartMBR}

// Errors. Each error this package returns for a bad bundle matches one of
// them with errors.Is, and its text says what is wrong in words an admin
// understands.
var (
	// ErrSignature: the manifest is not signed by the key this box trusts.
	ErrSignature = errors.New("update bundle is not signed by a trusted key")
	// ErrTarget: the bundle is for another kind of box (or product).
	ErrTarget = errors.New("update bundle is for another kind of device")
	// ErrTruncated: the bundle ends early (an interrupted upload or copy).
	ErrTruncated = errors.New("update bundle is incomplete")
	// ErrCorrupt: the bundle is damaged or was not made by Write.
	ErrCorrupt = errors.New("update bundle is damaged")
)

// Part is one disk image in a bundle.
type Part struct {
	Name   string `json:"name"`   // "boot", "root" or "mbr"
	File   string `json:"file"`   // the tar entry's name, Name + ".img", e.g. "root.img"
	Size   int64  `json:"size"`   // bytes
	SHA256 string `json:"sha256"` // lower-case hex
}

// Manifest describes a bundle. It is what the signature covers.
type Manifest struct {
	Format    int       `json:"format"`    // always Format (1)
	Product   string    `json:"product"`   // always Product ("psigate")
	Version   string    `json:"version"`   // e.g. "1.4.0"
	Target    string    `json:"target"`    // the kind of box: "amd64" or "rpi"
	BuildTime time.Time `json:"buildTime"` // when the image was built
	// BuildTimestamp is what the image's gokrazy init reports as
	// BuildTimestamp (GET / with Accept: application/json); a host pushing
	// the bundle polls for it to know that the box runs the new image.
	BuildTimestamp string `json:"buildTimestamp"`
	KeyID          string `json:"keyID"` // KeyID of the signing key, e.g. "3f2a9c0d11e4b7a8"
	// Disk is the disk the boot partition's root= names: partition 1's
	// GUID in lower case. gokrazy derives the GUIDs from the hostname at
	// the first install, so a box must refuse a bundle naming another
	// disk: its kernel would wait for ever for a root it cannot find.
	Disk  string `json:"disk,omitempty"`
	Parts []Part `json:"parts"`
}

// Part returns the manifest's part with the given name.
func (m Manifest) Part(name string) (Part, bool) {
	for _, p := range m.Parts {
		if p.Name == name {
			return p, true
		}
	}
	return Part{}, false
}

var (
	hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)
	hexKeyID  = regexp.MustCompile(`^[0-9a-f]{16}$`)
)

// validate checks what Read and Write require of a manifest, apart from
// the target and the hashes of the parts.
func (m Manifest) validate() error {
	if m.Format != Format {
		return fmt.Errorf("%w: bundle format %d is not supported (this firmware reads format %d)", ErrCorrupt, m.Format, Format)
	}
	if m.Product != Product {
		return fmt.Errorf("%w: bundle is for %q, not %s", ErrTarget, m.Product, Product)
	}
	if m.Version == "" || m.Target == "" || m.BuildTimestamp == "" {
		return fmt.Errorf("%w: manifest lacks the version, target or build timestamp", ErrCorrupt)
	}
	if !hexKeyID.MatchString(m.KeyID) {
		return fmt.Errorf("%w: manifest key ID %q is not 16 hex digits", ErrCorrupt, m.KeyID)
	}
	return validateParts(m.Parts)
}

// validateParts checks that parts names boot, root and mbr once each, with
// sizes within their partitions' limits.
func validateParts(parts []Part) error {
	seen := map[string]bool{}
	for _, p := range parts {
		if err := p.validate(); err != nil {
			return err
		}
		if seen[p.Name] {
			return fmt.Errorf("%w: manifest lists part %q twice", ErrCorrupt, p.Name)
		}
		seen[p.Name] = true
	}
	for _, name := range partOrder {
		if !seen[name] {
			return fmt.Errorf("%w: manifest lacks part %q", ErrCorrupt, name)
		}
	}
	return nil
}

func (p Part) validate() error {
	limit, ok := maxPartSize(p.Name)
	if !ok {
		return fmt.Errorf("%w: unknown part %q (parts are boot, root and mbr)", ErrCorrupt, p.Name)
	}
	if p.File != p.Name+".img" {
		return fmt.Errorf("%w: part %s is in %q, expected %q", ErrCorrupt, p.Name, p.File, p.Name+".img")
	}
	switch {
	case p.Name == PartMBR && p.Size != MBRSize:
		return fmt.Errorf("%w: part mbr is %d bytes, must be exactly %d", ErrCorrupt, p.Size, MBRSize)
	case p.Size <= 0 || p.Size > limit:
		return fmt.Errorf("%w: part %s is %d bytes, must be 1 to %d", ErrCorrupt, p.Name, p.Size, limit)
	}
	if !hexSHA256.MatchString(p.SHA256) {
		return fmt.Errorf("%w: part %s has a malformed sha256 %q", ErrCorrupt, p.Name, p.SHA256)
	}
	return nil
}

func maxPartSize(name string) (int64, bool) {
	switch name {
	case PartBoot:
		return MaxBootSize, true
	case PartRoot:
		return MaxRootSize, true
	case PartMBR:
		return MBRSize, true
	}
	return 0, false
}
