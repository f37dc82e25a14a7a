package webui

import (
	"net/http"
	"slices"
	"strings"
	"time"
)

// Registration is a registered subscriber as the portal lists it.
type Registration struct {
	AOR       string    `json:"aor"`
	UserAgent string    `json:"userAgent"`
	Transport string    `json:"transport"`
	Source    string    `json:"source"` // the client's address as psigate sees it
	Since     time.Time `json:"since"`
	Expires   time.Time `json:"expires"`
	Node      string    `json:"node"` // the PBX node it is registered on
}

// NodeStatus is a PBX node's health.
type NodeStatus struct {
	Group     string    `json:"group"`
	Name      string    `json:"name"`
	Address   string    `json:"address"`
	Transport string    `json:"transport"`
	Priority  int       `json:"priority"`
	Up        bool      `json:"up"`
	Failures  int       `json:"failures"`
	Since     time.Time `json:"since"`
	LastError string    `json:"lastError,omitempty"`
}

// ActiveCall is a call in progress as the portal lists it.
type ActiveCall struct {
	From        string    `json:"from"`
	To          string    `json:"to"`
	Direction   string    `json:"direction"` // "client to PBX" or "PBX to client"
	CallerAgent string    `json:"callerUserAgent"`
	CalleeAgent string    `json:"calleeUserAgent"`
	CallID      string    `json:"callId"` // the caller's
	Started     time.Time `json:"started"`
	Answered    time.Time `json:"answered,omitzero"`
	// Per media leg, caller then callee.
	Codecs     [2]string `json:"codecs"`
	SRTP       [2]bool   `json:"srtp"`
	PacketsIn  [2]uint64 `json:"packetsIn"`
	PacketsOut [2]uint64 `json:"packetsOut"`
	Lost       [2]int64  `json:"lost"`
}

// SIPStatus is what the SBC tells the portal.
type SIPStatus interface {
	Registrations() []Registration
	Nodes() []NodeStatus
	Calls() []ActiveCall
}

// registrations lists the subscribers whose AOR, user agent or source
// contains q (case-insensitive), by AOR.
func (s *Server) registrations(q string) []Registration {
	if s.opts.SIP == nil {
		return []Registration{}
	}
	q = strings.ToLower(strings.TrimSpace(q))
	out := []Registration{}
	for _, r := range s.opts.SIP.Registrations() {
		hay := strings.ToLower(r.AOR + " " + r.UserAgent + " " + r.Source)
		if q == "" || strings.Contains(hay, q) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Registration) int { return strings.Compare(a.AOR, b.AOR) })
	return out
}

func (s *Server) nodes() []NodeStatus {
	if s.opts.SIP == nil {
		return []NodeStatus{}
	}
	return s.opts.SIP.Nodes()
}

// registrationsView is the page's data.
type registrationsView struct {
	Query         string
	Total         int
	Registrations []Registration
	Nodes         []NodeStatus
	Built         bool // the SBC reports to the portal
}

func (s *Server) registrationsPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query().Get("q")
	v := registrationsView{Query: q, Registrations: s.registrations(q), Nodes: s.nodes(), Built: s.opts.SIP != nil}
	v.Total = len(s.registrations(""))
	s.render(w, r, http.StatusOK, "registrations", view{Title: "Registered subscribers", Nav: "registrations", Data: v})
}

func (s *Server) apiRegistrations(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.registrations(r.URL.Query().Get("q")))
}

func (s *Server) apiNodes(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.nodes())
}

func (s *Server) calls() []ActiveCall {
	if s.opts.SIP == nil {
		return []ActiveCall{}
	}
	out := s.opts.SIP.Calls()
	if out == nil {
		out = []ActiveCall{}
	}
	slices.SortFunc(out, func(a, b ActiveCall) int { return a.Started.Compare(b.Started) })
	return out
}

// activeCallRow is a row of the active calls page.
type activeCallRow struct {
	ActiveCall
	DurationS float64 // since the answer
}

func (s *Server) callsPage(w http.ResponseWriter, r *http.Request) {
	now, calls := s.opts.Now(), s.calls()
	rows := make([]activeCallRow, len(calls))
	for i, c := range calls {
		rows[i] = activeCallRow{ActiveCall: c, DurationS: max(0, now.Sub(answeredAt(c)).Seconds())}
	}
	s.render(w, r, http.StatusOK, "calls", view{Title: "Active calls", Nav: "calls", Data: rows})
}

func (s *Server) apiCalls(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.calls())
}

// answeredAt is when an active call was answered (its start for a source
// that does not say).
func answeredAt(c ActiveCall) time.Time {
	if c.Answered.IsZero() {
		return c.Started
	}
	return c.Answered
}
