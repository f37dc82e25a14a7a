// Package firmware installs signed update bundles on the appliance and
// reports what runs: the release of the running image, the update key it
// trusts, the last install attempt and a rollback made by bootguard.
//
// An update is A/B, through gokrazy's update API (the Device): the
// bundle is first staged on disk and verified as a whole (signature,
// target, every part's hash, no part missing), and only then are the
// root, boot and MBR written, the next boot switched to the new root
// partition and the appliance rebooted. If the new version does not come
// up healthy, bootguard switches back and leaves a rollback event, which
// the appliance raises as an alarm until the admin dismisses it.
package firmware

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/psigate/psigate/gokrazy/bundle"
)

// Device writes partitions and reboots: gokrazy's update API on the box
// (*ota.Client satisfies it).
type Device interface {
	PutRoot(ctx context.Context, r io.Reader) error // the inactive root partition
	PutBoot(ctx context.Context, r io.Reader) error
	PutMBR(ctx context.Context, r io.Reader) error
	Switch(ctx context.Context) error // boot the inactive root partition next
	Reboot(ctx context.Context) error
}

// Alarms raises and clears the rollback alarm (the appliance's alarm
// registry, at major severity).
type Alarms interface {
	Raise(code, text string)
	Clear(code string)
}

// AlarmRolledBack is the alarm code raised while a rollback event is not
// dismissed.
const AlarmRolledBack = "firmware-rolled-back"

// Sentinel errors of Install; the messages that wrap them are fit for an
// admin.
var (
	// ErrBusy: another install runs, or one has finished and the
	// appliance is about to reboot.
	ErrBusy = errors.New("a firmware update is already in progress")
	// ErrUnavailable: this appliance cannot install updates (no update
	// key, or not running from a psigate image).
	ErrUnavailable = errors.New("firmware updates are not possible here")
	// ErrRefused: the bundle is not one to install (bad signature, wrong
	// target, truncated, corrupt, incomplete); nothing was written.
	ErrRefused = errors.New("firmware bundle refused")
)

// unavailableError says why updates are not possible; it matches
// ErrUnavailable.
type unavailableError string

func (e unavailableError) Error() string        { return string(e) }
func (e unavailableError) Is(target error) bool { return target == ErrUnavailable }

// Release describes the running image, as the image builder records it
// in /etc/psigate/release.json.
type Release struct {
	Version        string    `json:"version"`        // e.g. "1.4.0"
	Target         string    `json:"target"`         // e.g. "amd64", "rpi"; "" off a psigate image
	BuildTime      time.Time `json:"buildTime"`      // zero when unknown
	BuildTimestamp string    `json:"buildTimestamp"` // e.g. "2025-03-01T12:00:00Z", as gokrazy shows it
}

// ReadRelease reads a release file.
func ReadRelease(path string) (Release, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Release{}, fmt.Errorf("firmware: release: %w", err)
	}
	var r Release
	if err := json.Unmarshal(data, &r); err != nil {
		return Release{}, fmt.Errorf("firmware: release %s: %w", path, err)
	}
	if r.Version == "" {
		return Release{}, fmt.Errorf("firmware: release %s: no version", path)
	}
	return r, nil
}

// Options configure an Updater.
type Options struct {
	// Dir holds the staged parts of the bundle being installed and the
	// record of the last attempt; e.g. /perm/psigate/firmware.
	Dir string
	// PublicKey verifies bundles; nil means this image trusts no update
	// key and refuses every bundle.
	PublicKey ed25519.PublicKey
	// Release is the running image.
	Release Release
	// Device writes the partitions; nil off a gokrazy box.
	Device Device
	// NoDevice says why Device is nil, for the admin; default "firmware
	// updates need the appliance running from a psigate image".
	NoDevice string
	// RollbackFile is where bootguard leaves a rollback event; e.g.
	// /perm/bootguard/rollback.json. "" when there is none to read.
	RollbackFile string
	// Alarms gets the rollback alarm; nil for none.
	Alarms Alarms
	Log    *slog.Logger
	// Cmdline is the kernel command line file, which names the running
	// root partition and the disk; default /proc/cmdline when Device is
	// set.
	Cmdline string
	// Now is the clock; default time.Now.
	Now func() time.Time
	// RebootDelay is how long after a successful install the appliance
	// reboots, so that the answer reaches the admin; default 2 s.
	RebootDelay time.Duration
	// WriteTimeout bounds writing the partitions and switching; default
	// 15 min.
	WriteTimeout time.Duration
}

