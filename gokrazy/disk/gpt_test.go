package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"testing"
	"unicode/utf16"
)

// This file holds a GPT reader written from UEFI 2.10 section 5.3 for the
// tests only: it reads back what gpt.go writes, and rejects what a
// firmware would.

var errBadGPT = errors.New("bad GPT")

// gptHeader is a decoded GPT header (UEFI 2.10 table 5.5).
type gptHeader struct {
	myLBA, altLBA           uint64
	firstUsable, lastUsable uint64
	disk                    string
	entriesLBA              uint64
	count, size             uint32
	entriesCRC              uint32
}

// gptEntry is a decoded, used partition entry (UEFI 2.10 table 5.6).
type gptEntry struct {
	index       int // from 1
	typ, guid   string
	first, last uint64
	attrs       uint64
	name        string
}

// guidString decodes the mixed-endian GUID in b (UEFI 2.10 appendix A).
func guidString(b []byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", binary.LittleEndian.Uint32(b[0:4]),
		binary.LittleEndian.Uint16(b[4:6]), binary.LittleEndian.Uint16(b[6:8]), b[8:10], b[10:16])
}

// parseGPTHeader checks and decodes the header sector b.
func parseGPTHeader(b []byte) (gptHeader, error) {
	var h gptHeader
	if len(b) < sectorSize {
		return h, fmt.Errorf("%w: header sector of %d bytes", errBadGPT, len(b))
	}
	if string(b[0:8]) != "EFI PART" {
		return h, fmt.Errorf("%w: signature %q", errBadGPT, b[0:8])
	}
	if rev := binary.LittleEndian.Uint32(b[8:]); rev != 0x00010000 {
		return h, fmt.Errorf("%w: revision %#x", errBadGPT, rev)
	}
	size := binary.LittleEndian.Uint32(b[12:])
	if size < gptHeaderSize || size > sectorSize {
		return h, fmt.Errorf("%w: header size %d", errBadGPT, size)
	}
	hdr := bytes.Clone(b[:size])
	clear(hdr[16:20])
	if got, want := crc32.ChecksumIEEE(hdr), binary.LittleEndian.Uint32(b[16:]); got != want {
		return h, fmt.Errorf("%w: header CRC32 %#08x, computed %#08x", errBadGPT, want, got)
	}
	if r := binary.LittleEndian.Uint32(b[20:]); r != 0 {
		return h, fmt.Errorf("%w: reserved field %#x", errBadGPT, r)
	}
	h = gptHeader{
		myLBA:       binary.LittleEndian.Uint64(b[24:]),
		altLBA:      binary.LittleEndian.Uint64(b[32:]),
		firstUsable: binary.LittleEndian.Uint64(b[40:]),
		lastUsable:  binary.LittleEndian.Uint64(b[48:]),
		disk:        guidString(b[56:72]),
		entriesLBA:  binary.LittleEndian.Uint64(b[72:]),
		count:       binary.LittleEndian.Uint32(b[80:]),
		size:        binary.LittleEndian.Uint32(b[84:]),
		entriesCRC:  binary.LittleEndian.Uint32(b[88:]),
	}
	if h.size < 128 || h.size&(h.size-1) != 0 || h.count == 0 || uint64(h.count)*uint64(h.size) > 1<<20 {
		return h, fmt.Errorf("%w: %d entries of %d bytes", errBadGPT, h.count, h.size)
	}
	if h.firstUsable > h.lastUsable {
		return h, fmt.Errorf("%w: usable LBAs %d to %d", errBadGPT, h.firstUsable, h.lastUsable)
	}
	return h, nil
}

