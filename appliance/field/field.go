// Package field is the vocabulary of configuration validation: errors that
// name the path of the offending field in the JSON configuration
// (`sbc.mediaProfiles[2].codecs[0].name: unknown codec "G7299"`).
//
// It imports nothing of psigate, so every service's Config may use it
// without depending on the appliance that composes them.
package field

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Error is one validation failure at a field path.
type Error struct {
	Path string // e.g. "network.realms[1].sipPorts.tls"
	Msg  string // e.g. "port 70000 out of range 1-65535"
}

func (e *Error) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// List collects validation errors. The zero value is ready to use.
type List []*Error

// Error joins all messages, one per line.
func (l List) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Err returns l as an error, or nil when it holds nothing.
func (l List) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// Addf records a failure at path.
func (l *List) Addf(path, format string, args ...any) {
	*l = append(*l, &Error{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Merge records the errors of a nested Validate call under prefix.
// A List or *Error keeps its paths (prefixed); any other error is recorded
// at prefix itself.
func (l *List) Merge(prefix string, err error) {
	if err == nil {
		return
	}
	var list List
	var one *Error
	switch {
	case errors.As(err, &list):
		for _, e := range list {
			*l = append(*l, &Error{Path: Join(prefix, e.Path), Msg: e.Msg})
		}
	case errors.As(err, &one):
		*l = append(*l, &Error{Path: Join(prefix, one.Path), Msg: one.Msg})
	default:
		*l = append(*l, &Error{Path: prefix, Msg: err.Error()})
	}
}

// Join appends a child path to a parent: Join("sbc", "mediaProfiles[0]")
// is "sbc.mediaProfiles[0]"; Join("codecs", "[1]") is "codecs[1]".
func Join(parent, child string) string {
	switch {
	case parent == "":
		return child
	case child == "":
		return parent
	case child[0] == '[':
		return parent + child
	}
	return parent + "." + child
}

// Index is the path of element i of the list at path.
func Index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// Paths lists the paths of err's field errors, for tests and forms.
func Paths(err error) []string {
	var l List
	if errors.As(err, &l) {
		out := make([]string, len(l))
		for i, e := range l {
			out[i] = e.Path
		}
		return out
	}
	var one *Error
	if errors.As(err, &one) {
		return []string{one.Path}
	}
	return nil
}

// Port checks a TCP/UDP port; off allows 0 ("disabled").
func (l *List) Port(path string, port int, off bool) {
	if off && port == 0 {
		return
	}
	if port < 1 || port > 65535 {
		if off {
			l.Addf(path, "port %d out of range 1-65535 (0 = off)", port)
			return
		}
		l.Addf(path, "port %d out of range 1-65535", port)
	}
}

// Range checks lo <= v <= hi.
func (l *List) Range(path string, v, lo, hi int) {
	if v < lo || v > hi {
		l.Addf(path, "%d out of range %d-%d", v, lo, hi)
	}
}

// OneOf checks that v is one of the allowed values.
func (l *List) OneOf(path, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	l.Addf(path, "%q is not one of %s", v, strings.Join(allowed, ", "))
}

// Required checks that s is not empty.
func (l *List) Required(path, s string) {
	if strings.TrimSpace(s) == "" {
		l.Addf(path, "required")
	}
}

// Host checks an IP address or a DNS name (RFC 1123 labels).
func (l *List) Host(path, s string) {
	if err := CheckHost(s); err != nil {
		l.Addf(path, "%v", err)
	}
}

// CheckHost reports whether s is an IP address or a valid DNS name.
func CheckHost(s string) error {
	if s == "" {
		return errors.New("required")
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return nil
	}
	return CheckDNSName(s)
}

// CheckDNSName reports whether s is a valid DNS name (RFC 1123), such as
// "sbc01.example.com". A single trailing dot is accepted.
func CheckDNSName(s string) error {
	name := strings.TrimSuffix(s, ".")
	if name == "" || len(name) > 253 {
		return fmt.Errorf("%q is not a valid host name", s)
	}
	labels := strings.Split(name, ".")
	for _, label := range labels {
		if !validLabel(label) {
			return fmt.Errorf("%q is not a valid host name", s)
		}
	}
	// An all-numeric top label is a mistyped address such as
	// "10.180.0.300", not a name (RFC 1123 section 2.1).
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return fmt.Errorf("%q is neither a valid IP address nor a host name", s)
	}
	return nil
}

// CheckLabel reports whether s is a single DNS label, such as a hostname
// without domain ("psigate").
func CheckLabel(s string) error {
	if !validLabel(s) {
		return fmt.Errorf("%q is not a valid host name (letters, digits and '-', at most 63)", s)
	}
	return nil
}

func validLabel(label string) bool {
	if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
		return false
	}
	for _, c := range label {
		ok := c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !ok {
			return false
		}
	}
	return true
}

// Unique reports names that occur more than once in a list at path,
// naming each repeated element: "mediaProfiles[3].name: duplicate ...".
func (l *List) Unique(path, member string, names []string) {
	seen := make(map[string]int, len(names))
	for i, n := range names {
		if n == "" {
			continue
		}
		key := strings.ToLower(n)
		if first, dup := seen[key]; dup {
			l.Addf(Join(Index(path, i), member), "duplicate %q (also at %s)", n, Index(path, first))
			continue
		}
		seen[key] = i
	}
}
