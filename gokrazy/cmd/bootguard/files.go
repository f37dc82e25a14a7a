package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Files in the state directory.
const (
	stateFile    = "state.json"
	rollbackFile = "rollback.json"
)

// release is /etc/psigate/release.json of the running root file system.
type release struct {
	Version        string    `json:"version"` // e.g. "1.4.0"; "unknown" without a release file
	Target         string    `json:"target"`  // e.g. "amd64"
	BuildTime      time.Time `json:"buildTime"`
	BuildTimestamp string    `json:"buildTimestamp"`
}

// readRelease reads the release file. Without one (a development image) the
// version is "unknown"; a damaged one gives "unknown" and an error to log.
func readRelease(path string) (release, error) {
	unknown := release{Version: "unknown"}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return unknown, nil
	}
	if err != nil {
		return unknown, fmt.Errorf("reading release file: %w", err)
	}
	var r release
	if err := json.Unmarshal(b, &r); err != nil {
		return unknown, fmt.Errorf("release file %s: %w", path, err)
	}
	if r.Version == "" {
		r.Version = "unknown"
	}
	return r, nil
}

// state is state.json: which root partition is known to work.
type state struct {
	GoodRoot    int       `json:"goodRoot"`    // 2 or 3
	GoodVersion string    `json:"goodVersion"` // e.g. "1.4.0"
	Since       time.Time `json:"since"`       // when GoodRoot was confirmed healthy
	// Trial counts the boots of a root partition on trial, so that a
	// version that reboots the box before the deadline is rolled back too.
	Trial *trial `json:"trial,omitempty"`
}

// trial is a root partition on trial.
type trial struct {
	Root    int    `json:"root"`    // 2 or 3
	Version string `json:"version"` // e.g. "1.5.0"
	Boots   int    `json:"boots"`   // boots of this root and version so far
	BootID  string `json:"bootID"`  // the kernel's boot_id of the last one counted
}

func loadState(dir string) (state, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return state{}, err
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return state{}, fmt.Errorf("%s: %w", stateFile, err)
	}
	if s.GoodRoot != 2 && s.GoodRoot != 3 {
		return state{}, fmt.Errorf("%s: goodRoot %d is not a root partition", stateFile, s.GoodRoot)
	}
	return s, nil
}

// rollbackRecord is rollback.json: the last rollback, for the admin.
type rollbackRecord struct {
	Time        time.Time `json:"time"`
	FromVersion string    `json:"fromVersion"` // the version that failed, e.g. "1.5.0"
	FromRoot    int       `json:"fromRoot"`    // its root partition, e.g. 3
	ToRoot      int       `json:"toRoot"`      // the good root partition, e.g. 2
	ToVersion   string    `json:"toVersion"`   // the good version, e.g. "1.4.0"
	Reason      string    `json:"reason"`      // e.g. "not healthy for 1m0s within 5m0s of boot; last check: …"
}

// writeJSON replaces dir/name with v, atomically: a crash leaves the old
// file or the new one, never a mix.
func writeJSON(dir, name string, v any) error {
	b, err := json.MarshalIndent(v, "", "\t")
	if err != nil {
		return err
	}
	return writeFileAtomic(dir, name, append(b, '\n'))
}

// writeFileAtomic writes a temporary file, syncs it, renames it over
// dir/name and syncs dir, so the rename survives a power cut.
func writeFileAtomic(dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, name+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// readBootID reads the kernel's random ID of this boot; "" if there is
// none, and then every start of bootguard counts as a boot.
func readBootID(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
