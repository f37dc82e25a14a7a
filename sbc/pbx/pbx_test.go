package pbx

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// fake answers probes per node as told.
type fake struct {
	mu   sync.Mutex
	down map[string]bool
}

func (f *fake) probe(_ context.Context, n Node) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down[n.Name] {
		return errors.New("timeout")
	}
	return nil
}

func (f *fake) set(name string, down bool) {
	f.mu.Lock()
	f.down[name] = down
	f.mu.Unlock()
}

func TestFailoverAndFailback(t *testing.T) {
	f := &fake{down: map[string]bool{}}
	m := New(f.probe, nil)
	g := Group{Name: "OS4K", Nodes: []Node{
		{Group: "OS4K", Name: "backup", Priority: 2, Addr: "127.0.0.3:5060", Transport: "TCP"},
		{Group: "OS4K", Name: "main", Priority: 1, Addr: "127.0.0.2:5060", Transport: "TCP"},
	}}
	m.Set([]Group{g}, 0, 3)
	ctx := context.Background()
	route := func() string {
		n, err := m.Route("")
		if err != nil {
			return err.Error()
		}
		return n.Name
	}
	if got := route(); got != "main" {
		t.Fatalf("route %s, want main", got)
	}
	f.set("main", true)
	for i := 1; i <= 3; i++ {
		m.ProbeAll(ctx)
		want := "main"
		if i == 3 {
			want = "backup" // down after the threshold
		}
		if got := route(); got != want {
			t.Fatalf("after %d failed probes: %s, want %s", i, got, want)
		}
	}
	f.set("main", false)
	m.ProbeAll(ctx)
	if got := route(); got != "main" {
		t.Fatalf("after the main node answered again: %s, want failback to main", got)
	}
	f.set("main", true)
	f.set("backup", true)
	for range 3 {
		m.ProbeAll(ctx)
	}
	if _, err := m.Route(""); !errors.Is(err, ErrNoNode) {
		t.Fatalf("all down: %v, want ErrNoNode", err)
	}
	st := m.States()
	if len(st) != 2 || st[0].Name != "main" || st[0].Up || st[0].Failures != 3 || st[0].LastErr != "timeout" {
		t.Errorf("states %+v", st)
	}
}

func TestStickWithNode(t *testing.T) {
	f := &fake{down: map[string]bool{}}
	m := New(f.probe, nil)
	g := Group{Name: "g", StickWithNode: true, Nodes: []Node{
		{Group: "g", Name: "a", Priority: 1}, {Group: "g", Name: "b", Priority: 2},
	}}
	m.Set([]Group{g}, 0, 1)
	if n, _ := m.Route("b"); n.Name != "b" {
		t.Fatalf("sticky route %s, want b", n.Name)
	}
	f.set("b", true)
	m.ProbeAll(context.Background())
	if n, _ := m.Route("b"); n.Name != "a" {
		t.Fatalf("sticky node down: %s, want a", n.Name)
	}
	g.StickWithNode = false
	f.set("b", false)
	m.Set([]Group{g}, 0, 1)
	m.ProbeAll(context.Background())
	if n, _ := m.Route("b"); n.Name != "a" {
		t.Fatalf("not sticky: %s, want the best priority a", n.Name)
	}
	m.Set(nil, 0, 1)
	if _, err := m.Route(""); !errors.Is(err, ErrNoNode) || len(m.States()) != 0 {
		t.Fatalf("no groups: %v %v", err, m.States())
	}
}

// TestGroupsInOrder: the second group takes over when every node of the
// first is down, and gives back when one answers again.
func TestGroupsInOrder(t *testing.T) {
	f := &fake{down: map[string]bool{}}
	m := New(f.probe, nil)
	m.Set([]Group{
		{Name: "site-a", Nodes: []Node{{Group: "site-a", Name: "a1", Priority: 1, Addr: "127.0.0.2:5060"}, {Group: "site-a", Name: "a2", Priority: 2, Addr: "127.0.0.3:5060"}}},
		{Name: "site-b", Nodes: []Node{{Group: "site-b", Name: "b1", Priority: 1, Addr: "127.0.0.4:5060"}}},
	}, 0, 1)
	ctx := context.Background()
	route := func() string {
		n, err := m.Route("")
		if err != nil {
			return err.Error()
		}
		return n.Name
	}
	for _, step := range []struct {
		down []string
		want string
	}{
		{nil, "a1"},
		{[]string{"a1"}, "a2"},
		{[]string{"a1", "a2"}, "b1"},
		{[]string{"a1"}, "a2"},
		{[]string{"a1", "a2", "b1"}, ErrNoNode.Error()},
	} {
		for _, n := range []string{"a1", "a2", "b1"} {
			f.set(n, false)
		}
		for _, n := range step.down {
			f.set(n, true)
		}
		m.ProbeAll(ctx)
		if got := route(); got != step.want {
			t.Errorf("down %v: route %s, want %s", step.down, got, step.want)
		}
	}
}
