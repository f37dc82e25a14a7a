// Package builder makes psigate's gokrazy images from an instance
// configuration in gok's config.json format, without gok: it compiles
// the programs and a generated gokrazy init, packs the root squashfs and
// the boot FAT, assembles a full disk image for the first install, and
// writes the parts of an over-the-air update (boot, root, MBR) with a
// signed update bundle.
//
// The layout is gokrazy's: a FAT16 boot partition, two root partitions
// (A/B) and /perm. Given the same inputs (sources, modules, build time,
// password and key), the outputs are the same bytes.
package builder

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/psigate/psigate/gokrazy/bundle"
	"github.com/psigate/psigate/gokrazy/disk"
)

// versionRE is what a version may hold: it names files and goes into the
// linker's flags.
var versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$`)

// Options steer one build.
type Options struct {
	ConfigPath string // the instance's config.json
	ModuleDir  string // the Go module the programs are built in (psigate's root)
	OutDir     string // where the images go
	Go         string // the go command; default "go"

	Version   string    // the firmware version, e.g. "1.4.0" or a git describe
	BuildTime time.Time // every timestamp in the image; default now

	Password     string             // gokrazy's HTTP password (required: never a default), put into the disk image's /perm only
	SigningKey   ed25519.PrivateKey // signs the update bundle
	PublicKeyPEM []byte             // the key the image trusts for updates
	CABundle     []byte             // /etc/ssl/ca-bundle.pem

	DiskSize    int64  // bytes of the full disk image; default 2 GiB
	SystemdBoot string // systemd-bootx64.efi; default Debian's
	NoDisk      bool   // only the update parts, not the full disk image

	Log *slog.Logger
}

// Result names what a build wrote.
type Result struct {
	Target string
	Disk   string // full disk image, "" with NoDisk
	Boot   string // boot partition image
	Root   string // root squashfs
	MBR    string // the 446 bytes gokrazy's /update/mbr writes
	// Kernel and Cmdline are copies of the kernel and its command line,
	// for booting the disk image in QEMU with the kernel loaded directly.
	Kernel, Cmdline string
	Bundle          string // the signed update bundle
	Sizes           map[string]int64
	Took            time.Duration
}

type build struct {
	opts        Options
	cfg         *Config
	tmp         string
	kernelDir   string
	firmwareDir string
	programs    []program
}

// Build makes the images.
func Build(ctx context.Context, o Options) (*Result, error) {
	start := time.Now()
	if o.Go == "" {
		o.Go = "go"
	}
	if o.BuildTime.IsZero() {
		o.BuildTime = time.Now()
	}
	o.BuildTime = o.BuildTime.UTC().Truncate(time.Second)
	if o.DiskSize == 0 {
		o.DiskSize = 2 << 30
	}
	if o.SystemdBoot == "" {
		o.SystemdBoot = systemdBootX64
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.Password == "":
		return nil, errors.New("builder: a gokrazy password is required")
	case o.SigningKey == nil || len(o.PublicKeyPEM) == 0:
		return nil, errors.New("builder: an update signing key is required")
	case !versionRE.MatchString(o.Version):
		return nil, fmt.Errorf("builder: version %q: want letters, digits and . _ + - (e.g. 1.4.0 or a git describe)", o.Version)
	}
	cfg, err := LoadConfig(o.ConfigPath)
	if err != nil {
		return nil, err
	}
	b := &build{opts: o, cfg: cfg}
	if b.tmp, err = os.MkdirTemp("", "psigate-image-"); err != nil {
		return nil, err
	}
	defer os.RemoveAll(b.tmp)
	if b.kernelDir, err = b.moduleDir(ctx, cfg.Kernel()); err != nil {
		return nil, err
	}
	if fw := cfg.Firmware(); fw != "" {
		if b.firmwareDir, err = b.moduleDir(ctx, fw); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	r := &Result{
		Target:  cfg.Target(),
		Boot:    filepath.Join(o.OutDir, "boot.img"),
		Root:    filepath.Join(o.OutDir, "root.img"),
		MBR:     filepath.Join(o.OutDir, "mbr.img"),
		Kernel:  filepath.Join(o.OutDir, "vmlinuz"),
		Cmdline: filepath.Join(o.OutDir, "cmdline.txt"),
		Bundle:  filepath.Join(o.OutDir, fmt.Sprintf("psigate-%s-%s.psig", o.Version, cfg.Target())),
	}

	tree := filepath.Join(b.tmp, "root")
	step := time.Now()
	if err := b.stageRoot(ctx, tree); err != nil {
		return nil, err
	}
	o.Log.Info("programs built", "target", r.Target, "took", time.Since(step).Round(time.Millisecond))
	step = time.Now()
	if err := b.squash(ctx, tree, r.Root); err != nil {
		return nil, err
	}
	if err := b.bootImage(r.Boot); err != nil {
		return nil, err
	}
	if err := os.WriteFile(r.MBR, disk.MBR(cfg.Hostname), 0o644); err != nil {
		return nil, err
	}
	o.Log.Info("filesystems packed", "took", time.Since(step).Round(time.Millisecond))

	if err := b.writeBundle(r); err != nil {
		return nil, err
	}
	if !o.NoDisk {
		step = time.Now()
		r.Disk = filepath.Join(o.OutDir, "disk.img")
		if err := b.writeDisk(r); err != nil {
			return nil, err
		}
		o.Log.Info("disk image written", "took", time.Since(step).Round(time.Millisecond))
	}
	r.Sizes = map[string]int64{}
	for name, p := range map[string]string{"boot": r.Boot, "root": r.Root, "mbr": r.MBR, "bundle": r.Bundle, "disk": r.Disk} {
		if fi, err := os.Stat(p); err == nil {
			r.Sizes[name] = fi.Size()
		}
	}
	r.Took = time.Since(start)
	return r, nil
}

func (b *build) writeBundle(r *Result) error {
	m := bundle.Manifest{
		Format: 1, Product: "psigate", Version: b.opts.Version, Target: r.Target,
		BuildTime: b.opts.BuildTime, BuildTimestamp: b.buildTimestamp(), Disk: disk.PartUUID(b.cfg.Hostname),
	}
	f, err := os.Create(r.Bundle)
	if err != nil {
		return err
	}
	err = bundle.Write(f, b.opts.SigningKey, m, map[string]string{"boot": r.Boot, "root": r.Root, "mbr": r.MBR})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("update bundle: %w", err)
	}
	return nil
}

func (b *build) writeDisk(r *Result) error {
	boot, err := os.Open(r.Boot)
	if err != nil {
		return err
	}
	defer boot.Close()
	root, err := os.Open(r.Root)
	if err != nil {
		return err
	}
	defer root.Close()
	return disk.Write(r.Disk, disk.Image{
		Hostname: b.cfg.Hostname, Arch: disk.Arch(b.cfg.Arch()), Size: b.opts.DiskSize,
		Boot: boot, Root: root, Perm: true, Time: b.opts.BuildTime,
		PermFiles: map[string][]byte{"gokr-pw.txt": []byte(b.opts.Password)},
	})
}

// Release is what the image says about itself in /etc/psigate/release.json.
type Release struct {
	Version        string    `json:"version"`
	Target         string    `json:"target"`
	BuildTime      time.Time `json:"buildTime"`
	BuildTimestamp string    `json:"buildTimestamp"`
}

func (b *build) release() Release {
	return Release{Version: b.opts.Version, Target: b.cfg.Target(), BuildTime: b.opts.BuildTime, BuildTimestamp: b.buildTimestamp()}
}

// buildTimestamp is what the init reports as its build; an update is done
// when the device reports the new one.
func (b *build) buildTimestamp() string {
	return b.opts.BuildTime.Format(time.RFC3339) + " " + b.opts.Version
}

// diskSignature is the FNV-1a hash of the hostname that names the disk
// in gokrazy's GUID scheme; the boot FAT's serial reuses it.
func diskSignature(hostname string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(hostname))
	return h.Sum32()
}
