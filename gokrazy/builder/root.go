package builder

import (
	"archive/zip"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// stageRoot lays out the root filesystem's tree under dir: the programs,
// the empty mount points, /etc, the kernel's modules and extra files.
func (b *build) stageRoot(ctx context.Context, dir string) error {
	for _, d := range []string{"bin", "dev", "etc", "proc", "sys", "tmp", "perm", "lib", "run", "mnt", "gokrazy", "user", "etc/ssl", "etc/gokrazy", "etc/psigate"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Symlink("/perm/var", filepath.Join(dir, "var")); err != nil {
		return err
	}
	if err := os.Symlink("/tmp/resolv.conf", filepath.Join(dir, "etc", "resolv.conf")); err != nil {
		return err
	}
	if err := b.compile(ctx, dir); err != nil {
		return err
	}
	if mods := filepath.Join(b.kernelDir, "lib", "modules"); exists(mods) {
		if err := copyTree(mods, filepath.Join(dir, "lib", "modules")); err != nil {
			return fmt.Errorf("kernel modules: %w", err)
		}
	}
	zone, err := utcZone()
	if err != nil {
		return err
	}
	release, err := json.MarshalIndent(b.release(), "", "  ")
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"/etc/hostname":                     []byte(b.cfg.Hostname),
		"/etc/hosts":                        []byte("127.0.0.1 localhost\n::1 localhost\n127.0.1.1 " + b.cfg.Hostname + "\n"),
		"/etc/localtime":                    zone,
		"/etc/http-port.txt":                []byte(b.cfg.HTTPPort()),
		"/etc/gokrazy/mountdevices.json":    []byte("[]"),
		"/etc/psigate/release.json":         append(release, '\n'),
		"/etc/psigate/update-signing.pub":   b.opts.PublicKeyPEM,
		"/etc/ssl/ca-bundle.pem":            b.opts.CABundle,
		"/etc/gokrazy/psigate-programs.txt": []byte(strings.Join(b.programNames(), "\n") + "\n"),
	}
	if b.opts.Password != "" {
		files["/etc/gokr-pw.txt"] = []byte(b.rootPassword())
	}
	for pkg, pc := range b.cfg.PackageConfig {
		for dst, content := range pc.ExtraFileContents {
			if _, dup := files[dst]; dup {
				return fmt.Errorf("%s: extra file %s is already in the image", pkg, dst)
			}
			files[dst] = []byte(content)
		}
		for dst, src := range pc.ExtraFilePaths {
			if _, dup := files[dst]; dup {
				return fmt.Errorf("%s: extra file %s is already in the image", pkg, dst)
			}
			if !filepath.IsAbs(src) {
				src = filepath.Join(filepath.Dir(b.opts.ConfigPath), src)
			}
			data, err := os.ReadFile(src)
			if err != nil {
				return fmt.Errorf("%s: extra file: %w", pkg, err)
			}
			files[dst] = data
		}
	}
	sbom, err := b.sbom(dir)
	if err != nil {
		return err
	}
	files["/etc/gokrazy/sbom.json"] = sbom
	return b.writeFiles(dir, files)
}

// writeFiles writes files (by path in the image) into the tree at dir.
// The tree has links (/var to /perm/var, /etc/resolv.conf to /tmp) that
// point outside it on the build machine: no file may be written through
// one.
func (b *build) writeFiles(dir string, files map[string][]byte) error {
	for name, data := range files {
		mode := fs.FileMode(0o644)
		if name == "/etc/gokr-pw.txt" {
			mode = 0o400
		}
		p := dir
		for _, elem := range strings.Split(strings.Trim(name, "/"), "/") {
			p = filepath.Join(p, elem)
			if fi, err := os.Lstat(p); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
				return fmt.Errorf("extra file %s: the image has a link at %s", name, strings.TrimPrefix(p, dir))
			}
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, mode); err != nil {
			return err
		}
	}
	return nil
}

