package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/psigate/psigate/gokrazy/bundle"
	"github.com/psigate/psigate/gokrazy/ota"
)

// options are psigate-push's flags.
type options struct {
	host         string        // e.g. "192.168.1.20:8080"
	passwordFile string        // e.g. "out/amd64/gokr-pw.txt"
	keyFile      string        // e.g. "update-signing.pub"; empty: no signature check
	bundle       string        // e.g. "psigate-1.4.0-amd64.psig"
	timeout      time.Duration // for the box to come back with the new build, e.g. 5m
	kexec        bool          // false sends kexec=off
	poll         time.Duration // between BuildTimestamp polls, e.g. 1s
}

// requiredFeatures are the update features psigate-push relies on:
// PARTUUID root= rewriting and a digest answer to every write.
var requiredFeatures = []string{"partuuid", "updatehash"}

// push installs the bundle on the box, printing each step to out.
func push(ctx context.Context, o options, out io.Writer) error {
	dir, err := os.MkdirTemp("", "psigate-push-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	var m bundle.Manifest
	err = step(out, "bundle", func() (string, error) {
		staged, note, err := stageBundle(o.bundle, o.keyFile, dir)
		m = staged
		return fmt.Sprintf("%s %s for %s, build %s, %s", m.Product, m.Version, m.Target, m.BuildTimestamp, note), err
	})
	if err != nil {
		return err
	}
	password, err := readPassword(o.passwordFile)
	if err != nil {
		return err
	}
	c := ota.New(o.host, password)
	before, err := checkDevice(ctx, c, m, out)
	if err != nil {
		return err
	}
	if err := install(ctx, c, m, dir, out); err != nil {
		return err
	}
	if err := rebootDevice(ctx, c, o.kexec, out); err != nil {
		return err
	}
	return step(out, "running", func() (string, error) {
		return waitForBuild(ctx, c, m.BuildTimestamp, before == m.BuildTimestamp, o)
	})
}

// step runs f and prints its name, its note and how long it took.
func step(out io.Writer, name string, f func() (string, error)) error {
	start := time.Now()
	note, err := f()
	took := time.Since(start).Round(time.Millisecond)
	if err != nil {
		fmt.Fprintf(out, "%-9s FAILED after %v\n", name, took)
		return fmt.Errorf("%s: %w", name, err)
	}
	fmt.Fprintf(out, "%-9s %s (%v)\n", name, note, took)
	return nil
}

// stageBundle checks the bundle and writes its parts into dir as
// <part>.img.
func stageBundle(path, keyFile, dir string) (bundle.Manifest, string, error) {
	var pub ed25519.PublicKey
	note := "signature not checked (no -key)"
	if keyFile != "" {
		var err error
		if pub, err = bundle.LoadPublicKey(keyFile); err != nil {
			return bundle.Manifest{}, "", err
		}
		note = "signed by key " + bundle.KeyID(pub)
	}
	f, err := os.Open(path)
	if err != nil {
		return bundle.Manifest{}, "", err
	}
	defer f.Close()
	m, err := bundle.ReadOnHost(f, pub, "", func(p bundle.Part) (io.WriteCloser, error) {
		return os.Create(filepath.Join(dir, p.File))
	})
	if err != nil {
		return bundle.Manifest{}, "", fmt.Errorf("%s: %w", path, err)
	}
	return m, note, nil
}

func readPassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the gokrazy password: %w", err)
	}
	pw := strings.TrimSpace(string(b))
	if pw == "" {
		return "", fmt.Errorf("%s is empty: a box without a gokrazy password takes no updates over the network", path)
	}
	return pw, nil
}

// checkDevice checks the device's update features and returns the build
// it runs.
func checkDevice(ctx context.Context, c *ota.Client, m bundle.Manifest, out io.Writer) (string, error) {
	err := step(out, "features", func() (string, error) {
		f, err := c.Features(ctx)
		if err != nil {
			return "", err
		}
		for _, want := range requiredFeatures {
			if !ota.HasFeature(f, want) {
				return "", fmt.Errorf("the box's gokrazy lacks the %q update feature (it has %q); update it with gok first", want, f)
			}
		}
		return f, nil
	})
	if err != nil {
		return "", err
	}
	var before string
	err = step(out, "before", func() (string, error) {
		st, err := c.Status(ctx)
		if err != nil {
			return "", err
		}
		before = st.BuildTimestamp
		// A bundle for the other kind of box would leave it unable to
		// boot: a Pi's boot files on a PC's boot partition, or the reverse.
		if st.Target() != m.Target {
			return "", fmt.Errorf("the bundle is for %s, but the box is a %q (%s): nothing was written", m.Target, st.Model, st.Target())
		}
		return fmt.Sprintf("build %s on %s", before, st.Model), nil
	})
	return before, err
}

// install writes the parts in gok's order: root, boot, MBR.
func install(ctx context.Context, c *ota.Client, m bundle.Manifest, dir string, out io.Writer) error {
	puts := map[string]func(context.Context, io.Reader) error{
		bundle.PartRoot: c.PutRoot,
		bundle.PartBoot: c.PutBoot,
		bundle.PartMBR:  c.PutMBR,
	}
	for _, name := range []string{bundle.PartRoot, bundle.PartBoot, bundle.PartMBR} {
		p, _ := m.Part(name) // Read insists on all three
		err := step(out, name, func() (string, error) {
			f, err := os.Open(filepath.Join(dir, p.File))
			if err != nil {
				return "", err
			}
			defer f.Close()
			start := time.Now()
			if err := puts[name](ctx, f); err != nil {
				return "", err
			}
			return fmt.Sprintf("%d bytes written, sha256 confirmed, %s", p.Size, rate(p.Size, time.Since(start))), nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func rate(n int64, d time.Duration) string {
	if d <= 0 {
		return "instantly"
	}
	return fmt.Sprintf("%.1f MB/s", float64(n)/d.Seconds()/1e6)
}

func rebootDevice(ctx context.Context, c *ota.Client, kexec bool, out io.Writer) error {
	if err := step(out, "switch", func() (string, error) {
		return "the next boot runs the new root partition", c.Switch(ctx)
	}); err != nil {
		return err
	}
	var opts []ota.RebootOption
	if !kexec {
		opts = append(opts, ota.WithoutKexec())
	}
	return step(out, "reboot", func() (string, error) {
		return "requested", c.Reboot(ctx, opts...)
	})
}

// waitForBuild polls the device until it runs build want. When the device
// ran want before the update already, it must first be seen down, or the
// old system would pass for the new one.
func waitForBuild(ctx context.Context, c *ota.Client, want string, mustGoDown bool, o options) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	last := "no answer yet"
	for {
		reqCtx, reqCancel := context.WithTimeout(ctx, 5*time.Second)
		got, err := c.BuildTimestamp(reqCtx)
		reqCancel()
		switch {
		case errors.Is(err, ota.ErrUnauthorized):
			return "", err // the new build has another password
		case err != nil:
			mustGoDown = false
			last = err.Error()
		case got == want && !mustGoDown:
			return "build " + want, nil
		default:
			last = "build " + got
		}
		select {
		case <-ctx.Done():
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return "", ctx.Err()
			}
			return "", fmt.Errorf("the box did not come back running build %s within %v (last: %s); if it comes back with the old build, the new one failed to boot or was rolled back", want, o.timeout, last)
		case <-time.After(o.poll):
		}
	}
}
