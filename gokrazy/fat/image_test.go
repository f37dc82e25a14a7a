package fat

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"unicode/utf16"
)

// This file reads images back for the tests: a strict walker that checks
// the structure and returns every file by its long path, and a lookup that
// behaves like gokrazy's on-device reader.

var le = binary.LittleEndian

// volume is a parsed boot sector.
type volume struct {
	b                                 []byte
	spc, reserved, rootEntries, fatSz int64
	total, clusters                   int64
	label                             string
}

func (v *volume) rootOffset() int64 { return (v.reserved + v.fatSz) * sectorSize }

func (v *volume) dataOffset() int64 { return v.rootOffset() + v.rootEntries*dirEntrySize }

func (v *volume) clusterOffset(c int64) int64 {
	return v.dataOffset() + (c-2)*v.spc*sectorSize
}

func (v *volume) fatEntry(c int64) int64 {
	return int64(le.Uint16(v.b[v.reserved*sectorSize+2*c:]))
}

// parseVolume checks the boot sector against what gokrazy needs.
func parseVolume(t *testing.T, b []byte) *volume {
	t.Helper()
	if len(b) < sectorSize || len(b)%sectorSize != 0 {
		t.Fatalf("image is %d bytes, not whole sectors", len(b))
	}
	v := &volume{
		b:           b,
		spc:         int64(b[13]),
		reserved:    int64(le.Uint16(b[14:])),
		rootEntries: int64(le.Uint16(b[17:])),
		fatSz:       int64(le.Uint16(b[22:])),
		total:       int64(le.Uint16(b[19:])),
		label:       string(b[43:54]),
	}
	if v.total == 0 {
		v.total = int64(le.Uint32(b[32:]))
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"jump", b[0], byte(0xeb)},
		{"signature", le.Uint16(b[510:]), uint16(0xaa55)},
		{"bytes per sector", le.Uint16(b[11:]), uint16(sectorSize)},
		{"FAT copies", b[16], byte(1)},
		{"media", b[21], byte(0xf8)},
		{"type", string(b[54:62]), "FAT16   "},
		{"total bytes", v.total * sectorSize, int64(len(b))},
		{"root entries per sector", v.rootEntries % 16, int64(0)},
		{"FAT[0]", le.Uint16(b[v.reserved*sectorSize:]), uint16(0xfff8)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("boot sector: %s = %v, want %v", c.what, c.got, c.want)
		}
	}
	v.clusters = (v.total*sectorSize - v.dataOffset()) / (v.spc * sectorSize)
	if v.clusters < 4085 || v.clusters > 65524 {
		t.Errorf("%d clusters: not FAT16", v.clusters)
	}
	if 2*(v.clusters+2) > v.fatSz*sectorSize {
		t.Errorf("FAT of %d sectors is too small for %d clusters", v.fatSz, v.clusters)
	}
	if t.Failed() {
		t.FailNow()
	}
	return v
}

// walk reads the whole tree: file contents by long path (without a leading
// slash), directories with nil contents. It fails the test on any
// structural fault: a chain that is not contiguous or ends wrong, a cluster
// used twice, a long name whose checksum or sequence is wrong, missing or
// wrong "." and "..", a directory whose attribute is not exactly 0x10.
func (v *volume) walk(t *testing.T) map[string][]byte {
	t.Helper()
	w := &walker{v: v, t: t, files: map[string][]byte{}, used: map[int64]string{}}
	root := v.b[v.rootOffset():v.dataOffset()]
	w.dir("", root, 0, 0)
	return w.files
}

type walker struct {
	v     *volume
	t     *testing.T
	files map[string][]byte
	used  map[int64]string // cluster → path
}

// chain returns the bytes of the contiguous chain starting at cluster c,
// which must be exactly n clusters long.
func (w *walker) chain(path string, c, n int64) []byte {
	for i := range n {
		if prev, ok := w.used[c+i]; ok {
			w.t.Fatalf("%s: cluster %d is also used by %s", path, c+i, prev)
		}
		w.used[c+i] = path
		want := c + i + 1
		if i == n-1 {
			want = 0xffff
		}
		if got := w.v.fatEntry(c + i); got != want && !(i == n-1 && got >= 0xfff8) {
			w.t.Fatalf("%s: FAT[%d] = %#x, want %#x (contiguous chain of %d)", path, c+i, got, want, n)
		}
	}
	off := w.v.clusterOffset(c)
	return w.v.b[off : off+n*w.v.spc*sectorSize]
}

// dir reads the entries of one directory; self and parent are its own
// and its parent's first cluster.
func (w *walker) dir(path string, entries []byte, self, parent int64) {
	var long []uint16
	var sum byte
	next := 0 // the long-name part expected next, 0 = none pending
	for i := 0; i+dirEntrySize <= len(entries); i += dirEntrySize {
		e := entries[i : i+dirEntrySize]
		switch {
		case e[0] == 0:
			return
		case e[0] == 0xe5:
			w.t.Fatalf("%s: deleted entry %d", path, i/dirEntrySize)
		case e[11] == attrLongName:
			long, sum, next = w.longPart(path, e, long, sum, next)
			continue
		case e[11] == attrVolumeID:
			continue
		}
		var short [11]byte
		copy(short[:], e)
		name := shortString(short)
		if next > 0 {
			w.t.Fatalf("%s: long name for %q incomplete", path, name)
		}
		if long != nil {
			if checksum(short) != sum {
				w.t.Fatalf("%s: long name checksum %#x for %q, want %#x", path, sum, name, checksum(short))
			}
			name = decodeLong(long)
		}
		long, next = nil, 0
		w.entry(path, i/dirEntrySize, name, e, self, parent)
	}
}

