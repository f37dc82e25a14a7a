package webui

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// EndedCall is a call detail record as the portal lists it.
type EndedCall struct {
	// ID numbers the records in the order they were kept; it is the
	// paging cursor.
	ID          uint64    `json:"id"`
	From        string    `json:"from"`
	To          string    `json:"to"`
	Direction   string    `json:"direction"` // "client to PBX" or "PBX to client"
	CallerAgent string    `json:"callerUserAgent"`
	CalleeAgent string    `json:"calleeUserAgent"`
	CallID      string    `json:"callId"`
	Started     time.Time `json:"started"`
	Answered    time.Time `json:"answered,omitzero"`
	Ended       time.Time `json:"ended"`
	// DurationS is the connected time in seconds: 0 for a call never
	// answered.
	DurationS float64 `json:"durationSeconds"`
	Result    string  `json:"result"` // "answered", "refused", "cancelled" or "failed"
	// Code is the final response the caller got (200, 486, 487, ...).
	Code int `json:"code"`
	// Reason says why the call ended: "caller hung up", "486 Busy Here".
	Reason string `json:"reason"`
	// Per media leg, caller then callee.
	Codecs     [2]string `json:"codecs"`
	SRTP       [2]bool   `json:"srtp"`
	PacketsIn  [2]uint64 `json:"packetsIn"`
	PacketsOut [2]uint64 `json:"packetsOut"`
	Lost       [2]int64  `json:"lost"`
}

// CallHistoryPage is a page of ended calls, newest first.
type CallHistoryPage struct {
	Calls []EndedCall `json:"calls"`
	// Next is the before= of the next older page; 0 (left out) on the
	// last page.
	Next uint64 `json:"next,omitempty"`
	// Unreadable counts the kept records in the page's range that could
	// not be read; they are left out.
	Unreadable int `json:"unreadable,omitempty"`
	// Kept is the number of records kept in all.
	Kept int `json:"kept"`
}

// CallHistory is the log of ended calls.
type CallHistory interface {
	// EndedCalls returns up to limit calls kept before the record
	// numbered before (0: from the newest), newest first.
	EndedCalls(limit int, before uint64) (CallHistoryPage, error)
}

// CallCounts are the calls that ended in a period, by result.
type CallCounts struct {
	Answered  int `json:"answered"`
	Refused   int `json:"refused"`
	Cancelled int `json:"cancelled"`
	Failed    int `json:"failed"`
}

// Paging of the call history: the page size without limit=, and the
// largest limit= honoured.
const (
	historyDefaultLimit = 50
	historyMaxLimit     = 500
)

// historyQuery reads limit= and before=, both optional.
func historyQuery(q url.Values) (limit int, before uint64, err error) {
	limit = historyDefaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return 0, 0, fmt.Errorf("limit must be a whole number of calls, 1 or more (at most %d are returned); got %q", historyMaxLimit, v)
		}
		limit = min(n, historyMaxLimit)
	}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			return 0, 0, fmt.Errorf("before must be a call record id, a whole number from 1 (the \"next\" of the page before); got %q", v)
		}
		before = n
	}
	return limit, before, nil
}

// endedCalls is a page of the history; an empty one without a history.
func (s *Server) endedCalls(limit int, before uint64) (CallHistoryPage, error) {
	if s.opts.History == nil {
		return CallHistoryPage{Calls: []EndedCall{}}, nil
	}
	p, err := s.opts.History.EndedCalls(limit, before)
	if p.Calls == nil {
		p.Calls = []EndedCall{}
	}
	return p, err
}

// callHistoryView is the page's data.
type callHistoryView struct {
	Page   CallHistoryPage
	Limit  int    // limit= to carry to the older page; 0 for the default
	Before uint64 // the cursor of this page; 0 for the newest
	Built  bool   // the appliance keeps a history
}

func (s *Server) callHistoryPage(w http.ResponseWriter, r *http.Request) {
	v := view{Title: "Call history", Nav: "call-history", Data: callHistoryView{Built: s.opts.History != nil}}
	limit, before, err := historyQuery(r.URL.Query())
	if err != nil {
		s.formError(w, r, "call_history", http.StatusBadRequest, err, v)
		return
	}
	p, err := s.endedCalls(limit, before)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	hv := callHistoryView{Page: p, Before: before, Built: s.opts.History != nil}
	if limit != historyDefaultLimit {
		hv.Limit = limit
	}
	v.Data = hv
	s.render(w, r, http.StatusOK, "call_history", v)
}

func (s *Server) apiCallHistory(w http.ResponseWriter, r *http.Request) {
	limit, before, err := historyQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	p, err := s.endedCalls(limit, before)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}
