package firmware

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// RollbackEvent is what bootguard (gokrazy/cmd/bootguard) records when
// a new version did not come up healthy and it booted the previous one
// again.
type RollbackEvent struct {
	Time time.Time `json:"time"`
	// FromVersion is the version that failed, on root partition number
	// FromRoot (e.g. 3).
	FromVersion string `json:"fromVersion"`
	FromRoot    int    `json:"fromRoot"`
	// ToVersion is the version that runs again, on ToRoot (e.g. 2).
	ToRoot    int    `json:"toRoot"`
	ToVersion string `json:"toVersion"`
	Reason    string `json:"reason"` // e.g. "not healthy for 1m0s within 5m0s of boot; last check: …"
}

// Text is the alarm text.
func (e RollbackEvent) Text() string {
	return fmt.Sprintf("Firmware update to version %s was rolled back to %s at %s: %s",
		orUnknown(e.FromVersion), orUnknown(e.ToVersion), e.Time.UTC().Format("2006-01-02 15:04:05 UTC"), orUnknown(e.Reason))
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

// readRollback reads the rollback file: nil when there is none.
func (u *Updater) readRollback() (*RollbackEvent, error) {
	if u.opts.RollbackFile == "" {
		return nil, nil
	}
	data, err := os.ReadFile(u.opts.RollbackFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("firmware: rollback event: %w", err)
	}
	var e RollbackEvent
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("firmware: rollback event %s: %w", u.opts.RollbackFile, err)
	}
	return &e, nil
}

// RefreshAlarm reads the rollback file and raises the rollback alarm
// while there is an undismissed event, or clears it. A file that does not
// parse still raises it: something was rolled back.
func (u *Updater) RefreshAlarm() (*RollbackEvent, error) {
	e, err := u.readRollback()
	if u.opts.Alarms == nil {
		return e, err
	}
	switch {
	case e != nil:
		u.opts.Alarms.Raise(AlarmRolledBack, e.Text())
	case err != nil:
		u.opts.Alarms.Raise(AlarmRolledBack, "A firmware update was rolled back, but its record does not read: "+err.Error())
	default:
		u.opts.Alarms.Clear(AlarmRolledBack)
	}
	return e, err
}

// DismissRollback acknowledges the rollback event: the file is renamed to
// rollback.dismissed.json next to it (replacing an older one) and the
// alarm is cleared. Without an event it does nothing.
func (u *Updater) DismissRollback() error {
	if u.opts.RollbackFile == "" {
		return nil
	}
	to := filepath.Join(filepath.Dir(u.opts.RollbackFile), "rollback.dismissed.json")
	err := os.Rename(u.opts.RollbackFile, to)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("firmware: dismissing the rollback event: %w", err)
	}
	if err == nil {
		u.log.Info("firmware: rollback event dismissed", "file", to)
	}
	_, err = u.RefreshAlarm()
	return err
}
