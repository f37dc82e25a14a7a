package disk

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// requirePeersEnv turns a missing tool from a skipped test into a failed
// one (as in sbc/sbctest).
const requirePeersEnv = "PSIGATE_REQUIRE_PEERS"

// needTool returns the path of the program name from Debian package pkg,
// looked up on PATH and in the sbin directories; without it the test is
// skipped, or fails when PSIGATE_REQUIRE_PEERS=1.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/" + name, "/sbin/" + name} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("%s not found; install the Debian package %s", name, pkg)
	if os.Getenv(requirePeersEnv) == "1" {
		t.Fatal(msg + " (" + requirePeersEnv + "=1)")
	}
	t.Skip(msg + ", or set " + requirePeersEnv + "=1 to make this a failure")
	return ""
}

// testContent is n bytes that look like a file system: pseudo-random
// blocks with runs of zeros between them, the same for the same seed.
func testContent(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := 0; i < n; i += holeSize {
		if r.IntN(3) == 0 {
			continue // a hole's worth of zeros
		}
		for j := i; j < min(i+holeSize, n); j++ {
			b[j] = byte(r.Uint32())
		}
	}
	return b
}

var (
	testBoot = testContent(1, 3<<20+100) // does not end on a block
	testRoot = testContent(2, 2<<20)
)

// testImage is a minimal image with boot and root content, without /perm.
func testImage(t *testing.T) Image {
	t.Helper()
	return Image{
		Hostname: "gokrazy",
		Arch:     AMD64,
		Size:     MinSize,
		Boot:     bytes.NewReader(testBoot),
		Root:     bytes.NewReader(testRoot),
		Time:     time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC),
	}
}

// permImage is testImage with /perm; it needs mke2fs.
func permImage(t *testing.T) Image {
	t.Helper()
	needTool(t, "mke2fs", "e2fsprogs")
	img := testImage(t)
	img.Perm = true
	return img
}

// writeImage writes img into the test's directory and returns its path.
func writeImage(t *testing.T, img Image) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	start := time.Now()
	if err := Write(path, img); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Write: %v, %d bytes, %d KiB allocated", time.Since(start).Round(time.Millisecond), fi.Size(), fi.Sys().(*syscall.Stat_t).Blocks/2)
	return path
}

func openImage(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestWriteGPT(t *testing.T) {
	for _, arch := range []Arch{AMD64, ARM64} {
		t.Run(arch.String(), func(t *testing.T) {
			img := testImage(t)
			img.Arch = arch
			f := openImage(t, writeImage(t, img))
			h, entries, err := readBothGPTs(f, uint64(img.Size/sectorSize))
			if err != nil {
				t.Fatal(err)
			}
			if h.firstUsable != 34 || h.lastUsable != 2465758 || h.disk != "60c24cc1-f3f9-427a-8199-2e18c40c0000" {
				t.Errorf("header = %+v, want usable LBAs 34 to 2465758, disk GUID …0000", h)
			}
			root, _ := arch.rootType()
			want := []gptEntry{
				{1, typeEFISystem, PartUUID("gokrazy"), 8192, 212991, 0, "Microsoft basic data"},
				{2, root, "60c24cc1-f3f9-427a-8199-2e18c40c0002", 212992, 1236991, 0, "Linux filesystem"},
				{3, typeLinuxData, "60c24cc1-f3f9-427a-8199-2e18c40c0003", 1236992, 2260991, 0, "Linux filesystem"},
				{4, typeLinuxData, "60c24cc1-f3f9-427a-8199-2e18c40c0004", 2260992, 2465758, 0, "Linux filesystem"},
			}
			if fmt.Sprint(entries) != fmt.Sprint(want) {
				t.Errorf("entries:\n%+v\nwant\n%+v", entries, want)
			}
		})
	}
}

func TestWriteContent(t *testing.T) {
	img := testImage(t)
	f := openImage(t, writeImage(t, img))
	lba0 := make([]byte, sectorSize)
	if _, err := f.ReadAt(lba0, 0); err != nil {
		t.Fatal(err)
	}
	if mbr := hybridMBR("gokrazy"); !bytes.Equal(lba0, mbr[:]) {
		t.Errorf("LBA 0 = %x, want the hybrid MBR %x", lba0, mbr)
	}
	parts := layout(img)
	for _, c := range []struct {
		name string
		p    partition
		want []byte
	}{
		{"boot", parts[0], testBoot},
		{"root A", parts[1], testRoot},
		{"root B", parts[2], nil},
		{"perm", parts[3], nil},
	} {
		// The content, zeros to the end of its last block, then only zeros.
		n := (int64(len(c.want)) + holeSize - 1) / holeSize * holeSize
		got := make([]byte, n)
		if _, err := f.ReadAt(got, c.p.offset()); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[:len(c.want)], c.want) || bytes.Count(got[len(c.want):], []byte{0}) != int(n)-len(c.want) {
			t.Errorf("%s partition does not start with its content", c.name)
		}
		nonZeroBlocks(t, f, c.p.offset()+n, c.p.offset()+c.p.size(), func(at int64, _ []byte) {
			t.Errorf("%s partition: non-zero block at byte %d after the content", c.name, at)
		})
	}
	var blocks, wantBlocks int
	nonZeroBlocks(t, f, parts[0].offset(), parts[0].offset()+parts[0].size(), func(int64, []byte) { blocks++ })
	for i := 0; i < len(testBoot); i += holeSize {
		if b := testBoot[i:min(i+holeSize, len(testBoot))]; bytes.Count(b, []byte{0}) != len(b) {
			wantBlocks++
		}
	}
	if blocks != wantBlocks || blocks == 0 {
		t.Errorf("nonZeroBlocks found %d blocks in the boot partition, want %d", blocks, wantBlocks)
	}
	fi, _ := f.Stat()
	if alloc := fi.Sys().(*syscall.Stat_t).Blocks * 512; alloc > 8<<20 {
		t.Errorf("%d bytes allocated for %d bytes of content, want a sparse file", alloc, len(testBoot)+len(testRoot))
	}
}

