package firmware

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/psigate/psigate/gokrazy/bundle"
	"github.com/psigate/psigate/gokrazy/ota"
)

// guardState is the part of bootguard's state.json (next to its
// rollback file) the updater reads: the root partition bootguard last
// confirmed healthy, and its version.
type guardState struct {
	GoodRoot    int    `json:"goodRoot"`
	GoodVersion string `json:"goodVersion"`
}

// ErrOnTrial: bootguard has not confirmed the running root partition.
var ErrOnTrial = errors.New("the running firmware is not yet confirmed healthy")

// bootState reads bootguard's view of the running root once. wait says
// why an install must wait, or "" when it need not: an install writes the
// root partition that is not running. Until bootguard has confirmed the
// running one healthy, that other partition is the fallback it rolls
// back to (after an update), or bootguard has not recorded any good root
// yet (a new box) and would take the new version as good without a
// trial. Either way the install waits. Without a device nothing is
// written, so nothing waits. confirmed is the version bootguard confirmed
// on the running root, "" when it has not.
func (u *Updater) bootState() (wait, confirmed string) {
	root, rootErr := u.root()
	st, stErr := guardState{}, error(nil)
	if u.opts.RollbackFile != "" {
		st, stErr = u.guardState()
	}
	if rootErr == nil && stErr == nil && u.opts.RollbackFile != "" && st.GoodRoot == root.Partition {
		confirmed = st.GoodVersion
	}
	if u.opts.Device == nil || u.opts.RollbackFile == "" {
		return "", confirmed
	}
	switch {
	case rootErr != nil:
		wait = fmt.Sprintf("the running root partition is unknown (%v)", rootErr)
	case errors.Is(stErr, os.ErrNotExist):
		wait = "bootguard has not yet confirmed this firmware healthy; it does a minute or so after the appliance starts"
	case stErr != nil:
		wait = fmt.Sprintf("bootguard's state cannot be read (%v)", stErr)
	case st.GoodRoot != root.Partition:
		wait = fmt.Sprintf("version %s runs on trial from partition %d; bootguard keeps it once it has stayed healthy, and until then partition %d holds the version it falls back to", u.opts.Release.Version, root.Partition, st.GoodRoot)
	}
	return wait, confirmed
}

func (u *Updater) trialError(why string) error {
	return fmt.Errorf("%w: %s; try again then", ErrOnTrial, why)
}

func (u *Updater) root() (ota.Root, error) {
	if u.opts.Cmdline == "" {
		return ota.Root{}, errors.New("no kernel command line")
	}
	b, err := os.ReadFile(u.opts.Cmdline)
	if err != nil {
		return ota.Root{}, err
	}
	return ota.ParseRoot(string(b))
}

func (u *Updater) guardState() (guardState, error) {
	b, err := os.ReadFile(filepath.Join(filepath.Dir(u.opts.RollbackFile), "state.json"))
	if err != nil {
		return guardState{}, err
	}
	var st guardState
	if err := json.Unmarshal(b, &st); err != nil {
		return guardState{}, fmt.Errorf("state.json: %w", err)
	}
	return st, nil
}

// checkDisk refuses a bundle whose boot partition names another disk
// than the one running: built with another Hostname, its kernel would
// wait for ever for its root.
func (u *Updater) checkDisk(m bundle.Manifest) error {
	if m.Disk == "" || u.opts.Cmdline == "" {
		return nil
	}
	root, err := u.root()
	if err != nil || root.Disk == "" {
		return nil // not a gokrazy GPT command line: nothing to compare
	}
	if root.Disk != m.Disk {
		return fmt.Errorf("%w: the bundle's boot partition boots the disk %s, this box's disk is %s (was the image built with another Hostname?); installing it would leave the box unable to find its root", ErrRefused, m.Disk, root.Disk)
	}
	return nil
}
