// Package pbx keeps the PBX node groups of the SIP server settings (seed
// 9.2) alive: every node is probed with OPTIONS; a node that misses the
// failure threshold in a row is down, and up again at its next answer.
// Requests go to the available node of the best priority, or, with
// "stick with comm server", to the node a subscriber is registered on
// while it is up.
package pbx

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// ErrNoNode means every node of the group is down (or there is none).
var ErrNoNode = errors.New("pbx: no node available")

// Node is one PBX node.
type Node struct {
	Group     string
	Name      string
	Priority  int    // lower is preferred
	Addr      string // host:port
	Transport string // "UDP", "TCP" or "TLS"
}

// Group is a node group.
type Group struct {
	Name          string
	StickWithNode bool
	Nodes         []Node
}

// State is a node's health, for the portal and API.
type State struct {
	Node
	Up       bool      `json:"up"`
	Failures int       `json:"failures"` // unanswered probes in a row
	Since    time.Time `json:"since"`    // last change of Up
	LastErr  string    `json:"lastError,omitempty"`
}

// Prober sends one keepalive to a node and reports whether it answered.
type Prober func(ctx context.Context, n Node) error

// Monitor probes the nodes and routes requests to them.
type Monitor struct {
	probe Prober
	now   func() time.Time

	mu        sync.Mutex
	groups    []Group
	interval  time.Duration
	threshold int
	state     map[string]*State // by group/name
	wake      chan struct{}
}

// New returns a monitor using probe; now may be nil for time.Now.
func New(probe Prober, now func() time.Time) *Monitor {
	if now == nil {
		now = time.Now
	}
	return &Monitor{probe: probe, now: now, state: map[string]*State{}, wake: make(chan struct{}, 1), interval: 30 * time.Second, threshold: 3}
}

func key(n Node) string { return n.Group + "/" + n.Name }

// Set reconciles the monitored nodes: new ones start up (optimistic until
// probes say otherwise), kept ones keep their state.
func (m *Monitor) Set(groups []Group, interval time.Duration, threshold int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.groups, m.interval, m.threshold = groups, interval, max(threshold, 1)
	keep := map[string]bool{}
	for _, g := range groups {
		for _, n := range g.Nodes {
			k := key(n)
			keep[k] = true
			if st := m.state[k]; st != nil {
				st.Node = n
				continue
			}
			m.state[k] = &State{Node: n, Up: true, Since: m.now()}
		}
	}
	for k := range m.state {
		if !keep[k] {
			delete(m.state, k)
		}
	}
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Run probes every node once per interval until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	for {
		m.ProbeAll(ctx)
		m.mu.Lock()
		interval := m.interval
		m.mu.Unlock()
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-m.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// ProbeAll probes every node concurrently and records the results.
func (m *Monitor) ProbeAll(ctx context.Context) {
	m.mu.Lock()
	nodes := make([]Node, 0, len(m.state))
	for _, st := range m.state {
		nodes = append(nodes, st.Node)
	}
	timeout := m.interval
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, max(timeout, time.Second))
	defer cancel()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() { m.record(n, m.probe(ctx, n)) })
	}
	wg.Wait()
}

func (m *Monitor) record(n Node, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.state[key(n)]
	if st == nil {
		return
	}
	if err == nil {
		if !st.Up {
			st.Up, st.Since = true, m.now()
		}
		st.Failures, st.LastErr = 0, ""
		return
	}
	st.Failures++
	st.LastErr = err.Error()
	if st.Up && st.Failures >= m.threshold {
		st.Up, st.Since = false, m.now()
	}
}

// States lists the nodes' health, by group and priority.
func (m *Monitor) States() []State {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]State, 0, len(m.state))
	for _, st := range m.state {
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b State) int {
		if a.Group != b.Group {
			if a.Group < b.Group {
				return -1
			}
			return 1
		}
		return a.Priority - b.Priority
	})
	return out
}

// Route picks the node for a request: with "stick with comm server" the
// current node while it is up; else the available node of the best
// priority in the first group that has one: a later group takes over
// when every node of the earlier ones is down.
func (m *Monitor) Route(current string) (Node, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	up := func(n Node) bool { st := m.state[key(n)]; return st != nil && st.Up }
	if current != "" {
		for _, g := range m.groups {
			if !g.StickWithNode {
				continue
			}
			if i := slices.IndexFunc(g.Nodes, func(n Node) bool { return n.Name == current }); i >= 0 && up(g.Nodes[i]) {
				return g.Nodes[i], nil
			}
		}
	}
	for _, g := range m.groups {
		nodes := slices.Clone(g.Nodes)
		slices.SortStableFunc(nodes, func(a, b Node) int { return a.Priority - b.Priority })
		for _, n := range nodes {
			if up(n) {
				return n, nil
			}
		}
	}
	return Node{}, ErrNoNode
}