// TestSfdisk reads the table with util-linux (libfdisk).
func TestSfdisk(t *testing.T) {
	sfdisk := needTool(t, "sfdisk", "fdisk")
	path := writeImage(t, testImage(t))
	out, err := exec.Command(sfdisk, "--dump", path).CombinedOutput()
	if err != nil {
		t.Fatalf("sfdisk --dump: %v\n%s", err, out)
	}
	want := strings.ReplaceAll(`label: gpt
label-id: 60C24CC1-F3F9-427A-8199-2E18C40C0000
device: DISK
unit: sectors
first-lba: 34
last-lba: 2465758
sector-size: 512

DISK1 : start=        8192, size=      204800, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=60C24CC1-F3F9-427A-8199-2E18C40C0001, name="Microsoft basic data"
DISK2 : start=      212992, size=     1024000, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=60C24CC1-F3F9-427A-8199-2E18C40C0002, name="Linux filesystem"
DISK3 : start=     1236992, size=     1024000, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=60C24CC1-F3F9-427A-8199-2E18C40C0003, name="Linux filesystem"
DISK4 : start=     2260992, size=      204767, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=60C24CC1-F3F9-427A-8199-2E18C40C0004, name="Linux filesystem"
`, "DISK", path)
	if string(out) != want {
		t.Errorf("sfdisk --dump:\n%s\nwant\n%s", out, want)
	}
	// The hybrid MBR, read as a DOS label: its disk signature is the
	// hostname's FNV-1a hash.
	out, err = exec.Command(sfdisk, "--dump", "--label", "dos", "-Y", "dos", path).CombinedOutput()
	want = strings.ReplaceAll(`label: dos
label-id: 0x2e18c40c
device: DISK
unit: sectors
sector-size: 512

DISK1 : start=        8192, size=      204800, type=c, bootable
DISK2 : start=           1, size=        8191, type=ee
`, "DISK", path)
	if err != nil || string(out) != want {
		t.Errorf("sfdisk --dump -Y dos: %v\n%s\nwant\n%s", err, out, want)
	}
	if out, err := exec.Command(sfdisk, "--verify", path).CombinedOutput(); err != nil || !strings.Contains(string(out), "No errors detected.") {
		t.Errorf("sfdisk --verify: %v\n%s", err, out)
	}
	fdisk := needTool(t, "fdisk", "fdisk")
	out, err = exec.Command(fdisk, "-l", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Disklabel type: gpt") || strings.Contains(strings.ToLower(string(out)), "warning") {
		t.Errorf("fdisk -l: %v\n%s", err, out)
	}
}

// TestSgdisk verifies the GPT and sees the hybrid MBR with GPT fdisk.
func TestSgdisk(t *testing.T) {
	sgdisk := needTool(t, "sgdisk", "gdisk")
	path := writeImage(t, testImage(t))
	out, err := exec.Command(sgdisk, "--verify", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No problems found.") {
		t.Errorf("sgdisk --verify: %v\n%s", err, out)
	}
	// A caution that partition 4 does not end on 2048 sectors is expected:
	// it ends where the backup GPT begins.
	if s := strings.ReplaceAll(string(out), "Partition 4 doesn't end on a 2048-sector boundary", ""); strings.Contains(s, "Warning") || strings.Contains(s, "Partition ") {
		t.Errorf("sgdisk --verify warns:\n%s", out)
	}
	gdisk := needTool(t, "gdisk", "gdisk")
	cmd := exec.Command(gdisk, "-l", path)
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Found valid GPT with hybrid MBR; using GPT.") {
		t.Errorf("gdisk -l: %v\n%s", err, out)
	}
}