// sbom is a small bill of materials in the shape gokrazy's status page
// reads: a hash over the configuration and every program.
func (b *build) sbom(dir string) ([]byte, error) {
	cfg, err := json.Marshal(b.cfg)
	if err != nil {
		return nil, err
	}
	type pkg struct {
		Path   string `json:"path"`
		SHA256 string `json:"sha256"`
	}
	var pkgs []pkg
	for _, p := range b.programs {
		sum, err := fileSHA256(filepath.Join(dir, filepath.FromSlash(p.path)))
		if err != nil {
			return nil, err
		}
		pkgs = append(pkgs, pkg{p.pkg, sum})
	}
	ch := sha256.Sum256(cfg)
	inner, err := json.Marshal(struct {
		ConfigHash string `json:"config_hash"`
		Packages   []pkg  `json:"go_packages"`
	}{hex.EncodeToString(ch[:]), pkgs})
	if err != nil {
		return nil, err
	}
	ih := sha256.Sum256(inner)
	return json.Marshal(struct {
		Hash string          `json:"sbom_hash"`
		SBOM json.RawMessage `json:"sbom"`
	}{hex.EncodeToString(ih[:]), inner})
}

// squash packs the tree as the root squashfs: zlib (the gokrazy kernels
// only read that), every file owned by root, and every timestamp the
// build time, so that the same tree gives the same bytes.
func (b *build) squash(ctx context.Context, dir, out string) error {
	t := strconv.FormatInt(b.opts.BuildTime.Unix(), 10)
	cmd := exec.CommandContext(ctx, "mksquashfs", dir, out, "-noappend", "-quiet", "-no-progress",
		"-comp", "gzip", "-all-root", "-no-xattrs", "-mkfs-time", t, "-all-time", t,
		"-processors", strconv.Itoa(runtime.NumCPU()))
	if msg, err := cmd.CombinedOutput(); err != nil {
		if _, lookErr := exec.LookPath("mksquashfs"); lookErr != nil {
			return fmt.Errorf("mksquashfs not found: install Debian's squashfs-tools")
		}
		return fmt.Errorf("mksquashfs: %w\n%s", err, msg)
	}
	return nil
}

// utcZone is the UTC zone file from Go's own time zone database, so the
// image does not depend on the build host's local time.
func utcZone() ([]byte, error) {
	z, err := zip.OpenReader(filepath.Join(runtime.GOROOT(), "lib", "time", "zoneinfo.zip"))
	if err != nil {
		return nil, fmt.Errorf("time zone database: %w", err)
	}
	defer z.Close()
	f, err := z.Open("UTC")
	if err != nil {
		return nil, fmt.Errorf("time zone database: %w", err)
	}
	defer f.Close()
	return io.ReadAll(f)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// copyTree copies regular files and directories (module caches are
// read-only; copies are made writable so the temporary tree can be
// removed).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}

// readGlob reads the files of dir matching each pattern, sorted, keyed
// by their path relative to dir with forward slashes.
func readGlob(dir string, patterns ...string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, pat := range patterns {
		matches, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, err
		}
		sort.Strings(matches)
		for _, m := range matches {
			rel, _ := filepath.Rel(dir, m)
			data, err := os.ReadFile(m)
			if err != nil {
				return nil, err
			}
			out[filepath.ToSlash(rel)] = data
		}
	}
	return out, nil
}

// rootPassword is the gokrazy password in the root file system. gokrazy
// reads /perm/gokr-pw.txt first, which the first-install image holds
// with the real password; the root, which every update bundle carries,
// holds this one instead: derived from the signing key and the build, so
// that the image is reproducible, and useless to whoever unpacks a
// bundle. gokrazy falls back to it only when /perm is not mounted, and
// programs on the box then read the same file.
func (b *build) rootPassword() string {
	mac := hmac.New(sha256.New, b.opts.SigningKey.Seed())
	mac.Write([]byte("psigate root gokrazy password\x00" + b.opts.Version + "\x00" + b.opts.BuildTime.Format(time.RFC3339)))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:18])
}
