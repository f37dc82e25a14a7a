package fat

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

const (
	mediaFixed  = 0xf8   // BPB_Media for non-removable media
	endOfChain  = 0xffff // FAT16 end-of-chain mark
	fat1Clean   = 0xffff // FAT[1]: volume clean, no I/O errors
	fat0Media   = 0xff00 | mediaFixed
	extBootSig  = 0x29 // BS_BootSig: volume ID, label and type follow
	driveNumber = 0x80 // BS_DrvNum: a hard disk
)

// bootCode runs only if a BIOS boots the partition itself, which gokrazy's
// MBR loader never does: INT 18h hands back to the BIOS, and should that
// return, the CPU halts in a loop.
const bootCode = "\xcd\x18\xf4\xeb\xfd"

// WriteTo writes the whole file system image to out and returns the
// number of bytes written, a multiple of 512.
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	l, err := w.layout()
	if err != nil {
		return 0, err
	}
	ts := newStamp(w.opts.stamp())
	cw := &countingWriter{w: out, zero: make([]byte, 64<<10)}
	cw.write(l.bootSector(w.opts))
	cw.zeros((l.reservedSectors - 1) * sectorSize)
	cw.write(l.fat())
	cw.write(dirBytes(w.root, l.rootEntries*dirEntrySize, ts, w.opts))
	for _, d := range l.dirs {
		cw.write(dirBytes(d, d.clusters*l.clusterSize(), ts, w.opts))
	}
	for _, f := range l.files {
		cw.write(f.data)
		cw.zeros(f.clusters*l.clusterSize() - int64(len(f.data)))
	}
	cw.zeros(l.totalSectors*sectorSize - cw.n)
	if cw.err != nil {
		return cw.n, fmt.Errorf("fat: writing the image: %w", cw.err)
	}
	return cw.n, nil
}

// bootSector is sector 0 with the FAT16 BPB (fatgen103, "Boot Sector and
// BPB"). gokrazy's reader takes the sector size, sectors per cluster,
// reserved sectors, root entries and the 16-bit FAT size from it.
func (l *layout) bootSector(o Options) []byte {
	b := make([]byte, sectorSize)
	le := binary.LittleEndian
	copy(b, []byte{0xeb, 0x3c, 0x90}) // BS_jmpBoot to the boot code at 0x3e
	copy(b[3:11], "MSWIN4.1")         // BS_OEMName, the most compatible value
	le.PutUint16(b[11:], sectorSize)
	b[13] = byte(l.sectorsPerCluster)
	le.PutUint16(b[14:], uint16(l.reservedSectors))
	b[16] = 1 // BPB_NumFATs: gokrazy's reader assumes one FAT
	le.PutUint16(b[17:], uint16(l.rootEntries))
	if l.totalSectors < 0x10000 {
		le.PutUint16(b[19:], uint16(l.totalSectors))
	} else {
		le.PutUint32(b[32:], uint32(l.totalSectors))
	}
	b[21] = mediaFixed
	le.PutUint16(b[22:], uint16(l.fatSectors))
	le.PutUint16(b[24:], 63)  // BPB_SecPerTrk, the usual LBA geometry
	le.PutUint16(b[26:], 255) // BPB_NumHeads
	b[36] = driveNumber
	b[38] = extBootSig
	le.PutUint32(b[39:], o.Serial)
	label := o.label()
	copy(b[43:54], label[:])
	copy(b[54:62], "FAT16   ")
	copy(b[62:], bootCode)
	b[510], b[511] = 0x55, 0xaa
	return b
}

// fat is the file allocation table: every chain runs through consecutive
// clusters (fatgen103, "FAT Data Structure").
func (l *layout) fat() []byte {
	b := make([]byte, l.fatSectors*sectorSize)
	le := binary.LittleEndian
	le.PutUint16(b[0:], fat0Media)
	le.PutUint16(b[2:], fat1Clean)
	chain := func(n *node) {
		for i := int64(0); i < n.clusters; i++ {
			next := uint16(int64(n.cluster) + i + 1)
			if i == n.clusters-1 {
				next = endOfChain
			}
			le.PutUint16(b[2*(int64(n.cluster)+i):], next)
		}
	}
	for _, d := range l.dirs {
		chain(d)
	}
	for _, f := range l.files {
		chain(f)
	}
	return b
}

// dirBytes is the directory d, size bytes long (fatgen103, "FAT Directory
// Structure"): the volume label in the root, "." and ".." elsewhere, then
// each entry's long-name entries followed by its short entry.
func dirBytes(d *node, size int64, ts stamp, o Options) []byte {
	b := make([]byte, 0, size)
	switch {
	case d.parent != nil:
		dot, dotdot := shortBytes(".", ""), shortBytes("..", "")
		b = appendShort(b, dot, attrDirectory, 0, d.cluster, 0, ts)
		b = appendShort(b, dotdot, attrDirectory, 0, d.parent.cluster, 0, ts)
	case o.Label != "":
		b = appendShort(b, o.label(), attrVolumeID, 0, 0, 0, ts)
	}
	for _, c := range d.sorted {
		if c.long {
			for _, e := range longEntries(c.name, c.short) {
				b = append(b, e[:]...)
			}
		}
		attr := byte(attrArchive)
		if c.isDir() {
			attr = attrDirectory // exactly: gokrazy's reader compares the whole byte
		}
		b = appendShort(b, c.short, attr, c.caseFlag, c.cluster, uint32(len(c.data)), ts)
	}
	return b[:size]
}

// appendShort appends one short directory entry.
func appendShort(b []byte, name [11]byte, attr, caseFlag byte, cluster uint16, size uint32, ts stamp) []byte {
	var e [dirEntrySize]byte
	le := binary.LittleEndian
	copy(e[:], name[:])
	e[11], e[12], e[13] = attr, caseFlag, ts.hundredths
	le.PutUint16(e[14:], ts.time) // creation
	le.PutUint16(e[16:], ts.date)
	le.PutUint16(e[18:], ts.date) // last access
	le.PutUint16(e[22:], ts.time) // last write
	le.PutUint16(e[24:], ts.date)
	le.PutUint16(e[26:], cluster)
	le.PutUint32(e[28:], size)
	return append(b, e[:]...)
}

// stamp is a time in FAT's directory-entry encoding.
type stamp struct {
	date, time uint16
	hundredths byte // 0..199 on top of the 2-second time
}

func newStamp(t time.Time) stamp {
	return stamp{
		date:       uint16(t.Year()-1980)<<9 | uint16(t.Month())<<5 | uint16(t.Day()),
		time:       uint16(t.Hour())<<11 | uint16(t.Minute())<<5 | uint16(t.Second()/2),
		hundredths: byte(t.Second()%2*100 + t.Nanosecond()/10_000_000),
	}
}

// countingWriter counts bytes and keeps the first error, after which it
// writes nothing.
type countingWriter struct {
	w    io.Writer
	n    int64
	err  error
	zero []byte
}

func (c *countingWriter) write(p []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
}

func (c *countingWriter) zeros(n int64) {
	for n > 0 && c.err == nil {
		k := min(n, int64(len(c.zero)))
		c.write(c.zero[:k])
		n -= k
	}
}
