package registrar

import (
	"sync"
	"time"
)

// Quarantine blocks a flow that registers faster than any client does: a
// client sends a REGISTER and its authenticated retry per refresh, so
// more than MaxBurst REGISTERs from one flow within Window is a rate
// violator (seed 9.4.1.1 "Quarantine registration rate violators"). It is
// refused for Duration.
type Quarantine struct {
	Enabled  bool
	Duration time.Duration
	// MaxBurst and Window default to 10 REGISTERs in 10 s.
	MaxBurst int
	Window   time.Duration

	mu      sync.Mutex
	seen    map[string][]time.Time // flow -> recent REGISTER times
	blocked map[string]time.Time   // flow -> end of quarantine
}

// Configure turns quarantine on or off and sets its duration, safely while
// requests are handled.
func (q *Quarantine) Configure(enabled bool, d time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.Enabled, q.Duration = enabled, d
}

// Admit records a REGISTER from a flow and reports whether it may be
// handled; newly is true when this REGISTER put the flow in quarantine.
func (q *Quarantine) Admit(flow string, now time.Time) (ok, newly bool) {
	if q == nil {
		return true, false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.Enabled {
		return true, false
	}
	if q.seen == nil {
		q.seen, q.blocked = map[string][]time.Time{}, map[string]time.Time{}
	}
	if until, ok := q.blocked[flow]; ok {
		if now.Before(until) {
			return false, false
		}
		delete(q.blocked, flow)
	}
	burst, window := q.MaxBurst, q.Window
	if burst <= 0 {
		burst = 10
	}
	if window <= 0 {
		window = 10 * time.Second
	}
	times := q.seen[flow]
	keep := times[:0]
	for _, t := range times {
		if now.Sub(t) < window {
			keep = append(keep, t)
		}
	}
	keep = append(keep, now)
	if len(keep) > burst {
		delete(q.seen, flow)
		q.blocked[flow] = now.Add(q.Duration)
		return false, true
	}
	q.seen[flow] = keep
	return true, false
}

// Blocked is the number of flows in quarantine at now.
func (q *Quarantine) Blocked(now time.Time) int {
	if q == nil {
		return 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for flow, until := range q.blocked {
		if now.Before(until) {
			n++
		} else {
			delete(q.blocked, flow)
		}
	}
	// Forget flows idle for a whole window so the table stays small.
	for flow, times := range q.seen {
		if len(times) > 0 && now.Sub(times[len(times)-1]) > time.Minute {
			delete(q.seen, flow)
		}
	}
	return n
}