// TestPerm checks the /perm file system with e2fsprogs, on the smallest
// disk (one block group), on one whose /perm does not end on a KiB, and on
// one just under 2 GiB (eight block groups).
func TestPerm(t *testing.T) {
	for _, size := range []int64{MinSize, MinSize + 3*sectorSize, 2047 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			img := permImage(t)
			img.Size = size
			checkPerm(t, img, writeImage(t, img))
		})
	}
}

func checkPerm(t *testing.T, img Image, path string) {
	p4 := filepath.Join(t.TempDir(), "perm.ext4")
	extractPartition(t, path, layout(img)[3], p4)

	e2fsck := needTool(t, "e2fsck", "e2fsprogs")
	if out, err := exec.Command(e2fsck, "-fn", p4).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
	dumpe2fs := needTool(t, "dumpe2fs", "e2fsprogs")
	out, err := utcCommand(dumpe2fs, "-h", p4).CombinedOutput()
	if err != nil {
		t.Fatalf("dumpe2fs -h: %v\n%s", err, out)
	}
	for _, want := range []string{
		"Filesystem volume name:   perm\n",
		"Filesystem UUID:          60c24cc1-f3f9-427a-8199-2e18c40c0004\n",
		"Directory Hash Seed:      " + permHashSeed("gokrazy") + "\n",
		"Filesystem created:       Wed Nov 25 12:00:00 2026\n",
		fmt.Sprintf("Block count:              %d\n", layout(img)[3].size()/4096),
		"Block size:               4096\n",
		"metadata_csum",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dumpe2fs -h lacks %q:\n%s", want, out)
		}
	}
	debugfs := needTool(t, "debugfs", "e2fsprogs")
	out, err = utcCommand(debugfs, "-R", "ls -l /", p4).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "40700 (2)      0      0   16384 25-Nov-2026 12:00 lost+found") {
		t.Errorf("debugfs ls -l /: %v, want lost+found owned by root\n%s", err, out)
	}
}

// utcCommand runs an e2fsprogs tool that prints times in UTC.
func utcCommand(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	return cmd
}

// extractPartition copies partition p of the image at path into a new
// sparse file dst.
func extractPartition(t *testing.T, path string, p partition, dst string) {
	t.Helper()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := out.Truncate(p.size()); err != nil {
		t.Fatal(err)
	}
	nonZeroBlocks(t, openImage(t, path), p.offset(), p.offset()+p.size(), func(at int64, b []byte) {
		if _, err := out.WriteAt(b, at-p.offset()); err != nil {
			t.Fatal(err)
		}
	})
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// Whence values of lseek(2) for sparse files.
const (
	seekData = 3 // SEEK_DATA
	seekHole = 4 // SEEK_HOLE
)

// nonZeroBlocks calls fn with each holeSize block of f in [off, end) that
// is not all zeros; it reads only the file's data segments (lseek(2)
// SEEK_DATA), as the holes read as zeros. off must be block-aligned.
func nonZeroBlocks(t *testing.T, f *os.File, off, end int64, fn func(at int64, b []byte)) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for off < end {
		data, err := f.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			return // no data after off
		}
		if err != nil {
			t.Fatal(err)
		}
		hole, err := f.Seek(data, seekHole)
		if err != nil {
			t.Fatal(err)
		}
		segEnd := min(hole, end)
		for at := data / holeSize * holeSize; at < segEnd; at += int64(len(buf)) {
			n, err := f.ReadAt(buf[:min(int64(len(buf)), segEnd-at)], at)
			if err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			for i := 0; i < n; i += holeSize {
				if b := buf[i:min(i+holeSize, n)]; bytes.Count(b, []byte{0}) != len(b) {
					fn(at+int64(i), b)
				}
			}
		}
		off = hole
	}
}

// fileHash is the SHA-256 of the file's size and of its non-zero blocks
// and their offsets: equal for files with equal bytes.
func fileHash(t *testing.T, path string) string {
	t.Helper()
	f := openImage(t, path)
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%d\n", fi.Size())
	nonZeroBlocks(t, f, 0, fi.Size(), func(at int64, b []byte) {
		fmt.Fprintf(h, "%d\n", at)
		h.Write(b)
	})
	return fmt.Sprintf("%x", h.Sum(nil))
}