// readGPT reads the GPT whose header is at lba of disk and checks its CRCs
// and entries.
func readGPT(disk io.ReaderAt, lba uint64) (gptHeader, []gptEntry, error) {
	sector := make([]byte, sectorSize)
	if lba > 1<<40 {
		return gptHeader{}, nil, fmt.Errorf("%w: LBA %d", errBadGPT, lba)
	}
	if _, err := disk.ReadAt(sector, int64(lba)*sectorSize); err != nil {
		return gptHeader{}, nil, fmt.Errorf("reading GPT header at LBA %d: %w", lba, err)
	}
	h, err := parseGPTHeader(sector)
	if err != nil {
		return h, nil, err
	}
	if h.myLBA != lba {
		return h, nil, fmt.Errorf("%w: header at LBA %d says it is at %d", errBadGPT, lba, h.myLBA)
	}
	if h.entriesLBA > 1<<40 {
		return h, nil, fmt.Errorf("%w: entries at LBA %d", errBadGPT, h.entriesLBA)
	}
	raw := make([]byte, int(h.count)*int(h.size))
	if _, err := disk.ReadAt(raw, int64(h.entriesLBA)*sectorSize); err != nil {
		return h, nil, fmt.Errorf("reading GPT entries at LBA %d: %w", h.entriesLBA, err)
	}
	if got := crc32.ChecksumIEEE(raw); got != h.entriesCRC {
		return h, nil, fmt.Errorf("%w: entries CRC32 %#08x, computed %#08x", errBadGPT, h.entriesCRC, got)
	}
	entries, err := parseGPTEntries(h, raw)
	return h, entries, err
}

// parseGPTEntries decodes the used entries of raw and checks that they lie
// in the usable LBAs.
func parseGPTEntries(h gptHeader, raw []byte) ([]gptEntry, error) {
	var entries []gptEntry
	for i := range int(h.count) {
		e := raw[i*int(h.size) : (i+1)*int(h.size)]
		if bytes.Count(e[0:16], []byte{0}) == 16 {
			continue // unused
		}
		units := make([]uint16, 0, gptNameUnits)
		for j := 56; j+1 < 128 && (e[j] != 0 || e[j+1] != 0); j += 2 {
			units = append(units, binary.LittleEndian.Uint16(e[j:]))
		}
		p := gptEntry{
			index: i + 1,
			typ:   guidString(e[0:16]), guid: guidString(e[16:32]),
			first: binary.LittleEndian.Uint64(e[32:]), last: binary.LittleEndian.Uint64(e[40:]),
			attrs: binary.LittleEndian.Uint64(e[48:]),
			name:  string(utf16.Decode(units)),
		}
		if p.first > p.last || p.first < h.firstUsable || p.last > h.lastUsable {
			return nil, fmt.Errorf("%w: partition %d at LBAs %d to %d, usable %d to %d",
				errBadGPT, p.index, p.first, p.last, h.firstUsable, h.lastUsable)
		}
		entries = append(entries, p)
	}
	return entries, nil
}

// readBothGPTs reads the primary and the backup GPT of a disk of the given
// number of sectors and checks that they agree.
func readBothGPTs(disk io.ReaderAt, sectors uint64) (gptHeader, []gptEntry, error) {
	last := sectors - 1
	ph, pe, err := readGPT(disk, 1)
	if err != nil {
		return ph, nil, fmt.Errorf("primary: %w", err)
	}
	bh, be, err := readGPT(disk, last)
	if err != nil {
		return ph, nil, fmt.Errorf("backup: %w", err)
	}
	if ph.altLBA != last || bh.altLBA != 1 || ph.entriesLBA != 2 || bh.entriesLBA != last-32 {
		return ph, nil, fmt.Errorf("%w: primary %+v and backup %+v do not point at each other", errBadGPT, ph, bh)
	}
	ph2, bh2 := ph, bh
	ph2.myLBA, ph2.altLBA, ph2.entriesLBA = 0, 0, 0
	bh2.myLBA, bh2.altLBA, bh2.entriesLBA = 0, 0, 0
	if ph2 != bh2 || fmt.Sprint(pe) != fmt.Sprint(be) {
		return ph, nil, fmt.Errorf("%w: primary %+v %v differs from backup %+v %v", errBadGPT, ph, pe, bh, be)
	}
	return ph, pe, nil
}

// testGPT is a small table: a disk of 4096 sectors with two partitions.
func testGPT() gpt {
	return gpt{disk: diskGUID("test"), sectors: 4096, parts: []partition{
		{typeEFISystem, partGUID("test", 1), "Microsoft basic data", 2048, 3071},
		{typeLinuxData, partGUID("test", 2), "Linux filesystem", 3072, 4062},
	}}
}

