package disk

import "encoding/binary"

// MBR field offsets.
const (
	mbrSignatureOffset = 440 // disk signature, 4 bytes little-endian
	mbrEntriesOffset   = 446 // four partition entries of 16 bytes
	mbrUpdateSize      = mbrEntriesOffset
)

// MBR is the start of LBA 0 that gokrazy's PUT /update/mbr writes: 440
// bytes of boot code, the disk signature (FNV-1a-32 of hostname,
// little-endian) and two zero bytes; the partition entries after it are
// left alone. The boot code is zero: psigate does not ship gokrazy's
// legacy-BIOS loader, so images boot by UEFI or the Raspberry Pi firmware.
func MBR(hostname string) []byte {
	b := make([]byte, mbrUpdateSize)
	binary.LittleEndian.PutUint32(b[mbrSignatureOffset:], hostHash(hostname))
	return b
}

// mbrEntry is one MBR partition entry.
type mbrEntry struct {
	active bool
	typ    byte
	start  uint32 // LBA
	count  uint32 // sectors
}

// hybridMBR is LBA 0 as gok writes it: the boot FAT as an active type 0x0C
// entry, so that the Raspberry Pi ROM (which reads only the MBR) finds it,
// then a protective 0xEE entry over LBAs 1 to 8191, so that Linux and UEFI
// read the GPT (UEFI 2.10 section 5.2.3 wants the 0xEE entry to cover the
// disk; a hybrid MBR deliberately does not).
func hybridMBR(hostname string) [sectorSize]byte {
	var b [sectorSize]byte
	copy(b[:], MBR(hostname))
	entries := []mbrEntry{
		{active: true, typ: 0x0c, start: bootLBA, count: uint32(BootSize / sectorSize)},
		{typ: 0xee, start: 1, count: bootLBA - 1},
	}
	for i, p := range entries {
		e := b[mbrEntriesOffset+16*i:]
		if p.active {
			e[0] = 0x80
		}
		// CHS FE FF FF, the largest address: firmware uses the LBA fields.
		copy(e[1:4], []byte{0xfe, 0xff, 0xff})
		e[4] = p.typ
		copy(e[5:8], []byte{0xfe, 0xff, 0xff})
		binary.LittleEndian.PutUint32(e[8:], p.start)
		binary.LittleEndian.PutUint32(e[12:], p.count)
	}
	b[510], b[511] = 0x55, 0xaa
	return b
}
