package disk

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
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
func findMke2fs() (string, error) {
	p, err := exec.LookPath("mke2fs")
	if err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/mke2fs", "/sbin/mke2fs"} {
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
	cmd := exec.Command(mke2fs, "-q", "-F", "-t", "ext4", "-T", "default",
		"-L", "perm", "-U", p.guid, "-E", ext, path, strconv.FormatInt(p.size()/1024, 10)+"k")
	// Only these variables: the caller's MKE2FS_* must not change the result.
	cmd.Env = []string{
		"MKE2FS_CONFIG=" + conf.Name(),
		"E2FSPROGS_FAKE_TIME=" + strconv.FormatInt(img.Time.Unix(), 10),
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("formatting /perm: %s: %w: %s", cmd, err, out)
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
