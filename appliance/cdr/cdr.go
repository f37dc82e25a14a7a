// Package cdr keeps the call detail records the SBC hands over as calls
// end. It queues them without ever blocking the SIP goroutines (a full
// queue drops the record and counts it), writes them to the store in
// batches about once a second and once more at shutdown, and counts the
// calls of the last 24 hours by result for the dashboard.
package cdr

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/psigate/psigate/appliance/store"
	"github.com/psigate/psigate/sbc/b2bua"
)

// Store keeps the records; *store.Store is one.
type Store interface {
	AddCallRecords([]b2bua.Record) error
	CallRecords(limit int, before uint64) (store.CallPage, error)
}

// Options tune a Recorder; the zero value is fine.
type Options struct {
	// Queue is how many records may wait for the next write; beyond it
	// new records are dropped. Default 2048.
	Queue int
	// Interval is how often waiting records are written; default 1 s.
	Interval time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Log; default slog.Default().
	Log *slog.Logger
}

// Stats are the figures the dashboard shows.
type Stats struct {
	// Last24h counts the calls that ended in the last 24 hours (to the
	// minute), whether or not their records were kept.
	Last24h Counts
	// Dropped counts the records lost to a full queue, Unsaved those the
	// store failed to write, since the start.
	Dropped, Unsaved uint64
}

// Recorder takes records from the SBC and writes them to the store.
type Recorder struct {
	st    Store
	o     Options
	queue chan b2bua.Record

	dropped, unsaved atomic.Uint64
	reported         uint64 // the drops logged so far; Run's own

	mu  sync.Mutex
	day window
}

// New returns a recorder whose counts start from the records the store
// already has.
func New(st Store, o Options) (*Recorder, error) {
	if o.Queue <= 0 {
		o.Queue = 2048
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	r := &Recorder{st: st, o: o, queue: make(chan b2bua.Record, o.Queue)}
	if err := r.seed(); err != nil {
		return nil, err
	}
	return r, nil
}

// seed counts the stored records of the last day. Records are stored in
// the order calls ended, so paging stops at the first page that reaches
// back beyond the day.
func (r *Recorder) seed() error {
	now := r.o.Now()
	since := now.Add(-Period)
	var before uint64
	for {
		p, err := r.st.CallRecords(500, before)
		if err != nil {
			return fmt.Errorf("cdr: count the last day's calls: %w", err)
		}
		for _, c := range p.Records {
			if c.Ended.After(since) {
				r.day.add(now, c.Ended, c.Result)
			}
		}
		n := len(p.Records)
		if p.Next == 0 || n == 0 || !p.Records[n-1].Ended.After(since) {
			return nil
		}
		before = p.Next
	}
}

// Add takes the record of a call that ended. It never blocks: when the
// queue is full the record is dropped and counted.
func (r *Recorder) Add(rec b2bua.Record) {
	now := r.o.Now()
	ended := rec.Ended
	if ended.IsZero() {
		ended = now
	}
	r.mu.Lock()
	r.day.add(now, ended, rec.Result)
	r.mu.Unlock()
	select {
	case r.queue <- rec:
	default:
		r.dropped.Add(1)
	}
}

// Stats are the last day's counts and the records lost so far.
func (r *Recorder) Stats() Stats {
	r.mu.Lock()
	c := r.day.counts(r.o.Now())
	r.mu.Unlock()
	return Stats{Last24h: c, Dropped: r.dropped.Load(), Unsaved: r.unsaved.Load()}
}

// Run writes the queued records every Interval until ctx ends, then once
// more. Records added after it returns stay queued (or are dropped).
// Write errors are logged and counted, never returned.
func (r *Recorder) Run(ctx context.Context) error {
	t := time.NewTicker(r.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			r.flush()
		case <-ctx.Done():
			r.flush()
			return nil
		}
	}
}

// flush writes what is queued in one batch and reports new drops.
func (r *Recorder) flush() {
	if d := r.dropped.Load(); d != r.reported {
		r.o.Log.Warn("call records dropped: the queue was full", "dropped", d-r.reported, "total", d)
		r.reported = d
	}
	batch := r.take()
	if len(batch) == 0 {
		return
	}
	if err := r.st.AddCallRecords(batch); err != nil {
		r.unsaved.Add(uint64(len(batch)))
		r.o.Log.Error("call records lost", "records", len(batch), "err", err)
	}
}

// take empties the queue, taking at most its capacity so that a steady
// stream cannot hold a flush forever.
func (r *Recorder) take() []b2bua.Record {
	var batch []b2bua.Record
	for len(batch) < cap(r.queue) {
		select {
		case rec := <-r.queue:
			batch = append(batch, rec)
		default:
			return batch
		}
	}
	return batch
}
