package alarm

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock returns t0, t0+1s, t0+2s, ... on successive calls; it is safe
// for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock(t0 time.Time) *fakeClock { return &fakeClock{t: t0} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	c.t = c.t.Add(time.Second)
	return t
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func codes(as []Alarm) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Code
	}
	return out
}

func TestNewEmpty(t *testing.T) {
	r := New(nil)
	if got := r.List(); got == nil || len(got) != 0 {
		t.Fatalf("List() of new registry = %#v, want empty non-nil slice", got)
	}
	b, err := json.Marshal(r.List())
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "[]" {
		t.Errorf("JSON of empty list = %s, want []", b)
	}
}

func TestNilClockUsesTimeNow(t *testing.T) {
	before := time.Now()
	r := New(nil)
	r.Raise("x", Minor, "x")
	after := time.Now()
	l := r.List()
	if len(l) != 1 {
		t.Fatalf("List() = %v", l)
	}
	s := l[0].Since
	if s.Location() != time.UTC {
		t.Errorf("Since location = %v, want UTC", s.Location())
	}
	if s.Before(before) || s.After(after) {
		t.Errorf("Since = %v, want between %v and %v", s, before, after)
	}
}

func TestRaiseUsesInjectedClockInUTC(t *testing.T) {
	loc := time.FixedZone("CET", 3600)
	local := time.Date(2025, 3, 1, 13, 0, 0, 0, loc)
	r := New(func() time.Time { return local })
	r.Raise("disk-full", Critical, "data partition 99% full")
	got := r.List()
	want := []Alarm{{Code: "disk-full", Severity: Critical, Text: "data partition 99% full", Since: t0}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("List() = %#v\nwant %#v", got, want)
	}
	if got[0].Since.Location() != time.UTC {
		t.Errorf("Since location = %v, want UTC", got[0].Since.Location())
	}
}

func TestListOrder(t *testing.T) {
	clk := newFakeClock(t0)
	r := New(clk.now)
	// Raised in this order: times t0, t0+1s, ...
	r.Raise("minor-old", Minor, "m1")     // t0
	r.Raise("major-new", Major, "M2")     // t0+1
	r.Raise("critical-b", Critical, "c")  // t0+2
	r.Raise("major-old", Major, "M1")     // t0+3 — newer than major-new!
	r.Raise("minor-new", Minor, "m2")     // t0+4
	r.Raise("critical-a", Critical, "c2") // t0+5

	want := []string{"critical-b", "critical-a", "major-new", "major-old", "minor-old", "minor-new"}
	if got := codes(r.List()); !reflect.DeepEqual(got, want) {
		t.Fatalf("List() order = %v, want %v", got, want)
	}
}

func TestListOrderTieBreakByCode(t *testing.T) {
	r := New(func() time.Time { return t0 }) // every alarm raised at the same instant
	for _, c := range []string{"delta", "alpha", "charlie", "bravo"} {
		r.Raise(c, Major, c)
	}
	r.Raise("zulu", Critical, "z")
	r.Raise("aardvark", Minor, "a")
	want := []string{"zulu", "alpha", "bravo", "charlie", "delta", "aardvark"}
	for i := 0; i < 5; i++ { // map iteration order varies; the result must not
		if got := codes(r.List()); !reflect.DeepEqual(got, want) {
			t.Fatalf("List() order = %v, want %v", got, want)
		}
	}
}

