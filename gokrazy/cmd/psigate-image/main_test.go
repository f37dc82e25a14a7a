package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"2G": 2 << 30, "1500M": 1500 << 20, "31914983424": 31914983424, "1t": 1 << 40, "64k": 64 << 10} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "G", "-1G", "0", "2X", "1.5G", "9999999999T"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestParseBuildTime(t *testing.T) {
	if got, err := parseBuildTime("2026-11-26T12:00:00Z", "1"); err != nil || !got.Equal(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("flag: %v %v", got, err)
	}
	if got, err := parseBuildTime("", "1700000000"); err != nil || got.Unix() != 1700000000 {
		t.Errorf("SOURCE_DATE_EPOCH: %v %v", got, err)
	}
	for _, bad := range [][2]string{{"yesterday", ""}, {"", "soon"}} {
		if _, err := parseBuildTime(bad[0], bad[1]); err == nil {
			t.Errorf("parseBuildTime(%q, %q): no error", bad[0], bad[1])
		}
	}
}

// The first build makes a random password, file mode 0600; later builds
// read the same one; a short one is refused.
func TestEnsurePassword(t *testing.T) {
	file := filepath.Join(t.TempDir(), "psigate", "gokr-pw.txt")
	pw, err := ensurePassword(file)
	if err != nil || len(pw) < 20 {
		t.Fatalf("first: %q %v", pw, err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v %v", fi.Mode(), err)
	}
	if again, err := ensurePassword(file); err != nil || again != pw {
		t.Fatalf("second: %q %v, want the first", again, err)
	}
	if err := os.WriteFile(file, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ensurePassword(file); err == nil {
		t.Fatal("a 5-character password was accepted")
	}
}
