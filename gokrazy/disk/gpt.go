package disk

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"unicode/utf16"
)

// GPT geometry (UEFI 2.10 section 5.3): 128 entries of 128 bytes fill the
// 32 sectors after the header, so a GPT takes 33 sectors at either end.
const (
	gptEntryCount   = 128
	gptEntrySize    = 128
	gptEntrySectors = gptEntryCount * gptEntrySize / sectorSize // 32
	gptSectors      = 1 + gptEntrySectors                       // header and entries
	gptHeaderSize   = 92
	firstUsableLBA  = 2 + gptEntrySectors // 34
	gptNameUnits    = 36                  // UTF-16 code units of a partition name
)

// guidBytes encodes a GUID string ("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
// as GPT stores it: the first three fields little-endian, the last two as
// written (UEFI 2.10 appendix A).
func guidBytes(s string) ([16]byte, error) {
	var g [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, fmt.Errorf("GUID %q: not in the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", s)
	}
	b, err := hex.DecodeString(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36])
	if err != nil {
		return g, fmt.Errorf("GUID %q: %w", s, err)
	}
	g[0], g[1], g[2], g[3] = b[3], b[2], b[1], b[0]
	g[4], g[5] = b[5], b[4]
	g[6], g[7] = b[7], b[6]
	copy(g[8:], b[8:])
	return g, nil
}

// mustGUID is guidBytes for the GUIDs this package makes itself.
func mustGUID(s string) [16]byte {
	g, err := guidBytes(s)
	if err != nil {
		panic("disk: " + err.Error())
	}
	return g
}

// gpt is a GUID partition table for a disk of the given number of sectors.
type gpt struct {
	disk    string // disk GUID
	sectors uint64
	parts   []partition
}

func (t gpt) lastLBA() uint64          { return t.sectors - 1 }
func (t gpt) lastUsableLBA() uint64    { return t.lastLBA() - gptSectors }
func (t gpt) backupEntriesLBA() uint64 { return t.lastLBA() - gptEntrySectors }

// entries is the partition entry array (UEFI 2.10 table 5.6); unused
// entries are zero.
func (t gpt) entries() []byte {
	b := make([]byte, gptEntryCount*gptEntrySize)
	for i, p := range t.parts {
		e := b[i*gptEntrySize : (i+1)*gptEntrySize]
		typ, id := mustGUID(p.typ), mustGUID(p.guid)
		copy(e[0:16], typ[:])
		copy(e[16:32], id[:])
		binary.LittleEndian.PutUint64(e[32:], p.first)
		binary.LittleEndian.PutUint64(e[40:], p.last)
		// e[48:56], the attributes, stay 0.
		name := utf16.Encode([]rune(p.name))
		for j, u := range name[:min(gptNameUnits, len(name))] {
			binary.LittleEndian.PutUint16(e[56+2*j:], u)
		}
	}
	return b
}

// header is one GPT header sector (UEFI 2.10 table 5.5) at myLBA, whose
// twin is at altLBA and whose entries start at entriesLBA.
func (t gpt) header(myLBA, altLBA, entriesLBA uint64, entriesCRC uint32) []byte {
	h := make([]byte, sectorSize)
	copy(h[0:8], "EFI PART")
	binary.LittleEndian.PutUint32(h[8:], 0x00010000) // revision 1.0
	binary.LittleEndian.PutUint32(h[12:], gptHeaderSize)
	// h[16:20] is the header CRC, computed below; h[20:24] is reserved.
	binary.LittleEndian.PutUint64(h[24:], myLBA)
	binary.LittleEndian.PutUint64(h[32:], altLBA)
	binary.LittleEndian.PutUint64(h[40:], firstUsableLBA)
	binary.LittleEndian.PutUint64(h[48:], t.lastUsableLBA())
	disk := mustGUID(t.disk)
	copy(h[56:72], disk[:])
	binary.LittleEndian.PutUint64(h[72:], entriesLBA)
	binary.LittleEndian.PutUint32(h[80:], gptEntryCount)
	binary.LittleEndian.PutUint32(h[84:], gptEntrySize)
	binary.LittleEndian.PutUint32(h[88:], entriesCRC)
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:gptHeaderSize]))
	return h
}

// primary is LBAs 1 to 33: the header, then the entries.
func (t gpt) primary() []byte {
	e := t.entries()
	return append(t.header(1, t.lastLBA(), 2, crc32.ChecksumIEEE(e)), e...)
}

// backup is the last 33 LBAs: the entries, then the header on the last LBA.
func (t gpt) backup() []byte {
	e := t.entries()
	return append(e, t.header(t.lastLBA(), 1, t.backupEntriesLBA(), crc32.ChecksumIEEE(e))...)
}
