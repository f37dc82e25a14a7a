package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/psigate/psigate/appliance/config"
	bolt "go.etcd.io/bbolt"
)

// Kind says how a revision came to be.
type Kind string

const (
	KindInitial      Kind = "initial"       // the defaults of a new appliance
	KindApply        Kind = "apply"         // the candidate was applied
	KindRollback     Kind = "rollback"      // an admin rolled back to an earlier revision
	KindAutoRollback Kind = "auto-rollback" // an apply was not confirmed in time
)

// RevisionInfo describes a revision without its configuration.
type RevisionInfo struct {
	Number  uint64    `json:"number"`
	Kind    Kind      `json:"kind"`
	Author  string    `json:"author"`
	Time    time.Time `json:"time"`
	Comment string    `json:"comment"`
	// From is the revision a rollback restored; 0 otherwise.
	From uint64 `json:"from,omitempty"`
}

// Revision is a numbered, immutable configuration.
type Revision struct {
	RevisionInfo
	Config config.Config `json:"config"`
}

// Pending is an apply that rolls back by itself unless confirmed.
type Pending struct {
	Revision uint64    `json:"revision"` // the revision waiting for confirmation
	Previous uint64    `json:"previous"` // what runs again if it is not confirmed
	Deadline time.Time `json:"deadline"`
	Author   string    `json:"author"`
}

// ApplyOptions describe an apply.
type ApplyOptions struct {
	Author  string
	Comment string
	// ConfirmWithin, when positive, rolls the apply back automatically
	// unless Confirm is called within it.
	ConfirmWithin time.Duration
}

func (s *Store) initConfig(tx *bolt.Tx) error {
	def := config.Default()
	if err := def.Validate(); err != nil {
		return fmt.Errorf("store: the built-in defaults are invalid: %w", err)
	}
	b := tx.Bucket(bucketConfig)
	if err := putJSON(b, keyCandidate, def); err != nil {
		return err
	}
	_, err := s.addRevision(tx, RevisionInfo{Kind: KindInitial, Author: "system", Comment: "factory defaults"}, def)
	return err
}

// addRevision stores cfg as the next revision and makes it running.
func (s *Store) addRevision(tx *bolt.Tx, info RevisionInfo, cfg config.Config) (Revision, error) {
	revs := tx.Bucket(bucketRevisions)
	n, err := revs.NextSequence()
	if err != nil {
		return Revision{}, fmt.Errorf("store: next revision: %w", err)
	}
	info.Number = n
	info.Time = s.opts.Now().UTC()
	rev := Revision{RevisionInfo: info, Config: cfg}
	if err := putJSON(revs, u64(n), rev); err != nil {
		return Revision{}, err
	}
	if err := tx.Bucket(bucketConfig).Put(keyRunning, u64(n)); err != nil {
		return Revision{}, err
	}
	return rev, s.prune(revs, n)
}

// prune drops the oldest revisions beyond MaxRevisions; the running one is
// the newest and a pending apply's previous one is kept.
func (s *Store) prune(revs *bolt.Bucket, newest uint64) error {
	if newest <= uint64(s.opts.MaxRevisions) {
		return nil
	}
	var keep uint64
	var p Pending
	if err := getJSON(revs.Tx().Bucket(bucketConfig), keyPending, &p); err == nil {
		keep = p.Previous
	}
	limit := newest - uint64(s.opts.MaxRevisions)
	c := revs.Cursor()
	for k, _ := c.First(); k != nil && decode64(k) <= limit; k, _ = c.Next() {
		if decode64(k) == keep {
			continue
		}
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

func decode64(b []byte) uint64 {
	if len(b) == 8 {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// Candidate is the configuration being edited.
func (s *Store) Candidate() (config.Config, error) {
	var c config.Config
	err := s.db.View(func(tx *bolt.Tx) error {
		return getJSON(tx.Bucket(bucketConfig), keyCandidate, &c)
	})
	return c, err
}

// SetCandidate validates c and stores it as the candidate. Secrets left
// empty in c (as in a redacted copy) keep their current values. An
// invalid c is refused with a field.List and changes nothing.
func (s *Store) SetCandidate(c config.Config) (config.Config, error) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketConfig)
		var cur config.Config
		if err := getJSON(b, keyCandidate, &cur); err != nil {
			return err
		}
		config.KeepSecrets(&c, cur)
		if err := c.Validate(); err != nil {
			return err
		}
		return putJSON(b, keyCandidate, c)
	})
	return c, err
}

