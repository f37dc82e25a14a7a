package cdr_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/psigate/psigate/appliance/cdr"
	"github.com/psigate/psigate/appliance/store"
	"github.com/psigate/psigate/sbc/b2bua"
)

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newClock() *clock { return &clock{now: time.Date(2026, 11, 26, 12, 0, 30, 0, time.UTC)} }

// fakeStore hands each batch to the test; err fails every write.
type fakeStore struct {
	batches chan []b2bua.Record
	err     error
}

func newFakeStore() *fakeStore { return &fakeStore{batches: make(chan []b2bua.Record, 100)} }

func (f *fakeStore) AddCallRecords(rs []b2bua.Record) error {
	f.batches <- rs
	return f.err
}

func (f *fakeStore) CallRecords(int, uint64) (store.CallPage, error) { return store.CallPage{}, nil }

// next waits for the next batch.
func (f *fakeStore) next(t *testing.T) []b2bua.Record {
	t.Helper()
	select {
	case b := <-f.batches:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no batch written within 10 s")
		return nil
	}
}

// none fails if a batch is waiting.
func (f *fakeStore) none(t *testing.T) {
	t.Helper()
	select {
	case b := <-f.batches:
		t.Fatalf("unexpected batch of %d", len(b))
	default:
	}
}

func rec(to string, res b2bua.Result, ended time.Time) b2bua.Record {
	return b2bua.Record{From: "sip:1001@pbx.example.com", To: to, Result: res, Started: ended.Add(-time.Minute), Ended: ended}
}

func tos(rs []b2bua.Record) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.To)
	}
	return strings.Join(out, " ")
}

