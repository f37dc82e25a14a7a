package store

import (
	"encoding/json"
	"fmt"

	"github.com/psigate/psigate/sbc/b2bua"
	bolt "go.etcd.io/bbolt"
)

// bucketCalls holds the call detail records under big-endian sequence
// numbers, so that key order is the order they were added.
var bucketCalls = []byte("cdr")

// CallRecord is a stored call detail record.
type CallRecord struct {
	// Seq numbers the records in the order they were added; it is the
	// cursor for paging (see CallRecords).
	Seq uint64 `json:"seq"`
	b2bua.Record
}

// CallPage is one page of call records, newest first.
type CallPage struct {
	Records []CallRecord
	// Next is the Seq to pass as before for the next older page; 0 when
	// there is none.
	Next uint64
	// Skipped counts the stored values in the page's range that could not
	// be decoded; they are left out.
	Skipped int
}

// AddCallRecords appends records in one transaction and drops the oldest
// beyond MaxCallRecords.
func (s *Store) AddCallRecords(records []b2bua.Record) error {
	if len(records) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketCalls)
		if err != nil {
			return err
		}
		var n uint64
		for _, r := range records {
			if n, err = b.NextSequence(); err != nil {
				return err
			}
			if err := putJSON(b, u64(n), r); err != nil {
				return err
			}
		}
		return trimOldest(b, n, uint64(s.opts.MaxCallRecords))
	})
	if err != nil {
		return fmt.Errorf("store: add %d call records: %w", len(records), err)
	}
	return nil
}

// trimOldest deletes the keys up to newest-keep. The cursor seeks the
// first key again after each delete: bbolt's Next after a Delete may skip
// a key.
func trimOldest(b *bolt.Bucket, newest, keep uint64) error {
	if newest <= keep {
		return nil
	}
	limit := newest - keep
	c := b.Cursor()
	for k, _ := c.First(); k != nil && decode64(k) <= limit; k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// CallRecords returns up to limit records added before the record
// numbered before (0: the newest), newest first.
func (s *Store) CallRecords(limit int, before uint64) (CallPage, error) {
	var p CallPage
	if limit <= 0 {
		return p, nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCalls)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, v := c.Last()
		if before != 0 {
			k, v = c.Seek(u64(before))
			if k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
		}
		for ; k != nil && len(p.Records) < limit; k, v = c.Prev() {
			r := CallRecord{Seq: decode64(k)}
			if err := json.Unmarshal(v, &r.Record); err != nil || len(k) != 8 {
				p.Skipped++
				continue
			}
			p.Records = append(p.Records, r)
		}
		if k != nil && len(p.Records) > 0 {
			p.Next = p.Records[len(p.Records)-1].Seq
		}
		return nil
	})
	if err != nil {
		return CallPage{}, fmt.Errorf("store: call records before %d: %w", before, err)
	}
	return p, nil
}

// CallRecordCount is the number of stored call records.
func (s *Store) CallRecordCount() (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketCalls); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: count call records: %w", err)
	}
	return n, nil
}