// longPart adds one long-name entry; parts come last first (0x40 set).
// next is the part expected next, -1 once all parts are there.
func (w *walker) longPart(path string, e []byte, long []uint16, sum byte, next int) ([]uint16, byte, int) {
	ord := int(e[0] & 0x1f)
	if e[0]&0x40 != 0 {
		if next > 0 {
			w.t.Fatalf("%s: long name restarted before part %d", path, next)
		}
		long, sum, next = make([]uint16, ord*13), e[13], ord
	}
	if ord == 0 || ord != next || e[13] != sum {
		w.t.Fatalf("%s: long-name entry %#x out of sequence (want part %d) or checksum changed", path, e[0], next)
	}
	for k, off := range []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30} {
		long[(ord-1)*13+k] = le.Uint16(e[off:])
	}
	if next == 1 {
		return long, sum, -1
	}
	return long, sum, next - 1
}

func decodeLong(units []uint16) string {
	for i, u := range units {
		if u == 0 {
			units = units[:i]
			break
		}
	}
	return string(utf16.Decode(units))
}

// entry checks one short entry and descends into directories.
func (w *walker) entry(path string, index int, name string, e []byte, self, parent int64) {
	cluster, size := int64(le.Uint16(e[26:])), int64(le.Uint32(e[28:]))
	switch {
	case name == "." || name == "..":
		want := map[string]int64{".": self, "..": parent}[name]
		if path == "" || index > 1 || cluster != want || e[11] != attrDirectory {
			w.t.Fatalf("%s: %q entry %d points at %d (attr %#x), want entry %d at %d", path, name, index, cluster, e[11], index, want)
		}
		return
	case path != "" && index < 2:
		w.t.Fatalf("%s: %q before \".\" and \"..\"", path, name)
	}
	full := strings.TrimPrefix(path+"/"+name, "/")
	if _, dup := w.files[full]; dup {
		w.t.Fatalf("%s: listed twice", full)
	}
	csize := w.v.spc * sectorSize
	if e[11]&attrDirectory == 0 {
		w.files[full] = []byte{}
		if size > 0 {
			w.files[full] = w.chain(full, cluster, (size+csize-1)/csize)[:size]
		}
		return
	}
	if e[11] != attrDirectory || size != 0 {
		w.t.Fatalf("%s: directory with attribute %#x and size %d", full, e[11], size)
	}
	w.files[full] = nil
	n := int64(1)
	for c := cluster; w.v.fatEntry(c) == c+1; c++ {
		n++
	}
	w.dir(full, w.chain(full, cluster, n), cluster, self)
}

// gokrazyExtent finds path the way gokrazy's on-device reader does
// (github.com/gokrazy/internal/fat, Reader.Extents, read for this test):
// it takes the root directory to follow the reserved sectors and one FAT
// of the 16-bit size, scans every directory for as many entries as the
// root has, starting at the directory's first cluster, ignores long names,
// takes an entry with attribute exactly 0x10 as a directory and anything
// else as a contiguous file.
func gokrazyExtent(b []byte, path string) (offset, size int64, err error) {
	bps, spc := int64(le.Uint16(b[11:])), int64(b[13])
	reserved, entries, fatSz := int64(le.Uint16(b[14:])), int64(le.Uint16(b[17:])), int64(le.Uint16(b[22:]))
	dir := (reserved + fatSz) * bps
	data := dir + (entries*dirEntrySize+bps-1)/bps*bps
	for _, comp := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		for i := range entries {
			at := dir + i*dirEntrySize
			if at+dirEntrySize > int64(len(b)) {
				return 0, 0, fmt.Errorf("%q: read past the end of the image at %d", path, at)
			}
			e := b[at : at+dirEntrySize]
			if e[0] == 0 || !gokrazyNameMatches(e[:11], comp) {
				continue
			}
			off := data + (int64(le.Uint16(e[26:]))-2)*spc*bps
			if e[11] != attrDirectory {
				return off, int64(le.Uint32(e[28:])), nil
			}
			dir = off
			break
		}
	}
	return 0, 0, fmt.Errorf("%q: %w", path, ErrNotFound)
}

// gokrazyNameMatches is the reader's comparison. It forms "NAME.EXT" from
// the stored bytes (NAME up to the first space; ".EXT" with all three
// bytes unless the first is a space) and compares it case-insensitively
// with its own 8.3 form of the component, or byte for byte with the
// component itself. Its 8.3 form of an extension-less name ends in ".",
// so such names (directories like "loader") only match byte for byte.
func gokrazyNameMatches(short []byte, comp string) bool {
	name := string(short[:8])
	if i := strings.IndexByte(name, ' '); i >= 0 {
		name = name[:i]
	}
	if short[8] != ' ' {
		name += "." + string(short[8:11])
	}
	return strings.EqualFold(name, gokrazyShortName(comp)) || name == comp
}

// gokrazyShortName is the reader's 8.3 form of a path component: upper
// case, spaces and leading dots dropped, the part before the last dot cut
// to 8 and the extension to 3 characters; if either was cut, the base
// becomes at most 6 characters plus "~1". A "." always follows the base.
func gokrazyShortName(comp string) string {
	s := strings.TrimLeft(strings.ToUpper(strings.ReplaceAll(comp, " ", "")), ".")
	base, ext := s, ""
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		base, ext = s[:i], s[i+1:]
	}
	if len(base) > 8 || len(ext) > 3 {
		base, ext = base[:min(len(base), 6)]+"~1", ext[:min(len(ext), 3)]
	}
	return base + "." + ext
}