// Running is the running revision.
func (s *Store) Running() (Revision, error) {
	var r Revision
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = running(tx)
		return err
	})
	return r, err
}

func running(tx *bolt.Tx) (Revision, error) {
	n := tx.Bucket(bucketConfig).Get(keyRunning)
	if n == nil {
		return Revision{}, fmt.Errorf("store: no running revision: %w", ErrNotFound)
	}
	var r Revision
	if err := getJSON(tx.Bucket(bucketRevisions), n, &r); err != nil {
		return Revision{}, fmt.Errorf("store: running revision %d: %w", decode64(n), err)
	}
	return r, nil
}

// Apply validates the candidate and, in one transaction, stores it as a
// new revision and makes it running. With ConfirmWithin it must be
// confirmed in time, or ExpirePending rolls it back; an apply during a
// pending confirmation keeps the original rollback target (and, without
// ConfirmWithin, confirms).
func (s *Store) Apply(o ApplyOptions) (Revision, error) {
	var rev Revision
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketConfig)
		var cand config.Config
		if err := getJSON(b, keyCandidate, &cand); err != nil {
			return err
		}
		if err := cand.Validate(); err != nil {
			return err
		}
		prev, err := running(tx)
		if err != nil {
			return err
		}
		rev, err = s.addRevision(tx, RevisionInfo{Kind: KindApply, Author: o.Author, Comment: o.Comment}, cand)
		if err != nil {
			return err
		}
		return s.setPending(b, o, rev.Number, prev.Number)
	})
	if err != nil {
		return Revision{}, err
	}
	s.notify(rev)
	return rev, nil
}

func (s *Store) setPending(b *bolt.Bucket, o ApplyOptions, rev, prev uint64) error {
	var old Pending
	hadPending := getJSON(b, keyPending, &old) == nil
	if o.ConfirmWithin <= 0 {
		return b.Delete(keyPending)
	}
	p := Pending{Revision: rev, Previous: prev, Deadline: s.opts.Now().Add(o.ConfirmWithin).UTC(), Author: o.Author}
	if hadPending {
		p.Previous = old.Previous
	}
	return putJSON(b, keyPending, p)
}

// Pending returns the apply waiting for confirmation, or ErrNoPending.
func (s *Store) Pending() (Pending, error) {
	var p Pending
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := getJSON(tx.Bucket(bucketConfig), keyPending, &p); errors.Is(err, ErrNotFound) {
			return ErrNoPending
		} else {
			return err
		}
	})
	return p, err
}

// Confirm keeps the pending apply.
func (s *Store) Confirm() (Pending, error) {
	var p Pending
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketConfig)
		if err := getJSON(b, keyPending, &p); errors.Is(err, ErrNotFound) {
			return ErrNoPending
		} else if err != nil {
			return err
		}
		return b.Delete(keyPending)
	})
	if err == nil {
		s.wakeConfirmTimer()
	}
	return p, err
}

// ExpirePending rolls back a pending apply whose deadline is not after
// now. It returns the new running revision, or ErrNoPending when there is
// nothing (yet) to roll back.
func (s *Store) ExpirePending(now time.Time) (Revision, error) {
	var rev Revision
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketConfig)
		var p Pending
		if err := getJSON(b, keyPending, &p); errors.Is(err, ErrNotFound) {
			return ErrNoPending
		} else if err != nil {
			return err
		}
		if now.Before(p.Deadline) {
			return ErrNoPending
		}
		comment := fmt.Sprintf("revision %d was not confirmed by %s", p.Revision, p.Deadline.Format(time.RFC3339))
		var err error
		rev, err = s.rollback(tx, p.Previous, KindAutoRollback, "system", comment)
		return err
	})
	if err != nil {
		return Revision{}, err
	}
	s.notify(rev)
	return rev, nil
}

