// Package store keeps the appliance's state in one bbolt file: the
// candidate and running configuration with numbered revisions, the
// machine identity, admin users, portal sessions, the audit log and the
// call detail records.
//
// bbolt commits each transaction atomically (copy-on-write pages, a meta
// page written last and fsynced), so a crash during Apply leaves either
// the old or the new running configuration, never a mix.
package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// FileName is the name of the data file inside the data directory.
const FileName = "psigate.db"

// Errors of the store.
var (
	ErrNotFound    = errors.New("not found")
	ErrNoPending   = errors.New("no apply is waiting for confirmation")
	ErrPasswordSet = errors.New("the admin password is already set")
)

var (
	bucketMeta      = []byte("meta")
	bucketConfig    = []byte("config")
	bucketRevisions = []byte("revisions")
	bucketUsers     = []byte("users")
	bucketSessions  = []byte("sessions")
	bucketAudit     = []byte("audit")

	keyCandidate = []byte("candidate")
	keyRunning   = []byte("running")
	keyPending   = []byte("pending")
	keyIdentity  = []byte("identity")
)

// Options tune a store; the zero value is fine.
type Options struct {
	// Now is the clock; default time.Now.
	Now func() time.Time
	// MaxRevisions bounds the history; the oldest revisions beyond it are
	// pruned (never the running one). Default 1000.
	MaxRevisions int
	// MaxAudit bounds the audit log; default 10000 events.
	MaxAudit int
	// MaxCallRecords bounds the call detail records; the oldest beyond
	// it are dropped. Default 10000 records.
	MaxCallRecords int
	// NoSync skips fsync, for benchmarks only.
	NoSync bool
}

// Store is the appliance's state. It is safe for concurrent use.
type Store struct {
	db   *bolt.DB
	opts Options

	mu       sync.Mutex
	watchers map[chan Revision]struct{}
	// pendingChanged wakes RunConfirmTimer when a confirmation deadline
	// is set or cleared.
	pendingChanged chan struct{}
}

// Open opens or creates the data file in dir (mode 0700 for dir, 0600 for
// the file) and, on first use, stores the default configuration as
// revision 1.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxRevisions <= 0 {
		opts.MaxRevisions = 1000
	}
	if opts.MaxAudit <= 0 {
		opts.MaxAudit = 10000
	}
	if opts.MaxCallRecords <= 0 {
		opts.MaxCallRecords = 10000
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create data directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoSync: opts.NoSync})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// A file copied in with looser permissions still holds secrets.
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	s := &Store{db: db, opts: opts, watchers: map[chan Revision]struct{}{}, pendingChanged: make(chan struct{}, 1)}
	if err := s.init(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the data file.
func (s *Store) Close() error {
	s.mu.Lock()
	for ch := range s.watchers {
		close(ch)
		delete(s.watchers, ch)
	}
	s.mu.Unlock()
	return s.db.Close()
}

// Path is the data file's path.
func (s *Store) Path() string { return s.db.Path() }

// Check verifies the file's internal consistency (bbolt's page checks).
func (s *Store) Check() error {
	return s.db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
}

func (s *Store) init() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketConfig, bucketRevisions, bucketUsers, bucketSessions, bucketAudit, bucketCalls} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("store: create bucket %s: %w", b, err)
			}
		}
		if tx.Bucket(bucketConfig).Get(keyRunning) != nil {
			return nil
		}
		return s.initConfig(tx)
	})
}

func u64(n uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, n)
	return b
}

func getJSON(b *bolt.Bucket, key []byte, v any) error {
	data := b.Get(key)
	if data == nil {
		return ErrNotFound
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("store: decode %s/%s: %w", b.Tx().DB().Path(), key, err)
	}
	return nil
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: encode %s: %w", key, err)
	}
	return b.Put(key, data)
}

var bucketRecords = []byte("records")

// SaveRecords writes and deletes a service's records of one kind (e.g.
// "sip-bindings") in one transaction.
func (s *Store) SaveRecords(kind string, put map[string][]byte, del []string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(bucketRecords)
		if err != nil {
			return err
		}
		b, err := root.CreateBucketIfNotExists([]byte(kind))
		if err != nil {
			return fmt.Errorf("store: records %q: %w", kind, err)
		}
		for k, v := range put {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		for _, k := range del {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
}

// LoadRecords reads every record of a kind.
func (s *Store) LoadRecords(kind string) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.db.View(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketRecords)
		if root == nil {
			return nil
		}
		b := root.Bucket([]byte(kind))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			out[string(k)] = append([]byte(nil), v...)
			return nil
		})
	})
	return out, err
}
