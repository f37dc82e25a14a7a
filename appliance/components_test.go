package main

import (
	"testing"

	"github.com/psigate/psigate/appliance/supervisor"
)

// A service that runs but could not apply the running configuration is
// "degraded", which /healthz names.
func TestComponentStates(t *testing.T) {
	got := components([]supervisor.State{
		{Name: "portal", Running: true},
		{Name: "sbc", Running: true, Err: "sbc: realm access: no such interface"},
		{Name: "cdr", Err: "disk full"},
		{Name: "idle"},
	})
	want := map[string]string{"portal": "running", "sbc": "degraded", "cdr": "failed", "idle": "stopped"}
	for _, c := range got {
		if w, ok := want[c.Name]; ok && c.State != w {
			t.Errorf("%s: %q, want %q", c.Name, c.State, w)
		}
	}
	if len(got) != len(want)+len(notBuilt) {
		t.Errorf("%d components, want %d", len(got), len(want)+len(notBuilt))
	}
}
