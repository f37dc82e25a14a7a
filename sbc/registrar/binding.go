// Package registrar relays the REGISTERs of remote subscribers (Zoom PSI
// clients on the access realm) to the PBX and keeps their bindings: the
// PBX is registered with psigate's own Contact, carrying a per-binding
// token, so that it routes calls for the subscriber to psigate, which
// knows the exact flow the client registered on.
//
// Digest challenges and credentials pass through unchanged: psigate never
// needs a subscriber's password.
package registrar

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// Flow is where a client's REGISTER came from: the connection (or UDP
// source) requests to it must use.
type Flow struct {
	Transport string `json:"transport"` // "UDP", "TCP", "TLS"
	Source    string `json:"source"`    // the client's address as seen, host:port
	Realm     string `json:"realm"`
}

// Binding is one registered contact of a subscriber.
type Binding struct {
	// Token names the binding in the Contact psigate registers at the PBX.
	Token string `json:"token"`
	// AOR is the address of record, the To URI, e.g. "sip:1234@pbx.example.com".
	AOR string `json:"aor"`
	// Contact is the URI of the client's own Contact, e.g.
	// "sip:1001@192.168.1.23:5062;transport=udp".
	Contact   string    `json:"contact"`
	Flow      Flow      `json:"flow"`
	UserAgent string    `json:"userAgent"`
	Since     time.Time `json:"since"`
	// Expires is when the client's registration ends.
	Expires time.Time `json:"expires"`
	// PBXExpires is when psigate's registration at the PBX ends; with
	// register throttling it outlives the client's short expiry.
	PBXExpires time.Time `json:"pbxExpires"`
	// ClientCallID and ClientCSeq are the client's registration dialog.
	ClientCallID string `json:"clientCallID"`
	ClientCSeq   uint32 `json:"clientCSeq"`
	// PBXCallID and PBXCSeq are psigate's registration towards the PBX.
	PBXCallID string `json:"pbxCallID"`
	PBXCSeq   uint32 `json:"pbxCSeq"`
	// Node is the PBX node the binding is registered on.
	Node string `json:"node"`
	// InstanceID and RegID are the RFC 5626 outbound parameters.
	InstanceID string `json:"instanceID,omitempty"`
	RegID      string `json:"regID,omitempty"`
	// Push are RFC 8599 push parameters of the client's Contact URI
	// (pn-provider, pn-prid, pn-param).
	Push map[string]string `json:"push,omitempty"`
	// Pending: challenged but not registered yet. The client's
	// authenticated retry continues the same registration at the PBX
	// (same Call-ID, next CSeq); a pending binding routes nothing.
	Pending bool `json:"pending,omitempty"`
}

// pendingLife is how long a challenged binding waits for its retry.
const pendingLife = 5 * time.Minute

// Bindings is the table of bindings. It is safe for concurrent use. It
// remembers which bindings changed since the last Changes, for the owner
// to persist in batches.
type Bindings struct {
	mu      sync.Mutex
	byToken map[string]*Binding
	byAOR   map[string]map[string]struct{} // AOR -> tokens
	changed map[string]bool                // token -> still present
}

// NewBindings returns an empty table.
func NewBindings() *Bindings {
	return &Bindings{byToken: map[string]*Binding{}, byAOR: map[string]map[string]struct{}{}, changed: map[string]bool{}}
}

// setLocked stores x and indexes it by AOR.
func (b *Bindings) setLocked(x *Binding) {
	if old := b.byToken[x.Token]; old != nil && old.AOR != x.AOR {
		b.unindexLocked(old)
	}
	b.byToken[x.Token] = x
	set := b.byAOR[x.AOR]
	if set == nil {
		set = map[string]struct{}{}
		b.byAOR[x.AOR] = set
	}
	set[x.Token] = struct{}{}
}

// deleteLocked removes a binding and its index entry.
func (b *Bindings) deleteLocked(token string) {
	if x := b.byToken[token]; x != nil {
		b.unindexLocked(x)
		delete(b.byToken, token)
	}
}

func (b *Bindings) unindexLocked(x *Binding) {
	set := b.byAOR[x.AOR]
	delete(set, x.Token)
	if len(set) == 0 {
		delete(b.byAOR, x.AOR)
	}
}

// Changes returns the bindings written and the tokens deleted since the
// last call. Challenged (pending) bindings are not reported.
func (b *Bindings) Changes() (put []Binding, deleted []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for t := range b.changed {
		if x := b.byToken[t]; x != nil && !x.Pending {
			put = append(put, *x)
		} else if x == nil {
			deleted = append(deleted, t)
		}
	}
	clear(b.changed)
	return put, deleted
}

// Restore loads persisted bindings (after a restart) without reporting
// them as changed.
func (b *Bindings) Restore(list []Binding) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, x := range list {
		b.setLocked(&x)
	}
}

func newToken() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Find returns the binding of an AOR with the same instance-id, or else the
// same client Contact URI; nil if none. URIs are compared as sipgo writes
// them, never re-read from a rendered header.
func (b *Bindings) Find(aor, contactURI, instanceID string) *Binding {
	b.mu.Lock()
	defer b.mu.Unlock()
	for t := range b.byAOR[aor] {
		x := b.byToken[t]
		if instanceID != "" && x.InstanceID == instanceID {
			return clone(x)
		}
		if x.Contact == contactURI {
			return clone(x)
		}
	}
	return nil
}

func clone(x *Binding) *Binding {
	c := *x
	return &c
}

// Get returns the binding with a token, or nil.
func (b *Bindings) Get(token string) *Binding {
	b.mu.Lock()
	defer b.mu.Unlock()
	if x := b.byToken[token]; x != nil {
		return clone(x)
	}
	return nil
}

// Put stores a binding.
func (b *Bindings) Put(x Binding) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.setLocked(&x)
	b.changed[x.Token] = true
}

// Delete removes a binding.
func (b *Bindings) Delete(token string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deleteLocked(token)
	b.changed[token] = false
}

// OfAOR lists an AOR's bindings.
func (b *Bindings) OfAOR(aor string) []Binding {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Binding
	for t := range b.byAOR[aor] {
		if x := b.byToken[t]; !x.Pending {
			out = append(out, *x)
		}
	}
	return out
}

// List returns every binding.
func (b *Bindings) List() []Binding {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Binding, 0, len(b.byToken))
	for _, x := range b.byToken {
		if !x.Pending {
			out = append(out, *x)
		}
	}
	return out
}

// Expire removes bindings that ended before now and returns them; it
// also forgets challenges whose retry never came.
func (b *Bindings) Expire(now time.Time) []Binding {
	b.mu.Lock()
	defer b.mu.Unlock()
	var gone []Binding
	for t, x := range b.byToken {
		switch {
		case x.Pending && now.Sub(x.Since) > pendingLife:
			b.deleteLocked(t)
		case !x.Pending && now.After(x.Expires):
			gone = append(gone, *x)
			b.deleteLocked(t)
			b.changed[t] = false
		}
	}
	return gone
}
