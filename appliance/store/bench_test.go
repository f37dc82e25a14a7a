package store

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/psigate/psigate/appliance/config"
	"github.com/psigate/psigate/sbc/b2bua"
	bolt "go.etcd.io/bbolt"
)

// BenchmarkStoreApply measures an apply as the portal does it: save the
// candidate (validated), then apply it (validated again, a new revision
// and the running pointer in one fsynced transaction).
func BenchmarkStoreApply(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c, _ := s.Candidate()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.System.Hostname = "h" + strconv.Itoa(i)
		if _, err := s.SetCandidate(c); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Apply(ApplyOptions{Author: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStoreApplyReference is the floor: two bare fsynced bbolt
// transactions writing a configuration of the same size, no validation.
func BenchmarkStoreApplyReference(b *testing.B) {
	db, err := bolt.Open(b.TempDir()+"/ref.db", 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	data, _ := json.Marshal(config.Default())
	put := func(bucket, key []byte) error {
		return db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists(bucket)
			if err != nil {
				return err
			}
			return bk.Put(key, data)
		})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := put([]byte("c"), []byte("candidate")); err != nil {
			b.Fatal(err)
		}
		if err := put([]byte("r"), u64(uint64(i))); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConfigValidate measures validating the default configuration.
func BenchmarkConfigValidate(b *testing.B) {
	c := config.Default()
	for i := 0; i < b.N; i++ {
		if err := c.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAddCallRecords measures one batch as the call log writes it
// (about a second's worth of ended calls, one fsynced transaction) into a
// full log, so that every batch also trims as many of the oldest.
func BenchmarkAddCallRecords(b *testing.B) {
	const batch = 20
	s, err := Open(b.TempDir(), Options{MaxCallRecords: 10000})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	records := make([]b2bua.Record, batch)
	for i := range records {
		records[i] = callRecord(i)
	}
	for range 10000 / batch {
		if err := s.AddCallRecords(records); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.AddCallRecords(records); err != nil {
			b.Fatal(err)
		}
	}
}
