package cdr

import (
	"testing"
	"time"

	"github.com/psigate/psigate/sbc/b2bua"
)

func TestWindowEdges(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 30, 0, time.UTC)
	var w window
	w.add(now, now, b2bua.Answered)
	// A day ago, outside the period; it would share the slot of the
	// current minute.
	w.add(now, now.Add(-Period), b2bua.Answered)
	w.add(now, now.Add(time.Minute), b2bua.Answered) // not yet
	w.add(now, now.Add(-Period+time.Minute), b2bua.Refused)
	w.add(now, now, "unknown")
	if got, want := w.counts(now), (Counts{Answered: 1, Refused: 1}); got != want {
		t.Fatalf("counts %+v, want %+v", got, want)
	}
	if got := w.counts(now.Add(time.Minute)); got != (Counts{Answered: 1}) {
		t.Fatalf("a minute later %+v, want the answered call only", got)
	}
	if got := w.counts(now.Add(-time.Minute)); got != (Counts{Refused: 1}) {
		t.Fatalf("a minute earlier %+v, want the refused call only", got)
	}
	// A clock gone back a day: the later minutes do not count, the
	// slot they held counts anew.
	back := now.Add(-Period)
	w.add(back, back, b2bua.Cancelled)
	if got := w.counts(back); got != (Counts{Cancelled: 1}) {
		t.Fatalf("clock back a day: %+v, want one cancelled", got)
	}
	// A clock at the epoch (a box without a real-time clock before NTP)
	// must not break the ring.
	epoch := time.Unix(30, 0)
	w.add(epoch, time.Unix(-30, 0), b2bua.Failed)
	if got := w.counts(epoch); got != (Counts{Failed: 1}) {
		t.Fatalf("at the epoch %+v, want one failed", got)
	}
}
