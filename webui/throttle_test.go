package webui

import (
	"testing"
	"time"
)

func TestThrottleDoublesAfterFreeFailures(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	th := newThrottle(func() time.Time { return now })
	ip, user := sourceKey("192.0.2.1"), userKey("admin")
	for i := 0; i < 4; i++ {
		th.fail(ip, user)
		if w := th.wait(ip, user); w != 0 {
			t.Fatalf("after %d failures wait %s, want 0", i+1, w)
		}
	}
	th.fail(ip, user) // the fifth from this address
	if w := th.wait(ip, user); w != time.Second {
		t.Fatalf("after 5 failures wait %s, want 1s", w)
	}
	th.fail(ip, user)
	if w := th.wait(ip, user); w != 2*time.Second {
		t.Fatalf("after 6 failures wait %s, want 2s", w)
	}
	// Another address is not slowed by this one's failures yet...
	other := sourceKey("192.0.2.2")
	if w := th.wait(other, user); w != 0 {
		t.Fatalf("other source waits %s, want 0 (user has 6 of 20 free failures)", w)
	}
	now = now.Add(2 * time.Second)
	if w := th.wait(ip, user); w != 0 {
		t.Fatalf("after the delay wait %s, want 0", w)
	}
	th.succeed(ip, user)
	if w := th.wait(ip, user); w != 0 {
		t.Fatalf("after success wait %s", w)
	}
}

func TestThrottleUserKeyFromManySources(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	th := newThrottle(func() time.Time { return now })
	user := userKey("admin")
	for i := 0; i < 20; i++ {
		th.fail(sourceKey("198.51.100."+string(rune('a'+i))), user)
	}
	if w := th.wait(sourceKey("203.0.113.9"), user); w != time.Second {
		t.Fatalf("after 20 failures for one user from many sources wait %s, want 1s", w)
	}
}

func TestThrottleCapsAndForgets(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	th := newThrottle(func() time.Time { return now })
	ip := sourceKey("192.0.2.1")
	for i := 0; i < 60; i++ {
		th.fail(ip)
	}
	if w := th.wait(ip); w != maxDelay {
		t.Fatalf("wait %s, want the cap %s", w, maxDelay)
	}
	now = now.Add(forget + time.Second)
	if w := th.wait(ip); w != 0 {
		t.Fatalf("after %s wait %s, want 0", forget, w)
	}
	if len(th.failed) != 0 {
		t.Errorf("forgotten entry kept: %v", th.failed)
	}
}
