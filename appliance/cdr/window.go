package cdr

import (
	"time"

	"github.com/psigate/psigate/sbc/b2bua"
)

// Period is what the counts cover: the last 24 hours.
const Period = 24 * time.Hour

// Counts are the calls that ended in a period, by result.
type Counts struct {
	Answered, Refused, Cancelled, Failed int
}

func (c *Counts) add(r b2bua.Result) {
	switch r {
	case b2bua.Answered:
		c.Answered++
	case b2bua.Refused:
		c.Refused++
	case b2bua.Cancelled:
		c.Cancelled++
	case b2bua.Failed:
		c.Failed++
	}
}

func (c *Counts) plus(o Counts) {
	c.Answered += o.Answered
	c.Refused += o.Refused
	c.Cancelled += o.Cancelled
	c.Failed += o.Failed
}

// slots is the number of minutes in Period.
const slots = int64(Period / time.Minute)

// window counts results per minute over the last Period in a fixed ring
// of one slot per minute, whatever the call rate.
type window struct {
	minute [slots]int64 // the Unix minute a slot counts
	n      [slots]Counts
}

func unixMinute(t time.Time) int64 { return t.Unix() / 60 }

// add counts a call that ended at t, unless t is outside the period
// ending now.
func (w *window) add(now, t time.Time, r b2bua.Result) {
	m, cur := unixMinute(t), unixMinute(now)
	if m <= cur-slots || m > cur {
		return
	}
	i := (m%slots + slots) % slots // m < 0 before 1970
	// Another minute in the slot is older than the period, or later than
	// now after the clock went back: stale either way.
	if w.minute[i] != m {
		w.minute[i], w.n[i] = m, Counts{}
	}
	w.n[i].add(r)
}

// counts sums the minutes of the period ending now.
func (w *window) counts(now time.Time) Counts {
	cur := unixMinute(now)
	var c Counts
	for i := range w.n {
		if w.minute[i] > cur-slots && w.minute[i] <= cur {
			c.plus(w.n[i])
		}
	}
	return c
}
