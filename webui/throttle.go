package webui

import (
	"sync"
	"time"
)

// throttle slows down password guessing: after freeFailures failed logins
// from one source or for one user, each further attempt must wait twice
// as long as the previous one, up to maxDelay. A success clears the
// source's count; failures are forgotten after forget.
type throttle struct {
	mu     sync.Mutex
	now    func() time.Time
	failed map[string]*failures
}

type failures struct {
	count int
	last  time.Time
}

const (
	freeFailures = 5
	baseDelay    = time.Second
	maxDelay     = 15 * time.Minute
	forget       = time.Hour
)

func newThrottle(now func() time.Time) *throttle {
	return &throttle{now: now, failed: map[string]*failures{}}
}

// wait returns how long the caller must wait before the keys may try
// again; 0 means now.
func (t *throttle) wait(keys ...string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	var longest time.Duration
	for _, k := range keys {
		f := t.failed[k]
		if f == nil || f.count < freeFailures {
			continue
		}
		if now.Sub(f.last) > forget {
			delete(t.failed, k)
			continue
		}
		if d := f.last.Add(delayFor(f.count)).Sub(now); d > longest {
			longest = d
		}
	}
	return longest
}

func delayFor(count int) time.Duration {
	d := baseDelay << min(count-freeFailures, 20)
	return min(d, maxDelay)
}

// fail records a failed attempt for each key.
func (t *throttle) fail(keys ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for _, k := range keys {
		f := t.failed[k]
		if f == nil {
			if len(t.failed) > 100000 {
				t.pruneLocked(now)
			}
			f = &failures{}
			t.failed[k] = f
		}
		f.count++
		f.last = now
	}
}

// succeed forgets the failures of key.
func (t *throttle) succeed(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.failed, key)
}

func (t *throttle) pruneLocked(now time.Time) {
	for k, f := range t.failed {
		if now.Sub(f.last) > forget {
			delete(t.failed, k)
		}
	}
}
