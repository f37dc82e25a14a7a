package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/psigate/psigate/gokrazy/disk"
)

// fakeSystem is a box whose disk is an image file.
type fakeSystem struct {
	mounts  string
	image   string
	sectors uint64
	resized []int64 // partition, then file system lengths
	failFS  error
}

func (f *fakeSystem) Mounts() (io.Reader, error) { return strings.NewReader(f.mounts), nil }
func (f *fakeSystem) Resolve(dev string) (string, error) {
	return "/sys/devices/pci0000:00/virtio1/block/vda/" + dev, nil
}
func (f *fakeSystem) Sectors(dev string) (uint64, error) {
	if dev != "vda" {
		return 0, errors.New("no such disk " + dev)
	}
	return f.sectors, nil
}
func (f *fakeSystem) Open(string) (disk.ReadWriterAt, io.Closer, error) {
	file, err := os.OpenFile(f.image, os.O_RDWR, 0)
	return file, file, err
}
func (f *fakeSystem) ResizePartition(_ disk.ReadWriterAt, n int, off, length int64) error {
	if n != 4 {
		return errors.New("not partition 4")
	}
	f.resized = append(f.resized, length)
	return nil
}
func (f *fakeSystem) ResizeFS(_ string, length int64) error {
	f.resized = append(f.resized, length)
	return f.failFS
}

const permMounts = "/dev/root / squashfs ro 0 0\ntmpfs /tmp tmpfs rw 0 0\n/dev/vda4 /perm ext4 rw,relatime 0 0\n"

func image(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := disk.Write(p, disk.Image{Hostname: "psigate", Arch: disk.AMD64, Size: disk.MinSize, Time: time.Unix(1, 0)}); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGrowOnALargerDisk(t *testing.T) {
	img := image(t)
	const size = 2 << 30
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	sys := &fakeSystem{mounts: permMounts, image: img, sectors: size / 512}
	msg, err := grow(sys)
	if err != nil || !strings.Contains(msg, "/perm grown to") {
		t.Fatalf("grow = %q, %v", msg, err)
	}
	want := int64(size/512-34-2260992+1) * 512
	if len(sys.resized) != 2 || sys.resized[0] != want || sys.resized[1] != want {
		t.Fatalf("resized %v, want the partition and the file system to %d bytes", sys.resized, want)
	}
	// At the next boot there is nothing left to do.
	sys.resized = nil
	if msg, err := grow(sys); err != nil || msg != nothingToDo || sys.resized != nil {
		t.Fatalf("second grow = %q, %v, resized %v", msg, err, sys.resized)
	}
}

func TestGrowRefuses(t *testing.T) {
	img := image(t)
	for name, tc := range map[string]struct {
		mounts string
		want   string
	}{
		"no /perm":       {"/dev/root / squashfs ro 0 0\n", "not mounted"},
		"vfat /perm":     {"/dev/vda4 /perm vfat rw 0 0\n", "not ext4"},
		"partition 14":   {"/dev/vda14 /perm ext4 rw 0 0\n", "not partition 4"},
		"a loop device":  {"/dev/loop0 /perm ext4 rw 0 0\n", "not partition 4"},
		"garbage":        {"\x00\x01 /perm", "not mounted"},
		"path traversal": {"/dev/../vda4 /perm ext4 rw 0 0\n", "not partition 4"},
	} {
		sys := &fakeSystem{mounts: tc.mounts, image: img, sectors: uint64(disk.MinSize / 512)}
		if msg, err := grow(sys); err == nil || !strings.Contains(err.Error(), tc.want) || sys.resized != nil {
			t.Errorf("%s: %q, %v (resized %v), want an error saying %q", name, msg, err, sys.resized, tc.want)
		}
	}
	// A file system that cannot grow is reported, after the table.
	if err := os.Truncate(img, 2<<30); err != nil {
		t.Fatal(err)
	}
	sys := &fakeSystem{mounts: permMounts, image: img, sectors: (2 << 30) / 512, failFS: errors.New("EXT4_IOC_RESIZE_FS: operation not permitted")}
	if _, err := grow(sys); err == nil || !strings.Contains(err.Error(), "growing /perm's file system") {
		t.Errorf("failing resize: %v", err)
	}
}

func TestPartitionDevices(t *testing.T) {
	for dev, ok := range map[string]bool{
		"/dev/sda4": true, "/dev/vda4": true, "/dev/mmcblk0p4": true, "/dev/nvme0n1p4": true,
		"/dev/sda3": false, "/dev/sda14": false, "/dev/mmcblk0p14": false, "/dev/mmcblk04": false, "/dev/md4": false, "sda4": false,
	} {
		if got := partitionDev.MatchString(dev); got != ok {
			t.Errorf("%s: %v, want %v", dev, got, ok)
		}
	}
}