func TestReproducible(t *testing.T) {
	first := fileHash(t, writeImage(t, permImage(t)))
	if again := fileHash(t, writeImage(t, permImage(t))); again != first {
		t.Errorf("same inputs, different images: sha256 %s and %s", first, again)
	}
	img := permImage(t)
	img.Time = img.Time.Add(time.Second)
	if later := fileHash(t, writeImage(t, img)); later == first {
		t.Errorf("Image.Time is not in the image (sha256 %s both)", first)
	}
}

// zeros reads as endless zeros.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestWriteErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Image)
		err    error
		text   string
	}{
		{"boot too large", func(img *Image) { img.Boot = io.LimitReader(zeros{}, BootSize+1) }, ErrTooLarge, "boot file system: more than the 104857600 bytes"},
		{"root too large", func(img *Image) { img.Root = io.LimitReader(zeros{}, RootSize+1) }, ErrTooLarge, "root file system: more than the 524288000 bytes"},
		{"size too small", func(img *Image) { img.Size = MinSize - 1<<20 }, ErrInvalid, "Image.Size: 1261436928 bytes, need at least 1262485504 (1204 MiB)"},
		{"size not in sectors", func(img *Image) { img.Size = MinSize + 100 }, ErrInvalid, "Image.Size: 1262485604 bytes is not a multiple of 512"},
		{"no hostname", func(img *Image) { img.Hostname = "" }, ErrInvalid, "Image.Hostname: empty"},
		{"unknown arch", func(img *Image) { img.Arch = "386" }, ErrInvalid, `Image.Arch: "386" is not amd64 or arm64`},
		{"perm without time", func(img *Image) { img.Perm, img.Time = true, time.Time{} }, ErrInvalid, "Image.Time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := testImage(t)
			tc.change(&img)
			dir := t.TempDir()
			err := Write(filepath.Join(dir, "disk.img"), img)
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("Write: %v, want %v with %q", err, tc.err, tc.text)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("Write left %v behind", left)
			}
		})
	}
	t.Run("content that fills its partition", func(t *testing.T) {
		img := testImage(t)
		img.Boot = io.LimitReader(zeros{}, BootSize)
		img.Root = io.MultiReader(io.LimitReader(zeros{}, RootSize-1), strings.NewReader("x"))
		f := openImage(t, writeImage(t, img))
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, layout(img)[1].offset()+RootSize-1); err != nil || last[0] != 'x' {
			t.Errorf("last byte of root A = %q, %v, want x", last, err)
		}
	})
}

func TestWriteReplaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	img := testImage(t)
	img.Boot = io.LimitReader(zeros{}, BootSize+1)
	if err := Write(path, img); err == nil {
		t.Fatal("Write of a too large boot file system succeeded")
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "old" {
		t.Errorf("failed Write changed the old file: %q, %v", b, err)
	}
	if err := Write(path, testImage(t)); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != MinSize || fi.Mode().Perm() != 0o644 {
		t.Errorf("after Write: %v, %v; want %d bytes, mode 0644", fi, err, MinSize)
	}
}

// PermFiles land in /perm with mode 0600 and their content; the file
// system stays clean and the image reproducible.
func TestPermFiles(t *testing.T) {
	mk := func() Image { // Boot and Root are readers: one image each
		img := permImage(t)
		img.PermFiles = map[string][]byte{"gokr-pw.txt": []byte("s3cret-build-password\n")}
		return img
	}
	img := mk()
	path := writeImage(t, img)
	checkPerm(t, img, path)
	p4 := filepath.Join(t.TempDir(), "perm.ext4")
	extractPartition(t, path, layout(img)[3], p4)
	debugfs := needTool(t, "debugfs", "e2fsprogs")
	out, err := utcCommand(debugfs, "-R", "cat /gokr-pw.txt", p4).Output()
	if err != nil || string(out) != "s3cret-build-password\n" {
		t.Errorf("debugfs cat /gokr-pw.txt: %v %q", err, out)
	}
	out, err = utcCommand(debugfs, "-R", "stat /gokr-pw.txt", p4).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Mode:  0600") {
		t.Errorf("debugfs stat /gokr-pw.txt: %v, want mode 0600\n%s", err, out)
	}
	// mke2fs copies the build machine's change time: a second later
	// it must not show.
	time.Sleep(1100 * time.Millisecond)
	if again := writeImage(t, mk()); sha256Of(t, again) != sha256Of(t, path) {
		t.Error("two images with the same PermFiles differ")
	}
	img.PermFiles = map[string][]byte{"../x": nil}
	if err := Write(filepath.Join(t.TempDir(), "bad.img"), img); !errors.Is(err, ErrInvalid) {
		t.Errorf("PermFiles with a path: %v, want ErrInvalid", err)
	}
}

func sha256Of(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("sha256sum", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))[0]
}
