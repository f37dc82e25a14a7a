package fat

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The real peers: fsck.fat from dosfstools and mtools, which implement FAT
// independently of this package.

// peer returns the path of tool, skipping the test when it is missing
// unless PSIGATE_REQUIRE_PEERS=1.
func peer(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err == nil {
		return p
	}
	const hint = "apt-get install -y dosfstools mtools"
	if os.Getenv("PSIGATE_REQUIRE_PEERS") == "1" {
		t.Fatalf("%s is required (PSIGATE_REQUIRE_PEERS=1) but missing: %v; %s", tool, err, hint)
	}
	t.Skipf("%s not installed, skipping (%s; PSIGATE_REQUIRE_PEERS=1 makes this fail)", tool, hint)
	return ""
}

// saveImage writes img to a temporary file for the peers.
func saveImage(t *testing.T, img []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "boot.img")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fsckQuiet matches the lines fsck.fat -n -v prints for a clean file
// system. Findings come as other lines, and some (a wrong long-name
// checksum) leave the exit status 0.
var fsckQuiet = regexp.MustCompile(`^(fsck\.fat \d|Checking (we can access|for unused)|Boot sector contents:|` +
	`System ID "|Media byte 0x|First FAT starts|Root directory starts|Data area starts|\s*\d+ |.*: \d+ files, \d+/\d+ clusters$)`)

// fsckClean runs fsck.fat read-only and fails on any finding.
func fsckClean(t *testing.T, path string) {
	t.Helper()
	out, err := exec.Command(peer(t, "fsck.fat"), "-n", "-v", path).CombinedOutput()
	if err != nil {
		t.Fatalf("fsck.fat -n -v: %v\n%s", err, out)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !fsckQuiet.MatchString(l) {
			t.Fatalf("fsck.fat -n -v reports %q:\n%s", l, out)
		}
	}
}

// mtools runs one mtools command (mdir, mtype, minfo) on the image.
func mtools(t *testing.T, tool string, args ...string) string {
	t.Helper()
	cmd := exec.Command(peer(t, tool), args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "MTOOLS_LOWER_CASE=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, stderr.Bytes())
	}
	return string(out)
}

// checkPeers runs fsck.fat on the image, reads want's files back with
// mtype and checks that mdir lists every long name.
func checkPeers(t *testing.T, img []byte, want map[string][]byte, samples []string) {
	t.Helper()
	path := saveImage(t, img)
	t.Run("fsck", func(t *testing.T) { fsckClean(t, path) })
	t.Run("mtype", func(t *testing.T) {
		for _, p := range samples {
			if got := mtools(t, "mtype", "-i", path, "::/"+p); got != string(want[p]) {
				t.Errorf("mtype ::/%s: %d bytes, want %d, equal %v", p, len(got), len(want[p]), got == string(want[p]))
			}
		}
	})
	t.Run("mdir", func(t *testing.T) {
		if len(want) == 0 {
			t.Skip("mdir fails on an empty root directory")
		}
		listed := map[string]bool{}
		for _, l := range strings.Split(strings.TrimSpace(mtools(t, "mdir", "-/", "-b", "-i", path, "::/")), "\n") {
			listed[strings.TrimSuffix(strings.TrimPrefix(l, "::/"), "/")] = true
		}
		for p := range want {
			if !listed[p] {
				t.Errorf("mdir -/ -b does not list %q", p)
			}
			delete(listed, p)
		}
		if len(listed) > 0 {
			t.Errorf("mdir -/ -b lists more than was added: %v", listed)
		}
		long := mtools(t, "mdir", "-/", "-i", path, "::/")
		for p := range want {
			if name := filepath.Base(p); hasLongName(name) && !strings.Contains(long, " "+name+"\n") {
				t.Errorf("mdir -/ does not show the long name %q", name)
			}
		}
	})
}

// hasLongName reports whether the writer gives name long-name entries.
func hasLongName(name string) bool {
	base, ext, lossy := shortBasis(name)
	return lossy || shortString(shortBytes(base, ext)) != name
}
