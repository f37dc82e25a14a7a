package sbctest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RequirePeersEnv is the environment variable that turns a missing peer
// from a skipped test into a failed one; .ci/run sets it to 1.
const RequirePeersEnv = "PSIGATE_REQUIRE_PEERS"

// FindPeer returns the path of the external program name, looked up on
// PATH and then in dirs (sbin directories are not on a normal user's
// PATH). Without it the test ends as PeerMissing says; pkg is the Debian
// package that provides it.
func FindPeer(t testing.TB, name, pkg string, dirs ...string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, serr := os.Stat(p); serr == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	PeerMissing(t, fmt.Sprintf("%s not found (%v); install the Debian package %s", name, err, pkg))
	return ""
}

// PeerMissing ends a test whose peer (a program, its modules) is not
// installed: skipped, or failed when RequirePeersEnv is 1.
func PeerMissing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv(RequirePeersEnv) == "1" {
		t.Fatal(msg + " (" + RequirePeersEnv + "=1)")
	}
	t.Skip(msg + ", or set " + RequirePeersEnv + "=1 to make this a failure")
}

// BaresipModules is the directory of baresip's modules that holds every
// one of want (file names such as "srtp.so"), Debian's first; without it
// the test ends as PeerMissing says.
func BaresipModules(t testing.TB, want ...string) string {
	t.Helper()
dirs:
	for _, d := range []string{"/usr/lib/baresip/modules", "/usr/local/lib/baresip/modules", "/usr/lib64/baresip/modules"} {
		for _, m := range want {
			if _, err := os.Stat(filepath.Join(d, m)); err != nil {
				continue dirs
			}
		}
		return d
	}
	PeerMissing(t, fmt.Sprintf("baresip modules %v not found; install the Debian package baresip-core", want))
	return ""
}
