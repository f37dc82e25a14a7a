package firmware

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/psigate/psigate/gokrazy/bundle"
)

// partOrder is the order parts are written in, as gok writes them: the
// root partition (inactive, harmless until switched) first, then the
// boot partition and the MBR, which the running system shares.
var partOrder = []string{"root", "boot", "mbr"}

// partWhat names the parts for the admin.
var partWhat = map[string]string{"root": "the root partition", "boot": "the boot partition", "mbr": "the MBR"}

// Install verifies a bundle and installs it: every part is staged under
// Dir while bundle.Read checks the signature, the target and each part's
// hash, and only a bundle that verified as a whole is written to the
// device (root, boot, MBR), switched to and, RebootDelay later, rebooted
// into. Staged files are removed in every case.
//
// One install runs at a time; another call meanwhile, or after a
// successful one until the reboot, gets ErrBusy. Without an update key,
// or a release that names the target, Install refuses at once
// (ErrUnavailable), reading nothing. Without a device it still verifies
// the bundle, so the admin learns whether it is good, and then answers
// ErrUnavailable, naming the verified version. A bundle of the running
// version is installed, with a warning.
//
// The device writes do not stop when ctx ends (a client that goes away
// must not leave a half-written boot partition); they are bounded by
// WriteTimeout.
//
// A bundle built before the running version is refused unless
// o.AllowOlder: an old signed bundle must not quietly bring back what a
// later version fixed.
//
// While bootguard has not yet confirmed the running version (ErrOnTrial),
// Install refuses without reading: the other root partition holds the
// fallback.
func (u *Updater) Install(ctx context.Context, r io.Reader, o InstallOptions) (bundle.Manifest, error) {
	if why, _ := u.bootState(); why != "" {
		return bundle.Manifest{}, u.trialError(why)
	}
	if err := u.begin(); err != nil {
		return bundle.Manifest{}, err
	}
	a := Attempt{Started: u.opts.Now().UTC()}
	m, err := u.install(ctx, r, o, &a)
	a.Finished = u.opts.Now().UTC()
	if err != nil {
		a.Error = err.Error()
		u.log.Warn("firmware install failed", "version", a.Version, "err", err, "duration", a.Finished.Sub(a.Started))
	} else {
		a.OK = true
		u.log.Info("firmware installed; rebooting", "version", m.Version, "in", u.opts.RebootDelay, "duration", a.Finished.Sub(a.Started))
	}
	u.finish(a)
	if err == nil {
		time.AfterFunc(u.opts.RebootDelay, u.reboot)
	}
	return m, err
}

// begin claims the updater for one install.
func (u *Updater) begin() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch u.phase {
	case installing:
		return fmt.Errorf("%w (%s)", ErrBusy, u.step)
	case rebooting:
		return fmt.Errorf("%w: an update is installed and the appliance is rebooting", ErrBusy)
	}
	u.phase, u.step = installing, "receiving the bundle"
	return nil
}

// finish records the attempt and leaves the updater idle, or rebooting
// after a successful install.
func (u *Updater) finish(a Attempt) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.phase, u.step = idle, ""
	if a.OK {
		u.phase = rebooting
	}
	u.setLast(a)
}

// setStep says what the install is doing; u.mu must not be held.
func (u *Updater) setStep(s string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.step = s
}

