package sbctest

import (
	"net/netip"
	"testing"
	"time"
)

// WaitOptions polls addr with OPTIONS over network ("udp" or "tcp")
// until it answers 200, such as a SIPp callee that has just been
// started, and fails the test if it does not within timeout.
func WaitOptions(t testing.TB, network string, addr netip.AddrPort, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for n := 1; ; n++ {
		err := probeOptions(network, addr, n, 250*time.Millisecond)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sbctest: %s over %s does not answer OPTIONS after %v: %v", addr, network, timeout, err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}