func TestReRaiseKeepsSinceUpdatesTextAndSeverity(t *testing.T) {
	clk := newFakeClock(t0)
	r := New(clk.now)
	r.Raise("a", Minor, "first")  // t0
	r.Raise("b", Major, "other")  // t0+1
	r.Raise("a", Critical, "now") // re-raise: keeps t0
	got := r.List()
	want := []Alarm{
		{Code: "a", Severity: Critical, Text: "now", Since: t0},
		{Code: "b", Severity: Major, Text: "other", Since: t0.Add(time.Second)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("List() = %#v\nwant %#v", got, want)
	}
	// Downgrade again: order follows the new severity.
	r.Raise("a", Minor, "better")
	got = r.List()
	want = []Alarm{
		{Code: "b", Severity: Major, Text: "other", Since: t0.Add(time.Second)},
		{Code: "a", Severity: Minor, Text: "better", Since: t0},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after downgrade List() = %#v\nwant %#v", got, want)
	}
}

func TestClear(t *testing.T) {
	clk := newFakeClock(t0)
	r := New(clk.now)
	r.Clear("never-raised") // clearing an inactive alarm is fine
	if got := r.List(); len(got) != 0 {
		t.Fatalf("List() after clearing unknown = %v", got)
	}
	r.Raise("a", Major, "a") // t0
	r.Raise("b", Major, "b") // t0+1
	r.Clear("a")
	r.Clear("a") // twice is fine too
	if got, want := codes(r.List()), []string{"b"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("List() = %v, want %v", got, want)
	}
	// Raising again after a clear starts a new Since.
	r.Raise("a", Major, "again") // t0+2
	got := r.List()
	want := []Alarm{
		{Code: "b", Severity: Major, Text: "b", Since: t0.Add(time.Second)},
		{Code: "a", Severity: Major, Text: "again", Since: t0.Add(2 * time.Second)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("List() = %#v\nwant %#v", got, want)
	}
}

func TestListReturnsCopy(t *testing.T) {
	r := New(func() time.Time { return t0 })
	r.Raise("a", Major, "orig")
	l := r.List()
	l[0].Text = "changed"
	l[0].Severity = Minor
	if got := r.List()[0]; got.Text != "orig" || got.Severity != Major {
		t.Errorf("mutating List() result changed the registry: %+v", got)
	}
}

func TestSeverityString(t *testing.T) {
	for _, tc := range []struct {
		s    Severity
		want string
	}{
		{Minor, "minor"},
		{Major, "major"},
		{Critical, "critical"},
		{0, "unknown"},
		{4, "unknown"},
		{-1, "unknown"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("Severity(%d).String() = %q, want %q", int(tc.s), got, tc.want)
		}
		b, err := tc.s.MarshalText()
		if err != nil || string(b) != tc.want {
			t.Errorf("Severity(%d).MarshalText() = %q, %v; want %q", int(tc.s), b, err, tc.want)
		}
		if got := fmt.Sprint(tc.s); got != tc.want {
			t.Errorf("fmt.Sprint(Severity(%d)) = %q, want %q", int(tc.s), got, tc.want)
		}
	}
	if !(Minor < Major && Major < Critical) {
		t.Errorf("severities not ordered: Minor=%d Major=%d Critical=%d", Minor, Major, Critical)
	}
}

func TestAlarmJSON(t *testing.T) {
	a := Alarm{Code: "config-auto-rollback", Severity: Major, Text: "rolled back", Since: t0}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"code":"config-auto-rollback","severity":"major","text":"rolled back","since":"2025-03-01T12:00:00Z"}`
	if string(b) != want {
		t.Errorf("json.Marshal(alarm) = %s\nwant %s", b, want)
	}
	// As a map key too (MarshalText makes Severity usable as one).
	b, err = json.Marshal(map[Severity]int{Critical: 2, Minor: 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"critical":2,"minor":1}`; string(b) != want {
		t.Errorf("json.Marshal(map) = %s, want %s", b, want)
	}
}

// TestConcurrent is meant for -race: many goroutines raise, clear and list
// at once; afterwards the registry holds exactly the alarms each
// goroutine left raised.
func TestConcurrent(t *testing.T) {
	clk := newFakeClock(t0)
	r := New(clk.now)
	const workers, rounds = 8, 200
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keep := fmt.Sprintf("w%d-keep", w)
			r.Raise(keep, Severity(w%3+1), "kept")
			for i := 0; i < rounds; i++ {
				code := fmt.Sprintf("w%d-tmp%d", w, i%5)
				r.Raise(code, Severity(i%3+1), fmt.Sprint(i))
				r.Raise(keep, Severity(w%3+1), fmt.Sprint("kept ", i))
				l := r.List()
				for j := 1; j < len(l); j++ {
					if l[j-1].Severity < l[j].Severity {
						t.Errorf("List() not ordered by severity: %v before %v", l[j-1], l[j])
						return
					}
				}
				r.Clear(code)
			}
		}()
	}
	wg.Wait()
	l := r.List()
	if len(l) != workers {
		t.Fatalf("after concurrent use List() has %d alarms, want %d: %v", len(l), workers, codes(l))
	}
	for _, a := range l {
		if !strings.HasSuffix(a.Code, "-keep") || a.Text != fmt.Sprint("kept ", rounds-1) {
			t.Errorf("unexpected alarm left: %+v", a)
		}
		// The clock is read once per new alarm: workers*(rounds+1) times.
		if a.Since.Before(t0) || !a.Since.Before(t0.Add(time.Duration(workers*(rounds+1))*time.Second)) {
			t.Errorf("Since %v out of clock range", a.Since)
		}
	}
}