// Rollback makes revision n running again, as a new revision, and loads
// it into the candidate. It cancels any pending confirmation.
func (s *Store) Rollback(n uint64, author, comment string) (Revision, error) {
	var rev Revision
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		rev, err = s.rollback(tx, n, KindRollback, author, comment)
		return err
	})
	if err != nil {
		return Revision{}, err
	}
	s.notify(rev)
	return rev, nil
}

func (s *Store) rollback(tx *bolt.Tx, n uint64, kind Kind, author, comment string) (Revision, error) {
	var old Revision
	if err := getJSON(tx.Bucket(bucketRevisions), u64(n), &old); err != nil {
		return Revision{}, fmt.Errorf("store: revision %d: %w", n, err)
	}
	if err := old.Config.Validate(); err != nil {
		return Revision{}, fmt.Errorf("store: revision %d no longer validates: %w", n, err)
	}
	b := tx.Bucket(bucketConfig)
	if err := b.Delete(keyPending); err != nil {
		return Revision{}, err
	}
	if err := putJSON(b, keyCandidate, old.Config); err != nil {
		return Revision{}, err
	}
	if comment == "" {
		comment = fmt.Sprintf("rollback to revision %d", n)
	}
	return s.addRevision(tx, RevisionInfo{Kind: kind, Author: author, Comment: comment, From: n}, old.Config)
}

// Revisions lists the kept revisions, newest first.
func (s *Store) Revisions() ([]RevisionInfo, error) {
	var out []RevisionInfo
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRevisions).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			var r struct{ RevisionInfo }
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("store: revision %d: %w", decode64(k), err)
			}
			out = append(out, r.RevisionInfo)
		}
		return nil
	})
	return out, err
}

// Revision returns revision n, or an error wrapping ErrNotFound.
func (s *Store) Revision(n uint64) (Revision, error) {
	var r Revision
	err := s.db.View(func(tx *bolt.Tx) error {
		return getJSON(tx.Bucket(bucketRevisions), u64(n), &r)
	})
	if err != nil {
		return Revision{}, fmt.Errorf("store: revision %d: %w", n, err)
	}
	return r, nil
}

// Watch returns a channel that receives the running revision after every
// change (apply, rollback, automatic rollback). Only the newest value is
// kept for a slow reader. The channel is closed by Close or cancel.
func (s *Store) Watch() (ch <-chan Revision, cancel func()) {
	c := make(chan Revision, 1)
	s.mu.Lock()
	s.watchers[c] = struct{}{}
	s.mu.Unlock()
	return c, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.watchers[c]; ok {
			delete(s.watchers, c)
			close(c)
		}
	}
}

func (s *Store) notify(r Revision) {
	s.wakeConfirmTimer()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.watchers {
		select { // drop a value nobody read yet: only the newest matters
		case <-c:
		default:
		}
		c <- r
	}
}

func (s *Store) wakeConfirmTimer() {
	select {
	case s.pendingChanged <- struct{}{}:
	default:
	}
}

// RunConfirmTimer rolls back unconfirmed applies when their deadline
// passes, including one left pending before a restart, until ctx ends.
// Each automatic rollback is also reported to onRollback (may be nil).
func (s *Store) RunConfirmTimer(ctx context.Context, onRollback func(Revision)) error {
	for {
		due, err := s.waitDeadline(ctx)
		if err != nil || ctx.Err() != nil {
			return err
		}
		if !due {
			continue
		}
		rev, err := s.ExpirePending(s.opts.Now())
		switch {
		case errors.Is(err, ErrNoPending):
		case err != nil:
			return err
		case onRollback != nil:
			onRollback(rev)
		}
	}
}

// waitDeadline waits until the pending deadline passes (true) or the
// pending state changes or ctx ends (false).
func (s *Store) waitDeadline(ctx context.Context) (bool, error) {
	var fire <-chan time.Time
	p, err := s.Pending()
	switch {
	case errors.Is(err, ErrNoPending):
	case err != nil:
		return false, err
	default:
		t := time.NewTimer(max(p.Deadline.Sub(s.opts.Now()), 0))
		defer t.Stop()
		fire = t.C
	}
	select {
	case <-ctx.Done():
		return false, nil
	case <-s.pendingChanged:
		return false, nil
	case <-fire:
		return true, nil
	}
}
