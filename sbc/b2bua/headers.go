package b2bua

import (
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Headers a message carries across psigate besides those psigate makes
// itself (Via, From, To, Call-ID, CSeq, Contact, Max-Forwards, Route,
// Record-Route, Content-Type, Content-Length, User-Agent): everything
// else is dropped, so that neither side learns the other's topology
// (proxies, addresses, identifiers) from headers it does not need. The
// lists are per direction; the configuration may replace them.
var (
	// DefaultToCore: what the PBX needs from a client's messages.
	DefaultToCore = []string{
		"Allow", "Supported", "Require", "Accept", "Allow-Events", "Event", "Subscription-State",
		"Refer-To", "Referred-By", "Replaces", "Session-Expires", "Min-SE", "Reason", "Priority", "Subject",
		"Geolocation", "Geolocation-Routing", "Geolocation-Error", "Privacy", "P-Preferred-Identity",
		"P-Asserted-Identity", "Content-Disposition", "Retry-After", "Unsupported",
		"Min-Expires", "Expires", "Recv-Info", "Info-Package", "Alert-Info", "Call-Info",
	}
	// DefaultToAccess: what a client needs from the PBX's messages. The
	// PBX's identity headers (P-Asserted-Identity) tell the client who
	// calls; its Diversion and History-Info would name internal numbers
	// and are left out.
	DefaultToAccess = []string{
		"Allow", "Supported", "Require", "Accept", "Allow-Events", "Event", "Subscription-State",
		"Refer-To", "Referred-By", "Replaces", "Session-Expires", "Min-SE", "Reason", "Priority", "Subject",
		"Geolocation", "Geolocation-Routing", "Geolocation-Error", "Privacy", "P-Asserted-Identity",
		"Content-Disposition", "Retry-After", "Unsupported", "Min-Expires",
		"Expires", "Recv-Info", "Info-Package", "Alert-Info", "Call-Info",
	}
)

// headerSet is an allow-list of header names, case-insensitive.
type headerSet map[string]bool

func newHeaderSet(names []string) headerSet {
	s := make(headerSet, len(names))
	for _, n := range names {
		s[strings.ToLower(strings.TrimSpace(n))] = true
	}
	return s
}

// rewritten are headers psigate writes itself where it carries them
// across (refer.go).
var rewritten = map[string]bool{"refer-to": true, "replaces": true}

// supported are the extensions psigate passes on in Supported and
// Require: session timers, Replaces and norefersub; anything else would
// need psigate to take part in it (100rel it speaks on each leg itself).
var supported = map[string]bool{"timer": true, "replaces": true, "norefersub": true}

// compactNames are the compact forms (RFC 3261 section 7.3.3 and the
// extensions') that sipgo keeps as written, with their full names.
var compactNames = map[string]string{
	"x": "Session-Expires", "r": "Refer-To", "b": "Referred-By", "o": "Event", "u": "Allow-Events",
	"k": "Supported", "s": "Subject", "a": "Accept-Contact", "j": "Reject-Contact", "d": "Request-Disposition",
	"e": "Content-Encoding", "y": "Identity",
}

// fullName is a header's full name.
func fullName(name string) string {
	if full, ok := compactNames[strings.ToLower(name)]; ok {
		return full
	}
	return name
}

// header finds a header by its full name or its compact form.
func header(m message, name string) sip.Header {
	if h := m.GetHeader(name); h != nil {
		return h
	}
	for short, full := range compactNames {
		if strings.EqualFold(full, name) {
			return m.GetHeader(short)
		}
	}
	return nil
}

// copyHeaders copies the headers of from that allow permits onto to,
// under their full names.
func copyHeaders(to, from message, allow headerSet) {
	for _, h := range from.Headers() {
		full := fullName(h.Name())
		name := strings.ToLower(full)
		if !allow[name] || rewritten[name] {
			continue
		}
		if name == "supported" || name == "require" {
			if v := filterTags(h.Value()); v != "" {
				to.AppendHeader(sip.NewHeader(full, v))
			}
			continue
		}
		to.AppendHeader(sip.NewHeader(full, h.Value()))
	}
}

// filterTags keeps the option tags psigate passes on.
func filterTags(v string) string {
	var keep []string
	for _, t := range strings.Split(v, ",") {
		if t = strings.TrimSpace(t); supported[strings.ToLower(t)] {
			keep = append(keep, t)
		}
	}
	return strings.Join(keep, ", ")
}