func (u *Updater) install(ctx context.Context, r io.Reader, o InstallOptions, a *Attempt) (bundle.Manifest, error) {
	if why := u.cannotVerify(); why != "" {
		return bundle.Manifest{}, unavailableError(why)
	}
	dir := filepath.Join(u.opts.Dir, "staging")
	// A crash may have left a staging directory behind.
	if err := os.RemoveAll(dir); err != nil {
		return bundle.Manifest{}, fmt.Errorf("firmware: clearing %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return bundle.Manifest{}, fmt.Errorf("firmware: staging directory: %w", err)
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil {
			u.log.Error("removing the staged firmware", "dir", dir, "err", err)
		}
	}()
	m, staged, err := u.stage(r, dir)
	a.Version, a.Target = m.Version, m.Target
	if err != nil {
		return m, err
	}
	if u.opts.Device == nil {
		return m, unavailableError(fmt.Sprintf("%s; the bundle of version %s for %s verified, but nothing was written", u.opts.NoDevice, m.Version, m.Target))
	}
	if err := u.checkDisk(m); err != nil {
		return m, err
	}
	if run := u.opts.Release.BuildTime; !o.AllowOlder && !run.IsZero() && m.BuildTime.Before(run) {
		return m, fmt.Errorf("%w: version %s was built %s, before the running %s (%s); an older firmware is installed only when asked to (allow older)", ErrRefused, m.Version, m.BuildTime.UTC().Format(time.DateTime), u.opts.Release.Version, run.UTC().Format(time.DateTime))
	}
	if m.Version == u.opts.Release.Version {
		a.Warning = fmt.Sprintf("version %s is the running version; it was installed again", m.Version)
		u.log.Warn("firmware bundle of the running version", "version", m.Version)
	}
	return m, u.write(ctx, m, staged)
}

// stage reads the bundle into files under dir; it returns the staged
// files by part name once the whole bundle has verified.
func (u *Updater) stage(r io.Reader, dir string) (bundle.Manifest, map[string]string, error) {
	start := time.Now()
	u.setStep("verifying the bundle")
	st := &stager{dir: dir, files: map[string]string{}}
	defer st.closeAll()
	m, err := bundle.Read(r, u.opts.PublicKey, u.opts.Release.Target, st.open)
	if err != nil {
		return m, nil, refused(err)
	}
	for _, name := range partOrder { // bundle.Read insists on them too
		if _, ok := st.files[name]; !ok {
			return m, nil, fmt.Errorf("%w: the bundle has no %s part", ErrRefused, name)
		}
	}
	if err := st.closeAll(); err != nil {
		return m, nil, err
	}
	u.log.Info("firmware bundle verified", "version", m.Version, "target", m.Target, "keyID", m.KeyID,
		"parts", len(st.files), "bytes", st.bytes, "duration", time.Since(start))
	return m, st.files, nil
}

// refused marks the bundle's verification errors as ErrRefused; other
// errors (reading the request, staging) stay as they are.
func refused(err error) error {
	for _, e := range []error{bundle.ErrSignature, bundle.ErrTarget, bundle.ErrTruncated, bundle.ErrCorrupt, errBadPart} {
		if errors.Is(err, e) {
			return fmt.Errorf("%w: %w", ErrRefused, err)
		}
	}
	return err
}

// errBadPart marks a part that psigate does not install.
var errBadPart = errors.New("unexpected part")

// stager creates a file for each part bundle.Read streams.
// InstallOptions are the admin's choices for one install.
type InstallOptions struct {
	// AllowOlder installs a bundle built before the running version.
	AllowOlder bool
}

// stagingReserve is the space staging leaves free on the state's file
// system.
var stagingReserve int64 = 64 << 20

type stager struct {
	dir    string
	files  map[string]string // part name -> staged file
	opened []*stagedFile
	bytes  int64
}

func (s *stager) open(p bundle.Part) (io.WriteCloser, error) {
	if !slices.Contains(partOrder, p.Name) {
		return nil, fmt.Errorf("%w %q (want root, boot or mbr)", errBadPart, p.Name)
	}
	if _, dup := s.files[p.Name]; dup {
		return nil, fmt.Errorf("%w: %q twice", errBadPart, p.Name)
	}
	// /perm also holds the appliance's store and bootguard's state:
	// staging must not fill it.
	var st unix.Statfs_t
	if err := unix.Statfs(s.dir, &st); err == nil {
		free := int64(st.Bavail) * int64(st.Bsize)
		if free-p.Size < stagingReserve {
			return nil, fmt.Errorf("firmware: staging %s needs %d MiB, and %d MiB of the %d MiB free must stay free for the appliance's state: free space on %s first", partWhat[p.Name], p.Size>>20, stagingReserve>>20, free>>20, s.dir)
		}
	}
	path := filepath.Join(s.dir, p.Name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("firmware: staging part %s: %w", p.Name, err)
	}
	s.files[p.Name] = path
	sf := &stagedFile{f: f, s: s, name: p.Name}
	s.opened = append(s.opened, sf)
	return sf, nil
}

// closeAll closes the files bundle.Read left open (it may not close the
// one it was writing when it failed) and reports the first error.
func (s *stager) closeAll() error {
	var first error
	for _, f := range s.opened {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	s.opened = nil
	return first
}

// stagedFile is one part's file; its errors name the part and explain a
// full disk.
type stagedFile struct {
	f      *os.File
	s      *stager
	name   string
	closed bool
}

func (sf *stagedFile) Write(p []byte) (int, error) {
	n, err := sf.f.Write(p)
	sf.s.bytes += int64(n)
	if err != nil {
		return n, sf.wrap(err)
	}
	return n, nil
}

func (sf *stagedFile) Close() error {
	if sf.closed {
		return nil
	}
	sf.closed = true
	if err := sf.f.Close(); err != nil {
		return sf.wrap(err)
	}
	return nil
}

func (sf *stagedFile) wrap(err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("firmware: staging part %s: not enough free space in %s for the bundle: %w", sf.name, sf.s.dir, err)
	}
	return fmt.Errorf("firmware: staging part %s: %w", sf.name, err)
}

// write puts the staged parts on the device in partOrder and switches
// the next boot to the new root partition.
func (u *Updater) write(ctx context.Context, m bundle.Manifest, staged map[string]string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), u.opts.WriteTimeout)
	defer cancel()
	d := u.opts.Device
	put := map[string]func(context.Context, io.Reader) error{"root": d.PutRoot, "boot": d.PutBoot, "mbr": d.PutMBR}
	for _, name := range partOrder {
		path, ok := staged[name]
		if !ok {
			continue
		}
		want, _ := m.Part(name)
		if err := u.writePart(ctx, want, path, put[name]); err != nil {
			if name != "root" {
				// The running system boots from these too.
				return fmt.Errorf("%w; %s may be damaged: install the update again before restarting the appliance", err, partWhat[name])
			}
			return err
		}
	}
	u.setStep("switching to the new root partition")
	start := time.Now()
	if err := d.Switch(ctx); err != nil {
		return fmt.Errorf("firmware: switching to the new root partition: %w", err)
	}
	u.log.Info("firmware: next boot switched to the new root partition", "duration", time.Since(start))
	return nil
}

