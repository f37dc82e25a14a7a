package fat

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// maxLongName is the longest long name in UTF-16 code units (fatgen103,
// "FAT Long Directory Entries").
const maxLongName = 255

// splitPath turns "/EFI/BOOT/BOOTX64.EFI" or "cmdline.txt" into its
// validated components.
func splitPath(p string) ([]string, error) {
	if p == "" {
		return nil, fmt.Errorf("%w: empty path", ErrInvalidPath)
	}
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for _, name := range parts {
		if err := validName(name); err != nil {
			return nil, err
		}
	}
	return parts, nil
}

// validName rejects what a FAT long name cannot hold (fatgen103, "FAT Long
// Directory Entries": no control characters and none of "*/:<>?\|), and
// trailing dots and spaces, which Windows and Linux strip.
func validName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty name", ErrInvalidPath)
	case name == "." || name == "..":
		return fmt.Errorf("%w: %q is not allowed as a name", ErrInvalidPath, name)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidPath, name)
	case strings.HasSuffix(name, ".") || strings.HasSuffix(name, " "):
		return fmt.Errorf("%w: %q ends in a dot or space", ErrInvalidPath, name)
	case len(utf16.Encode([]rune(name))) > maxLongName:
		return fmt.Errorf("%w: %q is longer than %d characters", ErrInvalidPath, name, maxLongName)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(`"*/:<>?\|`, r) {
			return fmt.Errorf("%w: %q: character %q is not allowed in FAT names", ErrInvalidPath, name, r)
		}
	}
	return nil
}

// isShortChar reports whether r may appear in an 8.3 name (fatgen103, "FAT
// Directory Structure"), upper case only.
func isShortChar(r rune) bool {
	return r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'()-@^_`{}~", r)
}

// shortBasis derives the 8.3 basis of name following fatgen103,
// "Basis-Name Generation Algorithm", except that letters become lower case:
// gokrazy's on-device reader matches extension-less names byte for byte
// against the path it looks for ("loader", "entries"), and gok writes lower
// case, which the Raspberry Pi firmware and UEFI accept. lossy reports that
// the basis lost more than letter case, so the name needs a numeric tail.
func shortBasis(name string) (base, ext string, lossy bool) {
	trimmed := strings.TrimLeft(name, ".")
	lossy = trimmed != name
	b, e := trimmed, ""
	if i := strings.LastIndexByte(trimmed, '.'); i >= 0 {
		b, e = trimmed[:i], trimmed[i+1:]
	}
	base, l1 := shortPart(b, 8)
	ext, l2 := shortPart(e, 3)
	if base == "" {
		base, lossy = "_", true
	}
	return base, ext, lossy || l1 || l2
}

// shortPart maps s to at most max lower-case 8.3 characters: spaces and
// dots are dropped, other characters an 8.3 name cannot hold become '_'.
func shortPart(s string, max int) (string, bool) {
	var b strings.Builder
	lossy := false
	for _, r := range s {
		switch {
		case r == ' ' || r == '.':
			lossy = true
		case r < utf8.RuneSelf && isShortChar(unicode.ToUpper(r)):
			b.WriteRune(unicode.ToLower(r))
		default:
			b.WriteByte('_')
			lossy = true
		}
	}
	out := b.String()
	if len(out) > max {
		return out[:max], true
	}
	return out, lossy
}

// withTail appends the numeric tail "~n" to base, shortening it to keep
// 8 characters (fatgen103, "Numeric-Tail Generation Algorithm").
func withTail(base string, n int) string {
	tail := "~" + strconv.Itoa(n)
	return base[:min(len(base), 8-len(tail))] + tail
}

// shortBytes is the 11-byte directory form of base and ext.
func shortBytes(base, ext string) [11]byte {
	var b [11]byte
	copy(b[:], base+strings.Repeat(" ", 8-len(base))+ext+strings.Repeat(" ", 3-len(ext)))
	return b
}

// shortString is the dotted form of an 11-byte short name, e.g. "cmdline.txt".
func shortString(b [11]byte) string {
	base, ext := strings.TrimRight(string(b[:8]), " "), strings.TrimRight(string(b[8:]), " ")
	if ext == "" {
		return base
	}
	return base + "." + ext
}

// checksum is the short-name checksum stored in every long-name entry
// (fatgen103, "FAT Long Directory Entries").
func checksum(short [11]byte) byte {
	var sum byte
	for _, c := range short {
		sum = (sum>>1 | sum<<7) + c
	}
	return sum
}

// longEntries returns the long-name directory entries for name in on-disk
// order: the last part first, flagged 0x40, down to part 1.
func longEntries(name string, short [11]byte) [][dirEntrySize]byte {
	units := utf16.Encode([]rune(name))
	n := (len(units) + 12) / 13
	if len(units)%13 != 0 {
		units = append(units, 0) // terminator, only when a part has room
	}
	for len(units) < n*13 {
		units = append(units, 0xffff)
	}
	sum := checksum(short)
	out := make([][dirEntrySize]byte, 0, n)
	for ord := n; ord >= 1; ord-- {
		out = append(out, longEntry(ord, ord == n, units[(ord-1)*13:ord*13], sum))
	}
	return out
}

// longEntry lays out one long-name entry: 13 UTF-16 units at byte offsets
// 1, 14 and 28 around the attribute, checksum and zero cluster fields.
func longEntry(ord int, last bool, units []uint16, sum byte) [dirEntrySize]byte {
	var e [dirEntrySize]byte
	e[0] = byte(ord)
	if last {
		e[0] |= 0x40
	}
	e[11] = attrLongName
	e[13] = sum
	offsets := [13]int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30}
	for i, u := range units {
		e[offsets[i]], e[offsets[i]+1] = byte(u), byte(u>>8)
	}
	return e
}

// longCount is the number of long-name entries name needs.
func longCount(name string) int {
	return (len(utf16.Encode([]rune(name))) + 12) / 13
}