// phase of the updater.
type phase int

const (
	idle phase = iota
	installing
	rebooting
)

// Updater installs bundles, one at a time.
type Updater struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	phase   phase
	step    string   // what an install is doing, e.g. "writing the root partition"
	last    *Attempt // nil until loaded or made
	lastSet bool     // last has been loaded from disk (or replaced)
}

// New returns an Updater. It does no I/O.
func New(o Options) *Updater {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RebootDelay <= 0 {
		o.RebootDelay = 2 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 15 * time.Minute
	}
	if o.NoDevice == "" {
		o.NoDevice = "firmware updates need the appliance running from a psigate image"
	}
	if o.Cmdline == "" && o.Device != nil {
		o.Cmdline = "/proc/cmdline"
	}
	return &Updater{opts: o, log: o.Log}
}

// Attempt is the record of one install.
type Attempt struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Version and Target are the bundle's, once its signature verified.
	Version string `json:"version,omitempty"`
	Target  string `json:"target,omitempty"`
	OK      bool   `json:"ok"` // written and switched; the reboot follows
	Error   string `json:"error,omitempty"`
	// Warning is a remark on a successful install, e.g. that the version
	// is the running one.
	Warning string `json:"warning,omitempty"`
}

// Status is what the portal shows about firmware.
type Status struct {
	Running Release `json:"running"`
	// KeyID names the trusted update key; "" when there is none.
	KeyID string `json:"keyID,omitempty"`
	// Updatable is true when a bundle can be installed here;
	// Unavailable says why not.
	Updatable   bool   `json:"updatable"`
	Unavailable string `json:"unavailable,omitempty"`
	// Busy is true while a bundle is being installed (Step says what is
	// being done) and once one is installed, until the reboot (Rebooting).
	Busy      bool   `json:"busy"`
	Step      string `json:"step,omitempty"`
	Rebooting bool   `json:"rebooting"`
	// Last is the last install attempt, kept across reboots.
	Last *Attempt `json:"lastAttempt,omitempty"`
	// Rollback is bootguard's rollback event while it is not dismissed.
	Rollback *RollbackEvent `json:"rollback,omitempty"`
	// RollbackError says why the rollback file could not be read.
	RollbackError string `json:"rollbackError,omitempty"`
	// OnTrial is true until bootguard has confirmed the running root
	// partition healthy; installs wait until then (Trial says why).
	OnTrial bool   `json:"onTrial"`
	Trial   string `json:"trial,omitempty"`
	// Confirmed is the version bootguard last confirmed healthy.
	Confirmed string `json:"confirmedVersion,omitempty"`
}

// cannotVerify says why bundles cannot even be verified, or "".
func (u *Updater) cannotVerify() string {
	switch {
	case u.opts.PublicKey == nil:
		return "this image trusts no update key"
	case u.opts.Release.Target == "":
		return "the running release does not name its target (no release file)"
	}
	return ""
}

// unavailable says why bundles cannot be installed, or "".
func (u *Updater) unavailable() string {
	if why := u.cannotVerify(); why != "" {
		return why
	}
	if u.opts.Device == nil {
		return u.opts.NoDevice
	}
	return ""
}

// Status reports the running release, the trusted key, whether updates
// are possible, the last attempt and an undismissed rollback. It reads
// the rollback file and raises or clears the alarm to match.
func (u *Updater) Status() Status {
	s := Status{Running: u.opts.Release, Unavailable: u.unavailable()}
	s.Trial, s.Confirmed = u.bootState()
	s.OnTrial = s.Trial != ""
	s.Updatable = s.Unavailable == ""
	if u.opts.PublicKey != nil {
		s.KeyID = bundle.KeyID(u.opts.PublicKey)
	}
	u.mu.Lock()
	s.Busy, s.Rebooting, s.Step = u.phase != idle, u.phase == rebooting, u.step
	s.Last = u.lastAttempt()
	u.mu.Unlock()
	ev, err := u.RefreshAlarm()
	s.Rollback = ev
	if err != nil {
		s.RollbackError = err.Error()
	}
	return s
}
