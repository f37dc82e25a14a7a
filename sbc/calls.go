package sbc

import (
	"slices"
	"strings"

	"github.com/psigate/psigate/appliance/field"
	"github.com/psigate/psigate/sbc/b2bua"
)

// Calls are the settings of calls and the other requests psigate relays
// between clients and the PBX.
type Calls struct {
	// HeadersToCore and HeadersToAccess are the headers that cross
	// towards the PBX and towards clients, besides those psigate writes
	// itself (Via, From, To, Call-ID, CSeq, Contact, Max-Forwards,
	// Route, Record-Route, Content-Type, Content-Length, User-Agent).
	// Anything else is dropped. Absent: the defaults; empty: nothing.
	HeadersToCore   []string `json:"headersToCore"`
	HeadersToAccess []string `json:"headersToAccess"`
	// MediaStartSeconds ends a call whose media never starts, and
	// MediaStopSeconds one whose media stops (not on hold), with BYE on
	// both legs; defaults 30 and 60, 0 for the default.
	MediaStartSeconds int `json:"mediaStartSeconds,omitempty"`
	MediaStopSeconds  int `json:"mediaStopSeconds,omitempty"`
	// OpenToUnregistered lets any client on the access realm call the
	// PBX and send it MESSAGE and SUBSCRIBE. Off (the default), only a
	// registered subscriber may, from the flow it registered on (403
	// otherwise): an open access realm is an open door to toll fraud.
	OpenToUnregistered bool `json:"openToUnregistered,omitempty"`
}

// DefaultCalls are psigate's allow-lists.
func DefaultCalls() Calls {
	return Calls{HeadersToCore: slices.Clone(b2bua.DefaultToCore), HeadersToAccess: slices.Clone(b2bua.DefaultToAccess),
		MediaStartSeconds: 30, MediaStopSeconds: 60}
}

// ownHeaders are the headers psigate writes itself on each side: a list
// may not name them.
var ownHeaders = map[string]bool{
	"via": true, "from": true, "to": true, "call-id": true, "cseq": true, "contact": true, "max-forwards": true,
	"route": true, "record-route": true, "content-type": true, "content-length": true, "user-agent": true, "server": true,
	"v": true, "f": true, "t": true, "i": true, "m": true, "c": true, "l": true,
}

// Validate checks the lists: header names (RFC 3261 tokens), none of
// psigate's own, none twice.
func (c Calls) Validate() error {
	var l field.List
	for list, names := range map[string][]string{"headersToCore": c.HeadersToCore, "headersToAccess": c.HeadersToAccess} {
		seen := map[string]bool{}
		for i, n := range names {
			p := field.Index(list, i)
			low := strings.ToLower(n)
			switch {
			case !isToken(n):
				l.Addf(p, "%q is not a header name", n)
			case ownHeaders[low]:
				l.Addf(p, "%s is written by psigate on each side and cannot cross", n)
			case seen[low]:
				l.Addf(p, "%s is listed twice", n)
			}
			seen[low] = true
		}
	}
	if c.MediaStartSeconds != 0 {
		l.Range("mediaStartSeconds", c.MediaStartSeconds, 1, 3600)
	}
	if c.MediaStopSeconds != 0 {
		l.Range("mediaStopSeconds", c.MediaStopSeconds, 1, 3600)
	}
	return l.Err()
}

// isToken: a header name is a token (RFC 3261 section 25.1).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-.!%*_+`'~", r)) {
			return false
		}
	}
	return true
}
