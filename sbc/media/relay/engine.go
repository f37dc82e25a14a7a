package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Alarms is where the engine reports port exhaustion; the appliance's
// alarm registry fits.
type Alarms interface {
	Raise(code, text string)
	Clear(code string)
}

// RealmPorts is a realm's media address and port range.
type RealmPorts struct {
	Name string
	// Bind is the address sockets bind to, e.g. 10.180.0.4 or 0.0.0.0.
	Bind     netip.Addr
	Min, Max int
}

// Config configures an Engine.
type Config struct {
	Realms []RealmPorts
	// Drain keeps a released port pair unused for this long; default 2s,
	// negative for none.
	Drain time.Duration
	// InitialTimeout ends media that never started; default 30s.
	InitialTimeout time.Duration
	// SteadyTimeout ends media that stopped; default 60s.
	SteadyTimeout time.Duration
	// ReportInterval is the period of receiver reports on legs whose RTCP
	// is terminated; default 5s.
	ReportInterval time.Duration
	Alarms         Alarms
	Logger         *slog.Logger
	Now            func() time.Time
}

// Engine owns the realms' port pools and every bridge.
type Engine struct {
	cfg   Config
	now   func() time.Time
	log   *slog.Logger
	pools map[string]*Pool

	mu      sync.Mutex
	bridges map[*Bridge]struct{}
}

// New builds an engine; it binds nothing until a bridge is made.
func New(cfg Config) (*Engine, error) {
	if cfg.Drain == 0 {
		cfg.Drain = 2 * time.Second
	}
	if cfg.InitialTimeout == 0 {
		cfg.InitialTimeout = 30 * time.Second
	}
	if cfg.SteadyTimeout == 0 {
		cfg.SteadyTimeout = 60 * time.Second
	}
	if cfg.ReportInterval == 0 {
		cfg.ReportInterval = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &Engine{cfg: cfg, now: cfg.Now, log: cfg.Logger, pools: map[string]*Pool{}, bridges: map[*Bridge]struct{}{}}
	for _, r := range cfg.Realms {
		p, err := NewPool(r.Name, r.Bind, r.Min, r.Max, cfg.Drain, cfg.Now)
		if err != nil {
			return nil, err
		}
		e.pools[r.Name] = p
	}
	return e, nil
}

// Pool returns a realm's port pool, or nil.
func (e *Engine) Pool(realm string) *Pool { return e.pools[realm] }

// NewBridge allocates a port pair in realm a for leg A and in realm b for
// leg B. onEvent (may be nil) hears about inactivity; it is called from
// the engine's monitor and must not block.
func (e *Engine) NewBridge(realmA, realmB string, onEvent func(Event)) (*Bridge, error) {
	pa, err := e.alloc(realmA)
	if err != nil {
		return nil, err
	}
	pb, err := e.alloc(realmB)
	if err != nil {
		pa.Release()
		return nil, err
	}
	br := &Bridge{
		engine: e, onEvent: onEvent, started: e.now(),
		legs: [2]*leg{{side: A, ports: pa}, {side: B, ports: pb}},
	}
	e.mu.Lock()
	e.bridges[br] = struct{}{}
	e.mu.Unlock()
	return br, nil
}

func (e *Engine) alloc(realm string) (*Ports, error) {
	p := e.pools[realm]
	if p == nil {
		return nil, fmt.Errorf("relay: no media port range for realm %q", realm)
	}
	ports, err := p.Alloc()
	code := "media-ports-" + realm
	switch {
	case errors.Is(err, ErrNoPorts):
		e.log.Error("media ports exhausted", "realm", realm, "err", err)
		if e.cfg.Alarms != nil {
			e.cfg.Alarms.Raise(code, fmt.Sprintf("No free media ports in realm %s: new calls are refused. Widen its media port range.", realm))
		}
		return nil, err
	case err != nil:
		return nil, err
	}
	if e.cfg.Alarms != nil && p.Free() > p.Size()/10 {
		e.cfg.Alarms.Clear(code)
	}
	return ports, nil
}

func (e *Engine) forget(br *Bridge) {
	e.mu.Lock()
	delete(e.bridges, br)
	e.mu.Unlock()
}

// Active is the number of open bridges.
func (e *Engine) Active() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.bridges)
}

// Run checks every bridge for inactivity and sends terminated-RTCP
// reports, once per tick, until ctx ends.
func (e *Engine) Run(ctx context.Context, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.Check()
		}
	}
}

// Check runs one round of the monitor: inactivity timeouts and receiver
// reports. Run calls it; tests may call it directly.
func (e *Engine) Check() {
	e.mu.Lock()
	list := make([]*Bridge, 0, len(e.bridges))
	for br := range e.bridges {
		list = append(list, br)
	}
	e.mu.Unlock()
	now := e.now()
	for _, br := range list {
		br.checkTimeouts(now, e.cfg.InitialTimeout, e.cfg.SteadyTimeout)
		if now.After(br.nextRR) {
			br.nextRR = now.Add(e.cfg.ReportInterval)
			br.sendReports()
		}
	}
}

// checkTimeouts reports the first leg whose expected media is missing.
func (br *Bridge) checkTimeouts(now time.Time, initial, steady time.Duration) {
	if br.closed.Load() || br.fired.Load() {
		return
	}
	for _, s := range []Side{A, B} {
		l := br.legs[s]
		st := l.state.Load()
		if st == nil || !st.p.Receive {
			continue
		}
		ev := Event{Side: s}
		if last := l.stats.lastPacket.Load(); last == 0 || time.Unix(0, last).Before(st.since) {
			if ev.Idle = now.Sub(st.since); ev.Idle >= initial {
				ev.Kind = InitialTimeout
			}
		} else if ev.Idle = now.Sub(time.Unix(0, last)); ev.Idle >= steady {
			ev.Kind = SteadyTimeout
		}
		if ev.Kind != 0 && !br.fired.Swap(true) {
			if br.onEvent != nil {
				br.onEvent(ev)
			}
			return
		}
	}
}
