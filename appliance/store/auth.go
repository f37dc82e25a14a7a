package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Identity is the appliance's first-boot identity, created once.
type Identity struct {
	// MachineID is a random UUID, e.g. "0b6e…"; it never changes.
	MachineID string    `json:"machineID"`
	Created   time.Time `json:"created"`
	// CertPEM and KeyPEM are the portal's self-signed certificate.
	CertPEM string `json:"certPEM"`
	KeyPEM  string `json:"keyPEM"`
}

// Identity returns the stored identity, creating it with create on first
// use. create runs inside the transaction, so two callers never create two.
func (s *Store) Identity(create func() (Identity, error)) (Identity, error) {
	var id Identity
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		err := getJSON(b, keyIdentity, &id)
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		if id, err = create(); err != nil {
			return fmt.Errorf("store: create identity: %w", err)
		}
		return putJSON(b, keyIdentity, id)
	})
	return id, err
}

// ReplaceCertificate stores a new portal certificate for the existing
// identity; the machine ID never changes.
func (s *Store) ReplaceCertificate(certPEM, keyPEM string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		var id Identity
		if err := getJSON(b, keyIdentity, &id); err != nil {
			return fmt.Errorf("store: identity: %w", err)
		}
		id.CertPEM, id.KeyPEM = certPEM, keyPEM
		return putJSON(b, keyIdentity, id)
	})
}

// User is an account of the admin portal.
type User struct {
	Name string `json:"name"`
	// PasswordHash is an encoded hash (PHC string format); empty means
	// the password was never set and nobody can log in as this user.
	PasswordHash    string    `json:"passwordHash"`
	Created         time.Time `json:"created"`
	PasswordChanged time.Time `json:"passwordChanged"`
}

// User returns the named user, or an error wrapping ErrNotFound.
func (s *Store) User(name string) (User, error) {
	var u User
	err := s.db.View(func(tx *bolt.Tx) error {
		return getJSON(tx.Bucket(bucketUsers), []byte(name), &u)
	})
	return u, err
}

// EnsureUser creates the named user without a password if it does not
// exist.
func (s *Store) EnsureUser(name string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		if b.Get([]byte(name)) != nil {
			return nil
		}
		return putJSON(b, []byte(name), User{Name: name, Created: s.opts.Now().UTC()})
	})
}

// SetPassword stores a new password hash for the user. With onlyIfUnset
// it fails with ErrPasswordSet when a password exists, so the first-boot
// setup cannot be replayed to take over the appliance.
func (s *Store) SetPassword(name, hash string, onlyIfUnset bool) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		var u User
		if err := getJSON(b, []byte(name), &u); err != nil {
			return fmt.Errorf("store: user %q: %w", name, err)
		}
		if onlyIfUnset && u.PasswordHash != "" {
			return ErrPasswordSet
		}
		u.PasswordHash = hash
		u.PasswordChanged = s.opts.Now().UTC()
		return putJSON(b, []byte(name), u)
	})
}

// Session is a logged-in portal session. It is stored under a hash of its
// token, so the data file alone does not let anyone in.
type Session struct {
	User    string    `json:"user"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	// CSRF is the token forms and cookie-authenticated API calls send.
	CSRF   string `json:"csrf"`
	Source string `json:"source"` // the client address at login
}

// PutSession stores a session under key.
func (s *Store) PutSession(key []byte, sess Session) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bucketSessions), key, sess)
	})
}

// Session returns the session stored under key, or ErrNotFound.
func (s *Store) Session(key []byte) (Session, error) {
	var sess Session
	err := s.db.View(func(tx *bolt.Tx) error {
		return getJSON(tx.Bucket(bucketSessions), key, &sess)
	})
	return sess, err
}

// DeleteSession removes a session; a missing one is not an error.
func (s *Store) DeleteSession(key []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSessions).Delete(key)
	})
}

// DeleteSessions removes every session of user except keep (may be nil),
// e.g. after a password change.
func (s *Store) DeleteSessions(user string, keep []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketSessions).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var sess Session
			if err := json.Unmarshal(v, &sess); err == nil && sess.User == user && !bytes.Equal(k, keep) {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// PruneSessions removes sessions that expired before now.
func (s *Store) PruneSessions(now time.Time) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketSessions).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var sess Session
			if err := json.Unmarshal(v, &sess); err != nil || now.After(sess.Expires) {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// Event is one entry of the audit log.
type Event struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`  // user name, or "system"
	Source string    `json:"source"` // client address, if any
	Action string    `json:"action"` // e.g. "login", "login-failed", "apply", "rollback"
	Detail string    `json:"detail"`
	OK     bool      `json:"ok"`
}

// Audit appends an event to the audit log, dropping the oldest beyond
// MaxAudit.
func (s *Store) Audit(e Event) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		n, err := b.NextSequence()
		if err != nil {
			return err
		}
		e.Seq = n
		if e.Time.IsZero() {
			e.Time = s.opts.Now().UTC()
		}
		if err := putJSON(b, u64(n), e); err != nil {
			return err
		}
		if n > uint64(s.opts.MaxAudit) {
			c := b.Cursor()
			for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= n-uint64(s.opts.MaxAudit); k, _ = c.Next() {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// AuditLog returns up to limit events, newest first.
func (s *Store) AuditLog(limit int) ([]Event, error) {
	var out []Event
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("store: audit event %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}