// run starts the recorder; the returned stop ends it and waits.
func run(t *testing.T, r *cdr.Recorder) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestBatchesOnTheTick(t *testing.T) {
	st, c := newFakeStore(), newClock()
	r, err := cdr.New(st, cdr.Options{Now: c.Now, Interval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"a", "b", "c"} {
		r.Add(rec(to, b2bua.Answered, c.Now()))
	}
	run(t, r)
	if got := tos(st.next(t)); got != "a b c" {
		t.Fatalf("first batch %q, want the three queued records in order", got)
	}
	r.Add(rec("d", b2bua.Refused, c.Now()))
	if got := tos(st.next(t)); got != "d" {
		t.Fatalf("second batch %q, want d", got)
	}
}

func TestFlushesAtShutdown(t *testing.T) {
	st, c := newFakeStore(), newClock()
	r, err := cdr.New(st, cdr.Options{Now: c.Now, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, r)
	r.Add(rec("a", b2bua.Answered, c.Now()))
	r.Add(rec("b", b2bua.Cancelled, c.Now()))
	st.none(t)
	stop()
	if got := tos(st.next(t)); got != "a b" {
		t.Fatalf("batch at shutdown %q, want a b", got)
	}
	st.none(t)
}

func TestFullQueueDropsAndCounts(t *testing.T) {
	st, c := newFakeStore(), newClock()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	r, err := cdr.New(st, cdr.Options{Now: c.Now, Queue: 2, Interval: time.Hour, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing reads the queue yet: Add must still return at once.
	for i := range 5 {
		r.Add(rec(fmt.Sprint(i), b2bua.Answered, c.Now()))
	}
	s := r.Stats()
	if s.Dropped != 3 || s.Unsaved != 0 {
		t.Fatalf("dropped %d unsaved %d, want 3 0", s.Dropped, s.Unsaved)
	}
	if s.Last24h.Answered != 5 {
		t.Errorf("answered %d, want 5: dropped records still count as calls", s.Last24h.Answered)
	}
	run(t, r)()
	if got := tos(st.next(t)); got != "0 1" {
		t.Fatalf("written %q, want the two that fitted", got)
	}
	if !strings.Contains(logs.String(), "call records dropped") || !strings.Contains(logs.String(), "dropped=3") {
		t.Errorf("the drops were not logged:\n%s", logs.String())
	}
}

func TestWriteErrorsAreCounted(t *testing.T) {
	st, c := newFakeStore(), newClock()
	st.err = errors.New("disk full")
	var logs bytes.Buffer
	r, err := cdr.New(st, cdr.Options{Now: c.Now, Interval: time.Hour, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	r.Add(rec("a", b2bua.Failed, c.Now()))
	r.Add(rec("b", b2bua.Failed, c.Now()))
	run(t, r)()
	st.next(t)
	if s := r.Stats(); s.Unsaved != 2 || s.Dropped != 0 || s.Last24h.Failed != 2 {
		t.Fatalf("stats %+v, want 2 unsaved, 2 failed calls", s)
	}
	if !strings.Contains(logs.String(), "disk full") {
		t.Errorf("the write error was not logged:\n%s", logs.String())
	}
}

// openStore is a real store holding records.
func openStore(t *testing.T, rs ...b2bua.Record) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.AddCallRecords(rs); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestCountsStartFromTheStoreAndSlide(t *testing.T) {
	c := newClock()
	now := c.Now()
	var rs []b2bua.Record
	// Stored in the order calls ended: two days back to now.
	for _, x := range []struct {
		ago time.Duration
		res b2bua.Result
	}{
		{48 * time.Hour, b2bua.Answered}, {25 * time.Hour, b2bua.Answered}, {24*time.Hour + time.Minute, b2bua.Refused},
		{23 * time.Hour, b2bua.Refused}, {3 * time.Hour, b2bua.Answered}, {2 * time.Hour, b2bua.Cancelled},
		{time.Hour, b2bua.Failed}, {time.Minute, b2bua.Answered},
	} {
		rs = append(rs, rec(x.ago.String(), x.res, now.Add(-x.ago)))
	}
	r, err := cdr.New(openStore(t, rs...), cdr.Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	want := cdr.Counts{Answered: 2, Refused: 1, Cancelled: 1, Failed: 1}
	if got := r.Stats().Last24h; got != want {
		t.Fatalf("counts from the store %+v, want %+v", got, want)
	}
	r.Add(rec("new", b2bua.Refused, now))
	want.Refused++
	if got := r.Stats().Last24h; got != want {
		t.Fatalf("after a new call %+v, want %+v", got, want)
	}
	c.Advance(90 * time.Minute) // the call 23 h ago is now older than a day
	want.Refused--
	if got := r.Stats().Last24h; got != want {
		t.Fatalf("90 minutes later %+v, want %+v", got, want)
	}
	c.Advance(cdr.Period)
	if got := r.Stats().Last24h; got != (cdr.Counts{}) {
		t.Fatalf("a day later %+v, want none", got)
	}
}

func TestSeedPagesThroughALongDay(t *testing.T) {
	c := newClock()
	var rs []b2bua.Record
	for i := range 1200 { // more than one page of the store
		rs = append(rs, rec(fmt.Sprint(i), b2bua.Answered, c.Now().Add(-time.Duration(1200-i)*time.Minute)))
	}
	r, err := cdr.New(openStore(t, rs...), cdr.Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Stats().Last24h.Answered; got != 1200 {
		t.Fatalf("answered %d, want 1200", got)
	}
}

func TestConcurrentAdds(t *testing.T) {
	c := newClock()
	st := openStore(t)
	r, err := cdr.New(st, cdr.Options{Now: c.Now, Interval: time.Millisecond, Queue: 10000})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, r)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 100 {
				r.Add(rec(fmt.Sprint(w, "-", i), b2bua.Answered, c.Now()))
				_ = r.Stats()
			}
		})
	}
	wg.Wait()
	stop()
	p, err := st.CallRecords(1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s := r.Stats(); len(p.Records) != 800 || s.Last24h.Answered != 800 || s.Dropped != 0 {
		t.Fatalf("%d stored, stats %+v; want 800 stored, counted, none dropped", len(p.Records), s)
	}
}
