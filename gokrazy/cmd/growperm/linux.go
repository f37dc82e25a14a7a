//go:build linux

package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/psigate/psigate/gokrazy/disk"
)

// realSystem is the box.
type realSystem struct{}

func (realSystem) Mounts() (io.Reader, error) { return os.Open("/proc/self/mounts") }

func (realSystem) Resolve(dev string) (string, error) {
	return filepath.EvalSymlinks("/sys/class/block/" + dev)
}

func (realSystem) Sectors(dev string) (uint64, error) {
	return sectorsOf("/sys/class/block/" + dev + "/size")
}

func (realSystem) Open(dev string) (disk.ReadWriterAt, io.Closer, error) {
	f, err := os.OpenFile("/dev/"+dev, os.O_RDWR|os.O_SYNC, 0)
	if err != nil {
		return nil, nil, err
	}
	return f, f, nil
}

// ResizePartition is the BLKPG ioctl: it works while the partition is
// mounted, where re-reading the whole table does not.
func (realSystem) ResizePartition(d disk.ReadWriterAt, n int, offset, length int64) error {
	f, ok := d.(*os.File)
	if !ok {
		return fmt.Errorf("not a device file")
	}
	p := unix.BlkpgPartition{Start: offset, Length: length, Pno: int32(n)}
	arg := unix.BlkpgIoctlArg{Op: unix.BLKPG_RESIZE_PARTITION, Datalen: int32(unsafe.Sizeof(p)), Data: (*byte)(unsafe.Pointer(&p))}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKPG, uintptr(unsafe.Pointer(&arg))); errno != 0 {
		return fmt.Errorf("BLKPG_RESIZE_PARTITION: %w", errno)
	}
	return nil
}

// ext4ResizeFS is EXT4_IOC_RESIZE_FS, _IOW('f', 16, __u64).
const ext4ResizeFS = 0x40086610

// ResizeFS grows a mounted ext4 online, as resize2fs does.
func (realSystem) ResizeFS(dir string, length int64) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return err
	}
	blocks := uint64(length) / uint64(st.Bsize)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), ext4ResizeFS, uintptr(unsafe.Pointer(&blocks))); errno != 0 {
		return fmt.Errorf("EXT4_IOC_RESIZE_FS to %d blocks: %w", blocks, errno)
	}
	return nil
}
