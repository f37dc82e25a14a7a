package fat

import (
	"fmt"
	"strings"
	"time"
)

// DefaultMaxSize is the size of gokrazy's boot partition: 100 MiB.
const DefaultMaxSize = 100 << 20

// Options shape the file system that a Writer produces. The zero value is
// usable: no label, serial 0, timestamps 1980-01-01, as small as FAT16
// allows, at most DefaultMaxSize.
type Options struct {
	// Label is the volume label: up to 11 characters from the 8.3 name
	// set (letters, digits, space and !#$%&'()-@^_`{}~), stored in upper
	// case, e.g. "GOKRAZY". Empty means no label ("NO NAME").
	Label string
	// Serial is the volume serial number (volume ID), e.g. 0x60c24cc1.
	Serial uint32
	// Time stamps every file and directory (creation, write and access
	// time), taken as UTC wall clock with FAT's 2-second resolution,
	// e.g. the build time. Zero means 1980-01-01 00:00:00, the earliest
	// time FAT can store; the latest is the end of 2107.
	Time time.Time
	// MinSize pads the file system to at least this many bytes (rounded
	// up to 512-byte sectors), e.g. 104857600 to fill the partition.
	// 0 means as small as a valid FAT16 for the contents, at least about
	// 2 MiB (4096 clusters of 512 bytes).
	MinSize int64
	// MaxSize is the most bytes the file system may take (rounded down to
	// 512-byte sectors), e.g. the partition size. 0 means DefaultMaxSize.
	MaxSize int64
}

// DefaultOptions is what gokrazy images use: label GOKRAZY, at most one
// 100 MiB partition, as small as the contents allow.
func DefaultOptions() Options {
	return Options{Label: "GOKRAZY", MaxSize: DefaultMaxSize}
}

// Validate checks the options; errors name the field.
func (o Options) Validate() error {
	if err := validLabel(o.Label); err != nil {
		return fmt.Errorf("fat: options: Label: %w", err)
	}
	if t := o.stamp(); t.Year() < 1980 || t.Year() > 2107 {
		return fmt.Errorf("fat: options: Time: %v is outside FAT's range 1980..2107", o.Time)
	}
	if o.MinSize < 0 {
		return fmt.Errorf("fat: options: MinSize: %d is negative", o.MinSize)
	}
	if o.MaxSize < 0 {
		return fmt.Errorf("fat: options: MaxSize: %d is negative", o.MaxSize)
	}
	if o.MinSize > o.maxSize() {
		return fmt.Errorf("fat: options: MinSize: %d is more than MaxSize %d", o.MinSize, o.maxSize())
	}
	return nil
}

func validLabel(l string) error {
	if len(l) > 11 {
		return fmt.Errorf("%q is longer than 11 characters", l)
	}
	for _, r := range strings.ToUpper(l) {
		if r != ' ' && !isShortChar(r) {
			return fmt.Errorf("%q: character %q is not allowed in a volume label", l, r)
		}
	}
	return nil
}

// label is the 11-byte label field, "NO NAME    " when there is none.
func (o Options) label() [11]byte {
	l := strings.ToUpper(o.Label)
	if l == "" {
		l = "NO NAME"
	}
	var b [11]byte
	copy(b[:], l+strings.Repeat(" ", 11-len(l)))
	return b
}

func (o Options) stamp() time.Time {
	if o.Time.IsZero() {
		return time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return o.Time.UTC()
}

func (o Options) minSectors() int64 { return (o.MinSize + sectorSize - 1) / sectorSize }

func (o Options) maxSectors() int64 { return o.maxSize() / sectorSize }

func (o Options) maxSize() int64 {
	if o.MaxSize == 0 {
		return DefaultMaxSize
	}
	return o.MaxSize
}
