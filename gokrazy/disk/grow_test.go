package disk

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// memDisk is a disk in memory that grows on writes past its end.
type memDisk struct{ b []byte }

func (m *memDisk) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, errors.New("read past the end")
	}
	return copy(p, m.b[off:]), nil
}

func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		return 0, errors.New("write past the end")
	}
	return copy(m.b[off:], p), nil
}

// gokrazyGPT is gokrazy's four partitions on a small disk: partition 4
// is the last.
func gokrazyGPT(sectors uint64) gpt {
	h := "test"
	return gpt{disk: diskGUID(h), sectors: sectors, parts: []partition{
		{typeEFISystem, partGUID(h, 1), "Microsoft basic data", 2048, 2559},
		{typeLinuxData, partGUID(h, 2), "Linux filesystem", 2560, 3071},
		{typeLinuxData, partGUID(h, 3), "Linux filesystem", 3072, 3583},
		{typeLinuxData, partGUID(h, 4), "Linux filesystem", 3584, sectors - 34},
	}}
}

// An image written to a larger disk: the backup GPT moves to the end,
// partition 4 takes the rest, and both tables agree; a second Grow
// changes nothing.
func TestGrow(t *testing.T) {
	small := testGPTDisk(gokrazyGPT(8192))
	d := &memDisk{b: append(small, make([]byte, 8192*sectorSize)...)} // twice the size
	p4, changed, err := Grow(d, 16384)
	if err != nil || !changed {
		t.Fatalf("Grow = %v, %v, %v", p4, changed, err)
	}
	if p4 != (Extent{3584, 16384 - 34}) {
		t.Errorf("partition 4 = %+v", p4)
	}
	h, entries, err := readBothGPTs(d, 16384)
	if err != nil {
		t.Fatalf("after Grow: %v", err)
	}
	if h.lastUsable != 16384-34 || entries[3].last != 16384-34 || entries[2].last != 3583 || entries[3].guid != partGUID("test", 4) {
		t.Errorf("after Grow: header %+v, entries %+v", h, entries)
	}
	if _, changed, err := Grow(d, 16384); changed || err != nil {
		t.Errorf("second Grow: changed %v, %v", changed, err)
	}
	// The disk as it was written needs nothing either.
	if _, changed, err := Grow(&memDisk{b: small}, 8192); changed || err != nil {
		t.Errorf("Grow of a disk of the image's size: changed %v, %v", changed, err)
	}
}

func TestGrowRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		disk    func() []byte
		sectors uint64
		want    string
	}{
		"no GPT":          {func() []byte { return make([]byte, 8192*sectorSize) }, 8192, "no GPT"},
		"smaller disk":    {func() []byte { return testGPTDisk(gokrazyGPT(8192)) }, 8000, "past the disk's last usable"},
		"corrupt header":  {func() []byte { b := testGPTDisk(gokrazyGPT(8192)); b[sectorSize+40]++; return b }, 8192, "CRC"},
		"corrupt entries": {func() []byte { b := testGPTDisk(gokrazyGPT(8192)); b[2*sectorSize+5]++; return b }, 8192, "CRC"},
		"not four":        {func() []byte { return testGPTDisk(testGPT()) }, 4096, "no partition 4"},
	} {
		_, changed, err := Grow(&memDisk{b: tc.disk()}, tc.sectors)
		if !errors.Is(err, ErrNotGrowable) || changed || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v (changed %v), want ErrNotGrowable saying %q", name, err, changed, tc.want)
		}
	}
}

// A real image grown to a larger file passes sfdisk's and sgdisk's
// checks, with /perm's partition ending at the new last usable sector.
func TestGrowImage(t *testing.T) {
	img := permImage(t)
	path := writeImage(t, img)
	const bigger = 3 << 30
	if err := os.Truncate(path, bigger); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	p4, changed, err := Grow(f, bigger/sectorSize)
	f.Close()
	if err != nil || !changed || p4.Last != bigger/sectorSize-34 {
		t.Fatalf("Grow = %+v, %v, %v", p4, changed, err)
	}
	sfdisk := needTool(t, "sfdisk", "fdisk")
	if out, err := exec.Command(sfdisk, "--verify", path).CombinedOutput(); err != nil || !strings.Contains(string(out), "No errors detected") {
		t.Errorf("sfdisk --verify: %v\n%s", err, out)
	}
	if sgdisk, err := exec.LookPath("sgdisk"); err == nil {
		if out, err := exec.Command(sgdisk, "--verify", path).CombinedOutput(); err != nil || !strings.Contains(string(out), "No problems found") {
			t.Errorf("sgdisk --verify: %v\n%s", err, out)
		}
	}
}
