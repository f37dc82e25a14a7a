// Package alarm keeps the appliance's active alarms: registered problems
// with a code, a severity and a text, raised and cleared by the services
// that detect them and listed on the portal's dashboard.
package alarm

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// Severity of an alarm, as in the seed's alarm summary.
type Severity int

const (
	Minor Severity = iota + 1
	Major
	Critical
)

func (s Severity) String() string {
	switch s {
	case Minor:
		return "minor"
	case Major:
		return "major"
	case Critical:
		return "critical"
	}
	return "unknown"
}

// MarshalText encodes the severity by name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Alarm is one active problem.
type Alarm struct {
	Code     string    `json:"code"` // stable identifier, e.g. "config-auto-rollback"
	Severity Severity  `json:"severity"`
	Text     string    `json:"text"`
	Since    time.Time `json:"since"`
}

// Registry holds the active alarms. The zero value is not usable; call New.
type Registry struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]Alarm
}

// New returns an empty registry using the clock now (time.Now if nil).
func New(now func() time.Time) *Registry {
	if now == nil {
		now = time.Now
	}
	return &Registry{now: now, m: map[string]Alarm{}}
}

// Raise activates or updates the alarm with code. Raising an active alarm
// keeps its Since.
func (r *Registry) Raise(code string, sev Severity, text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.m[code]
	if !ok {
		a = Alarm{Code: code, Since: r.now().UTC()}
	}
	a.Severity, a.Text = sev, text
	r.m[code] = a
}

// Clear deactivates the alarm with code; clearing an inactive one is fine.
func (r *Registry) Clear(code string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, code)
}

// List returns the active alarms, most severe first, then oldest first.
func (r *Registry) List() []Alarm {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Alarm, 0, len(r.m))
	for _, a := range r.m {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b Alarm) int {
		if c := cmp.Compare(b.Severity, a.Severity); c != 0 {
			return c
		}
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return cmp.Compare(a.Code, b.Code)
	})
	return out
}
