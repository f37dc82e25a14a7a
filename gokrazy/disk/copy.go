package disk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// holeSize is the granularity of sparse writes: a 4 KiB block of zeros is
// not written, so it stays a hole of the new file (and reads as zeros).
const holeSize = 4096

// copyInto writes r at the start of partition p of f, which must read as
// zeros there; it fails with ErrTooLarge when r does not fit p.
func copyInto(f *os.File, p partition, r io.Reader) error {
	buf := make([]byte, 1<<20)
	off, end := p.offset(), p.offset()+p.size()
	for {
		n, err := io.ReadFull(r, buf)
		if off+int64(n) > end {
			return fmt.Errorf("more than the %d bytes of partition at LBA %d: %w", p.size(), p.first, ErrTooLarge)
		}
		if werr := writeSparse(f, off, buf[:n]); werr != nil {
			return werr
		}
		off += int64(n)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// writeSparse writes b at off in f, leaving out the holeSize blocks that
// are all zero.
func writeSparse(f *os.File, off int64, b []byte) error {
	run := -1 // start of the non-zero blocks not yet written
	flush := func(end int) error {
		if run < 0 {
			return nil
		}
		_, err := f.WriteAt(b[run:end], off+int64(run))
		run = -1
		return err
	}
	for i := 0; i < len(b); i += holeSize {
		blk := b[i:min(i+holeSize, len(b))]
		if bytes.Count(blk, []byte{0}) != len(blk) {
			if run < 0 {
				run = i
			}
			continue
		}
		if err := flush(i); err != nil {
			return err
		}
	}
	return flush(len(b))
}
