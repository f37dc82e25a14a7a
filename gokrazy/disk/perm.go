package disk

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// /perm is made by e2fsprogs' mke2fs, not in Go: go-diskfs v1.9.4's ext4
// writer takes its hash seed from crypto/rand and its times from time.Now
// with no way to set either (so no two images are equal), and it makes no
// lost+found. mke2fs is reproducible given the UUID, the hash seed,
// E2FSPROGS_FAKE_TIME and its configuration, which permConfig pins (the
// host's /etc/mke2fs.conf is not read). The bytes can still change with
// the e2fsprogs version.

// permConfig is mke2fs.conf for /perm: Debian 12's ext4 defaults without
// the size-dependent usage types ("small" would switch to 1 KiB blocks).
const permConfig = `[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384
	reserved_ratio = 5.0

[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
`

// findMke2fs returns the path of mke2fs, which is in sbin directories that
// a normal user's PATH often lacks.
func findMke2fs() (string, error) { return findSbin("mke2fs") }

// findSbin finds an e2fsprogs program in PATH or the sbin directories.
func findSbin(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/" + name, "/sbin/" + name} {
		if _, serr := os.Stat(p); serr == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %w", ErrNoMke2fs, err)
}

// formatPerm makes the ext4 file system labelled "perm" in partition p of
// the image file at path.
//
// Its UUID is p's GUID. Inode tables are left for the kernel to zero at
// first mount (lazy_itable_init), so that the image stays sparse and old
// data on the target medium cannot pass for inodes; the journal is zeroed
// here.
func formatPerm(mke2fs, path string, img Image, p partition) error {
	conf, err := os.CreateTemp("", "psigate-mke2fs-*.conf")
	if err != nil {
		return fmt.Errorf("formatting /perm: %w", err)
	}
	defer os.Remove(conf.Name())
	_, err = conf.WriteString(permConfig)
	if err := errors.Join(err, conf.Close()); err != nil {
		return fmt.Errorf("formatting /perm: writing %s: %w", conf.Name(), err)
	}
	ext := fmt.Sprintf("offset=%d,lazy_itable_init=1,hash_seed=%s,root_owner=0:0", p.offset(), permHashSeed(img.Hostname))
	args := []string{"-q", "-F", "-t", "ext4", "-T", "default", "-L", "perm", "-U", p.guid, "-E", ext}
	if len(img.PermFiles) > 0 {
		dir, err := os.MkdirTemp("", "psigate-perm-")
		if err != nil {
			return fmt.Errorf("formatting /perm: %w", err)
		}
		defer os.RemoveAll(dir)
		for name, data := range img.PermFiles {
			if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
				return fmt.Errorf("%w: Image.PermFiles: %q is not a file name", ErrInvalid, name)
			}
			f := filepath.Join(dir, name)
			if err := os.WriteFile(f, data, 0o600); err != nil {
				return fmt.Errorf("formatting /perm: %w", err)
			}
			if err := os.Chtimes(f, img.Time, img.Time); err != nil {
				return fmt.Errorf("formatting /perm: %w", err)
			}
		}
		if err := os.Chtimes(dir, img.Time, img.Time); err != nil {
			return fmt.Errorf("formatting /perm: %w", err)
		}
		args = append(args, "-d", dir)
	}
	args = append(args, path, strconv.FormatInt(p.size()/1024, 10)+"k")
	cmd := exec.Command(mke2fs, args...)
	// Only these variables: the caller's MKE2FS_* must not change the result.
	cmd.Env = []string{
		"MKE2FS_CONFIG=" + conf.Name(),
		"E2FSPROGS_FAKE_TIME=" + strconv.FormatInt(img.Time.Unix(), 10),
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("formatting /perm: %s: %w: %s", cmd, err, out)
	}
	return fixPermTimes(path, img, p, cmd.Env)
}

// fixPermTimes sets the change time of the files mke2fs copied into
// /perm, which it takes from the build machine's files (a change time
// cannot be set there), to img.Time, so that the image is reproducible.
func fixPermTimes(path string, img Image, p partition, env []string) error {
	if len(img.PermFiles) == 0 {
		return nil
	}
	debugfs, err := findSbin("debugfs")
	if err != nil {
		return fmt.Errorf("formatting /perm: %w", err)
	}
	names := make([]string, 0, len(img.PermFiles))
	for name := range img.PermFiles {
		names = append(names, name)
	}
	sort.Strings(names)
	var script strings.Builder
	for _, name := range names {
		fmt.Fprintf(&script, "set_inode_field /%s ctime @%d\n", name, img.Time.Unix())
	}
	cmd := exec.Command(debugfs, "-w", "-f", "-", fmt.Sprintf("%s?offset=%d", path, p.offset()))
	cmd.Env = env
	cmd.Stdin = strings.NewReader(script.String())
	out, err := cmd.CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("set_inode_field: ")) {
		return fmt.Errorf("formatting /perm: %s: %v: %s", cmd, err, out)
	}
	return nil
}

// permHashSeed is the seed of /perm's directory hashes (htree), derived
// from the hostname so that an image is reproducible.
func permHashSeed(hostname string) string {
	s := sha256.Sum256([]byte("psigate /perm hash seed\x00" + hostname))
	s[6] = s[6]&0x0f | 0x40 // a version 4 (random) UUID, RFC 9562 section 5.4
	s[8] = s[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", s[0:4], s[4:6], s[6:8], s[8:10], s[10:16])
}