// testGPTDisk lays out t on an in-memory disk.
func testGPTDisk(t gpt) []byte {
	disk := make([]byte, t.sectors*sectorSize)
	copy(disk[sectorSize:], t.primary())
	copy(disk[t.backupEntriesLBA()*sectorSize:], t.backup())
	return disk
}

func TestGPTReadBack(t *testing.T) {
	g := testGPT()
	h, entries, err := readBothGPTs(bytes.NewReader(testGPTDisk(g)), g.sectors)
	if err != nil {
		t.Fatal(err)
	}
	want := gptHeader{myLBA: 1, altLBA: 4095, firstUsable: 34, lastUsable: 4062,
		disk: "60c24cc1-f3f9-427a-8199-afd071e50000", entriesLBA: 2, count: 128, size: 128, entriesCRC: h.entriesCRC}
	if h != want {
		t.Errorf("header = %+v, want %+v", h, want)
	}
	wantEntries := []gptEntry{
		{1, typeEFISystem, "60c24cc1-f3f9-427a-8199-afd071e50001", 2048, 3071, 0, "Microsoft basic data"},
		{2, typeLinuxData, "60c24cc1-f3f9-427a-8199-afd071e50002", 3072, 4062, 0, "Linux filesystem"},
	}
	if fmt.Sprint(entries) != fmt.Sprint(wantEntries) {
		t.Errorf("entries = %+v, want %+v", entries, wantEntries)
	}
}

func TestGPTRejectsCorruption(t *testing.T) {
	const (
		primaryHeader = 1 * sectorSize
		primaryEntry  = 2 * sectorSize
		backupHeader  = 4095 * sectorSize
		backupEntry   = (4095 - 32) * sectorSize
	)
	for _, tc := range []struct {
		name string
		off  int // byte of the disk to change
		val  byte
		want string
	}{
		{"header CRC", primaryHeader + 16, 0x55, "header CRC32"},
		{"disk GUID under the header CRC", primaryHeader + 60, 0x55, "header CRC32"},
		{"signature", primaryHeader, 'e', "signature"},
		{"entry type", primaryEntry + 3, 0x55, "entries CRC32"},
		{"unused entry", primaryEntry + 100*128 + 7, 1, "entries CRC32"},
		{"entries CRC", primaryHeader + 88, 0x55, "header CRC32"},
		{"backup header CRC", backupHeader + 17, 0x55, "backup: bad GPT: header CRC32"},
		{"backup entry name", backupEntry + 128 + 60, 'X', "backup: bad GPT: entries CRC32"},
		{"backup gone", backupHeader, 0, "backup: bad GPT: signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := testGPT()
			disk := testGPTDisk(g)
			disk[tc.off] = tc.val
			_, _, err := readBothGPTs(bytes.NewReader(disk), g.sectors)
			if !errors.Is(err, errBadGPT) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %v with %q", err, errBadGPT, tc.want)
			}
		})
	}
}

// TestGPTRejectsEntryOutside checks the reader's range check with a table
// whose CRCs are right but whose partition overlaps the backup GPT.
func TestGPTRejectsEntryOutside(t *testing.T) {
	g := testGPT()
	g.parts[1].last = 4070
	_, _, err := readBothGPTs(bytes.NewReader(testGPTDisk(g)), g.sectors)
	if !errors.Is(err, errBadGPT) || !strings.Contains(err.Error(), "partition 2 at LBAs 3072 to 4070") {
		t.Errorf("err = %v, want partition 2 outside the usable LBAs", err)
	}
}

func FuzzReadGPT(f *testing.F) {
	disk := testGPTDisk(testGPT())
	f.Add(disk[:34*sectorSize])
	f.Add(disk[:2*sectorSize])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, entries, err := readGPT(bytes.NewReader(b), 1)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.first < h.firstUsable || e.last > h.lastUsable || e.first > e.last {
				t.Errorf("accepted entry %+v outside %+v", e, h)
			}
		}
	})
}