// writePart sends a staged part to the device. The device answers the
// digest of what it wrote, which the client compares with what it sent;
// what was sent is compared here with the signed manifest, so a staged
// file damaged on /perm after its verification is caught too.
func (u *Updater) writePart(ctx context.Context, want bundle.Part, path string, put func(context.Context, io.Reader) error) error {
	what := partWhat[want.Name]
	u.setStep("writing " + what)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("firmware: %w", err)
	}
	defer f.Close()
	start := time.Now()
	h := sha256.New()
	n := &countWriter{w: h}
	if err := put(ctx, io.TeeReader(f, n)); err != nil {
		return fmt.Errorf("firmware: writing %s: %w", what, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n.n != want.Size || got != want.SHA256 {
		return fmt.Errorf("firmware: writing %s: sent %d bytes with SHA-256 %s, the signed manifest says %d bytes with %s: the staged copy changed on disk", what, n.n, got, want.Size, want.SHA256)
	}
	u.log.Info("firmware: part written", "part", want.Name, "bytes", n.n, "duration", time.Since(start))
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// reboot restarts the appliance into the installed version. When that
// fails the updater is usable again and the attempt says so.
func (u *Updater) reboot() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	u.log.Info("firmware: rebooting into the new version")
	err := u.opts.Device.Reboot(ctx)
	if err == nil {
		return
	}
	u.log.Error("firmware: reboot failed", "err", err)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.phase = idle
	a := *u.lastAttempt()
	a.OK = false
	a.Error = fmt.Sprintf("installed, but the reboot failed: %v; restart the appliance to run version %s", err, a.Version)
	u.setLast(a)
}

// lastFile keeps the last attempt across reboots.
func (u *Updater) lastFile() string { return filepath.Join(u.opts.Dir, "last-attempt.json") }

// lastAttempt is the last attempt, read from disk the first time; u.mu
// must be held.
func (u *Updater) lastAttempt() *Attempt {
	if u.lastSet {
		return u.last
	}
	u.lastSet = true
	data, err := os.ReadFile(u.lastFile())
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			u.log.Warn("firmware: reading the last attempt", "err", err)
		}
		return nil
	}
	var a Attempt
	if err := json.Unmarshal(data, &a); err != nil {
		u.log.Warn("firmware: reading the last attempt", "file", u.lastFile(), "err", err)
		return nil
	}
	u.last = &a
	return u.last
}

// setLast records an attempt in memory and on disk; u.mu must be held.
func (u *Updater) setLast(a Attempt) {
	u.last, u.lastSet = &a, true
	data, _ := json.MarshalIndent(a, "", "  ")
	if err := os.MkdirAll(u.opts.Dir, 0o700); err != nil {
		u.log.Error("firmware: keeping the last attempt", "err", err)
		return
	}
	if err := writeFileAtomic(u.lastFile(), data); err != nil {
		u.log.Error("firmware: keeping the last attempt", "err", err)
	}
}

// writeFileAtomic replaces path with data so that a crash leaves the old
// or the new content.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
