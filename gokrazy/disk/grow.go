package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// ReadWriterAt is a disk: the block device on the box, or an image file.
type ReadWriterAt interface {
	io.ReaderAt
	io.WriterAt
}

// Extent is a partition's place on the disk, in sectors of 512 bytes.
type Extent struct {
	First, Last uint64 // inclusive
}

// Bytes is the extent's offset and length in bytes.
func (e Extent) Bytes() (offset, length int64) {
	return int64(e.First) * sectorSize, int64(e.Last-e.First+1) * sectorSize
}

// ErrNotGrowable: the disk's table is not one Grow changes (not a valid
// GPT, or partition 4 is not the last partition, or the disk shrank).
var ErrNotGrowable = errors.New("disk: the partition table cannot be grown")

// Grow fits a gokrazy disk's GPT to a disk of the given number of
// sectors, when an image was written to a larger disk: the backup GPT
// moves to the disk's end and partition 4 (/perm), which must be the
// last partition, ends at the new last usable sector. It returns
// partition 4's extent, and whether anything changed. The backup GPT is
// written before the primary, so that an interrupted Grow leaves the old
// primary table, which still describes the disk as it was.
func Grow(d ReadWriterAt, sectors uint64) (p4 Extent, changed bool, err error) {
	hdr := make([]byte, sectorSize)
	if _, err := d.ReadAt(hdr, sectorSize); err != nil {
		return Extent{}, false, fmt.Errorf("reading the GPT header: %w", err)
	}
	if !bytes.Equal(hdr[0:8], []byte("EFI PART")) {
		return Extent{}, false, fmt.Errorf("%w: no GPT header at LBA 1", ErrNotGrowable)
	}
	size := binary.LittleEndian.Uint32(hdr[12:])
	if size < gptHeaderSize || size > sectorSize {
		return Extent{}, false, fmt.Errorf("%w: GPT header size %d", ErrNotGrowable, size)
	}
	if crcOf(hdr[:size], 16) != binary.LittleEndian.Uint32(hdr[16:]) {
		return Extent{}, false, fmt.Errorf("%w: the GPT header's CRC does not match", ErrNotGrowable)
	}
	entriesLBA := binary.LittleEndian.Uint64(hdr[72:])
	count, esize := binary.LittleEndian.Uint32(hdr[80:]), binary.LittleEndian.Uint32(hdr[84:])
	if entriesLBA != 2 || count != gptEntryCount || esize != gptEntrySize {
		return Extent{}, false, fmt.Errorf("%w: %d entries of %d bytes at LBA %d", ErrNotGrowable, count, esize, entriesLBA)
	}
	entries := make([]byte, gptEntryCount*gptEntrySize)
	if _, err := d.ReadAt(entries, 2*sectorSize); err != nil {
		return Extent{}, false, fmt.Errorf("reading the GPT entries: %w", err)
	}
	if crc32.ChecksumIEEE(entries) != binary.LittleEndian.Uint32(hdr[88:]) {
		return Extent{}, false, fmt.Errorf("%w: the GPT entries' CRC does not match", ErrNotGrowable)
	}
	// Partition 4 must end last: nothing may lie between it and the end.
	e4 := entries[3*gptEntrySize : 4*gptEntrySize]
	p4 = Extent{binary.LittleEndian.Uint64(e4[32:]), binary.LittleEndian.Uint64(e4[40:])}
	if isZero(e4[0:16]) || p4.Last < p4.First {
		return Extent{}, false, fmt.Errorf("%w: no partition 4", ErrNotGrowable)
	}
	for i := range gptEntryCount {
		e := entries[i*gptEntrySize : (i+1)*gptEntrySize]
		if i != 3 && !isZero(e[0:16]) && binary.LittleEndian.Uint64(e[40:]) > p4.Last {
			return Extent{}, false, fmt.Errorf("%w: partition %d ends after partition 4", ErrNotGrowable, i+1)
		}
	}
	if sectors < 2*gptSectors+firstUsableLBA {
		return Extent{}, false, fmt.Errorf("%w: a disk of %d sectors", ErrNotGrowable, sectors)
	}
	last := sectors - 1
	lastUsable := last - gptSectors
	switch {
	case lastUsable < p4.Last:
		return Extent{}, false, fmt.Errorf("%w: partition 4 ends at sector %d, past the disk's last usable sector %d", ErrNotGrowable, p4.Last, lastUsable)
	case lastUsable == p4.Last && binary.LittleEndian.Uint64(hdr[32:]) == last:
		return p4, false, nil
	}
	p4.Last = lastUsable
	binary.LittleEndian.PutUint64(e4[40:], p4.Last)
	entriesCRC := crc32.ChecksumIEEE(entries)

	primary := bytes.Clone(hdr)
	binary.LittleEndian.PutUint64(primary[32:], last) // the backup header
	binary.LittleEndian.PutUint64(primary[48:], lastUsable)
	binary.LittleEndian.PutUint32(primary[88:], entriesCRC)
	binary.LittleEndian.PutUint32(primary[16:], crcOf(primary[:size], 16))

	backup := bytes.Clone(primary)
	binary.LittleEndian.PutUint64(backup[24:], last) // its own LBA
	binary.LittleEndian.PutUint64(backup[32:], 1)
	binary.LittleEndian.PutUint64(backup[72:], last-gptEntrySectors)
	binary.LittleEndian.PutUint32(backup[16:], crcOf(backup[:size], 16))

	for _, w := range []struct {
		what string
		data []byte
		lba  uint64
	}{
		{"backup GPT entries", entries, last - gptEntrySectors},
		{"backup GPT header", backup, last},
		{"GPT entries", entries, 2},
		{"GPT header", primary, 1},
	} {
		if _, err := d.WriteAt(w.data, int64(w.lba)*sectorSize); err != nil {
			return Extent{}, false, fmt.Errorf("writing the %s: %w", w.what, err)
		}
	}
	return p4, true, nil
}

// crcOf is the CRC-32 of a header with its CRC field (at off) as zero.
func crcOf(h []byte, off int) uint32 {
	c := bytes.Clone(h)
	binary.LittleEndian.PutUint32(c[off:], 0)
	return crc32.ChecksumIEEE(c)
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
