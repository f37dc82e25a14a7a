// Command psigate-image builds psigate's gokrazy images from an instance
// configuration (gok's config.json format): a full disk image to flash,
// and the boot, root and MBR parts of an over-the-air update with a
// bundle signed by the update key.
//
//	psigate-image -config gokrazy/instances/amd64/config.json -out out/amd64 -version 1.2.0
//
// The gokrazy password and the update signing key live in -secrets
// (default ~/.config/psigate), made on the first build: keep that folder,
// since every later image must carry the same password and be signed by
// the same key for the boxes in the field to accept its updates. The
// password is also written next to the images (gokr-pw.txt).
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/psigate/psigate/gokrazy/builder"
	"github.com/psigate/psigate/gokrazy/bundle"
)

func main() {
	var (
		o         builder.Options
		secrets   string
		buildTime string
	)
	config, configErr := os.UserConfigDir()
	flag.StringVar(&o.ConfigPath, "config", "gokrazy/instances/amd64/config.json", "instance configuration (gok's config.json)")
	flag.StringVar(&o.OutDir, "out", "out/amd64", "output folder")
	flag.StringVar(&o.Version, "version", "", "firmware version (required)")
	flag.StringVar(&secrets, "secrets", "", "folder of the gokrazy password and the update signing key, made on the first build (default $XDG_CONFIG_HOME/psigate or ~/.config/psigate)")
	flag.StringVar(&buildTime, "build-time", "", "timestamp of every file, RFC 3339 (default $SOURCE_DATE_EPOCH, else now)")
	size := flag.String("size", "2G", "size of the full disk image, e.g. 2G or 31914983424 (bytes); /perm takes what the boot and root partitions leave, so give the size of the target disk (or less) to use all of it: the image stays sparse")
	flag.BoolVar(&o.NoDisk, "no-disk", false, "write only the update parts and bundle")
	flag.StringVar(&o.ModuleDir, "module", ".", "the psigate source tree (where go.mod is)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	o.Log = log
	var err error
	if o.DiskSize, err = parseSize(*size); err != nil {
		fmt.Fprintln(os.Stderr, "psigate-image: -size:", err)
		os.Exit(2)
	}
	if secrets == "" {
		if configErr != nil {
			fmt.Fprintln(os.Stderr, "psigate-image: no -secrets and no user configuration folder:", configErr)
			os.Exit(2)
		}
		secrets = filepath.Join(config, "psigate")
	}
	if err := run(o, secrets, buildTime); err != nil {
		fmt.Fprintln(os.Stderr, "psigate-image:", err)
		os.Exit(1)
	}
}

func run(o builder.Options, secrets, buildTime string) error {
	var err error
	if o.BuildTime, err = parseBuildTime(buildTime, os.Getenv("SOURCE_DATE_EPOCH")); err != nil {
		return err
	}
	if o.Password, err = ensurePassword(filepath.Join(secrets, "gokr-pw.txt")); err != nil {
		return err
	}
	keyFile, pubFile := filepath.Join(secrets, "update-signing.key"), filepath.Join(secrets, "update-signing.pub")
	if _, err := os.Stat(keyFile); errors.Is(err, os.ErrNotExist) {
		if err := bundle.GenerateKey(keyFile, pubFile); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "psigate-image: made a new update signing key in %s: keep it; boxes with this image accept only updates it signs\n", keyFile)
	}
	if o.SigningKey, err = bundle.LoadPrivateKey(keyFile); err != nil {
		return err
	}
	if o.PublicKeyPEM, err = os.ReadFile(pubFile); err != nil {
		return err
	}
	pub, err := bundle.ParsePublicKey(o.PublicKeyPEM)
	if err != nil {
		return fmt.Errorf("%s: %w", pubFile, err)
	}
	if !pub.Equal(o.SigningKey.Public()) {
		return fmt.Errorf("%s does not match %s", pubFile, keyFile)
	}
	if o.CABundle, err = os.ReadFile("/etc/ssl/certs/ca-certificates.crt"); err != nil {
		return fmt.Errorf("CA certificates for the image (install Debian's ca-certificates): %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	r, err := builder.Build(ctx, o)
	if err != nil {
		return err
	}
	pwOut := filepath.Join(o.OutDir, "gokr-pw.txt")
	if err := os.WriteFile(pwOut, []byte(o.Password+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.Chmod(pwOut, 0o600); err != nil { // WriteFile keeps an older file's mode
		return err
	}
	if err := os.WriteFile(filepath.Join(o.OutDir, "update-signing.pub"), o.PublicKeyPEM, 0o644); err != nil {
		return err
	}
	fmt.Printf("psigate %s for %s in %s (%s)\n", o.Version, r.Target, o.OutDir, r.Took.Round(time.Millisecond))
	for _, p := range []struct{ name, path string }{{"disk", r.Disk}, {"boot", r.Boot}, {"root", r.Root}, {"mbr", r.MBR}, {"bundle", r.Bundle}} {
		if p.path != "" {
			fmt.Printf("  %-6s %s  %d bytes\n", p.name, p.path, r.Sizes[p.name])
		}
	}
	fmt.Printf("  gokrazy password: %s (user gokrazy)\n", filepath.Join(o.OutDir, "gokr-pw.txt"))
	return nil
}

func parseBuildTime(flagValue, epoch string) (time.Time, error) {
	switch {
	case flagValue != "":
		t, err := time.Parse(time.RFC3339, flagValue)
		if err != nil {
			return time.Time{}, fmt.Errorf("-build-time: %w", err)
		}
		return t, nil
	case epoch != "":
		n, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		return time.Unix(n, 0), nil
	}
	return time.Now(), nil
}

// ensurePassword reads the gokrazy password, making a random one on the
// first build.
func ensurePassword(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err == nil {
		pw := strings.TrimSpace(string(b))
		if len(pw) < 12 {
			return "", fmt.Errorf("%s: the password is shorter than 12 characters", file)
		}
		return pw, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	raw := make([]byte, 18)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	pw := base64.RawURLEncoding.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(file, []byte(pw+"\n"), 0o600); err != nil {
		return "", err
	}
	return pw, nil
}

// parseSize reads a size in bytes with an optional K, M, G or T suffix
// (powers of 1024).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'K', 'k':
			mult = 1 << 10
		case 'M', 'm':
			mult = 1 << 20
		case 'G', 'g':
			mult = 1 << 30
		case 'T', 't':
			mult = 1 << 40
		}
		if mult > 1 {
			s = s[:n-1]
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 || v > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	return v * mult, nil
}
