package webui

import (
	"sync"
	"time"
)

// throttle slows down password guessing: after a key's free failures
// (5 from one source address, 20 for one user name from anywhere, so a
// stranger cannot lock the admin out as quickly as he can guess from one
// address), each further attempt must wait twice as long as the previous
// one, up to maxDelay. A success clears the count; failures are forgotten
// after forget.
type throttle struct {
	mu     sync.Mutex
	now    func() time.Time
	failed map[string]*failures
}

type failures struct {
	count int
	last  time.Time
}

// key names what failures are counted for, with how many are free.
type key struct {
	name string
	free int
}

func sourceKey(ip string) key { return key{"ip:" + ip, 5} }
func userKey(user string) key { return key{"user:" + user, 20} }

const (
	baseDelay = time.Second
	maxDelay  = 15 * time.Minute
	forget    = time.Hour
)

func newThrottle(now func() time.Time) *throttle {
	return &throttle{now: now, failed: map[string]*failures{}}
}

// wait returns how long the caller must wait before the keys may try
// again; 0 means now.
func (t *throttle) wait(keys ...key) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	var longest time.Duration
	for _, k := range keys {
		f := t.failed[k.name]
		if f == nil || f.count < k.free {
			continue
		}
		if now.Sub(f.last) > forget {
			delete(t.failed, k.name)
			continue
		}
		if d := f.last.Add(delayFor(f.count - k.free)).Sub(now); d > longest {
			longest = d
		}
	}
	return longest
}

// delayFor is the wait after the given number of failures beyond the free
// ones: 1 s, 2 s, 4 s ... up to maxDelay.
func delayFor(over int) time.Duration {
	d := baseDelay << min(over, 20)
	return min(d, maxDelay)
}

// fail records a failed attempt for each key.
func (t *throttle) fail(keys ...key) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for _, k := range keys {
		f := t.failed[k.name]
		if f == nil {
			if len(t.failed) > 100000 {
				t.pruneLocked(now)
			}
			f = &failures{}
			t.failed[k.name] = f
		}
		f.count++
		f.last = now
	}
}

// succeed forgets the failures of keys.
func (t *throttle) succeed(keys ...key) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		delete(t.failed, k.name)
	}
}

func (t *throttle) pruneLocked(now time.Time) {
	for k, f := range t.failed {
		if now.Sub(f.last) > forget {
			delete(t.failed, k)
		}
	}
}
