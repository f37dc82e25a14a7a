package firmware

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// guardState is the part of bootguard's state.json (next to its
// rollback file) that says which version it has confirmed good.
type guardState struct {
	GoodVersion string `json:"goodVersion"`
}

// onTrial reports whether bootguard has not yet confirmed the running
// version: it runs from the partition an update wrote, and the other
// partition holds the version it falls back to. Installing now would
// overwrite that fallback, so Install waits until the trial is over.
// Without bootguard's state (no bootguard, or before its first
// confirmation on a new box) there is no trial.
func (u *Updater) onTrial() bool {
	good := u.confirmed()
	return good != "" && good != u.opts.Release.Version
}

// confirmed is the version bootguard last confirmed healthy, "" when it
// has confirmed none.
func (u *Updater) confirmed() string {
	if u.opts.RollbackFile == "" {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(u.opts.RollbackFile), "state.json"))
	if err != nil {
		return ""
	}
	var s guardState
	if err := json.Unmarshal(b, &s); err != nil {
		return ""
	}
	return s.GoodVersion
}

// ErrOnTrial: the running version is not yet confirmed healthy.
var ErrOnTrial = errors.New("the running firmware is still on trial")

func (u *Updater) trialError() error {
	return fmt.Errorf("%w: version %s must stay healthy for a few minutes before bootguard keeps it (its fallback is on the partition an update would overwrite); try again then", ErrOnTrial, u.opts.Release.Version)
}
