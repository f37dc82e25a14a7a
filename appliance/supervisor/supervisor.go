// Package supervisor runs the appliance's services under one context and
// keeps them reconciled to the running configuration: each service is
// given the running configuration before it starts and again after every
// apply or rollback, and an unconfirmed apply is rolled back when its
// deadline passes.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/psigate/psigate/appliance/alarm"
	"github.com/psigate/psigate/appliance/config"
	"github.com/psigate/psigate/appliance/store"
)

// Service is one long-running part of the appliance.
type Service struct {
	Name string
	// Apply reconciles the service to a running configuration. It is
	// called before Run and after every change; nil if the service has
	// nothing to configure. An error raises an alarm; the service keeps
	// running with what it had.
	Apply func(ctx context.Context, c config.Config) error
	// Run runs until ctx ends and then returns nil after draining. An
	// error stops the whole appliance, so that its supervisor (gokrazy)
	// restarts it.
	Run func(ctx context.Context) error
}

// State of a service, for the dashboard.
type State struct {
	Name    string
	Running bool
	Err     string // the last Run or Apply error, if any
}

// Supervisor runs services.
type Supervisor struct {
	log      *slog.Logger
	store    *store.Store
	alarms   *alarm.Registry
	services []Service

	mu     sync.Mutex
	states map[string]*State
}

// New returns a supervisor for services, in start order.
func New(log *slog.Logger, st *store.Store, alarms *alarm.Registry, services ...Service) *Supervisor {
	states := make(map[string]*State, len(services))
	for _, s := range services {
		states[s.Name] = &State{Name: s.Name}
	}
	return &Supervisor{log: log, store: st, alarms: alarms, services: services, states: states}
}

// States lists the services' states in start order.
func (s *Supervisor) States() []State {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]State, len(s.services))
	for i, svc := range s.services {
		out[i] = *s.states[svc.Name]
	}
	return out
}

func (s *Supervisor) set(name string, f func(*State)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.states[name])
}

// Run configures and starts every service and returns when ctx ends and
// they have all stopped (nil), or when one fails (its error, after the
// others have stopped).
func (s *Supervisor) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	watch, unwatch := s.store.Watch()
	defer unwatch()
	run, err := s.store.Running()
	if err != nil {
		return fmt.Errorf("supervisor: running configuration: %w", err)
	}
	s.reconcile(ctx, run)

	var wg sync.WaitGroup
	for _, svc := range s.services {
		wg.Go(func() {
			s.set(svc.Name, func(st *State) { st.Running = true })
			err := svc.Run(ctx)
			s.set(svc.Name, func(st *State) {
				st.Running = false
				if err != nil {
					st.Err = err.Error()
				}
			})
			if err != nil {
				cancel(fmt.Errorf("%s: %w", svc.Name, err))
			}
		})
	}
	wg.Go(func() {
		if err := s.store.RunConfirmTimer(ctx, s.autoRolledBack); err != nil {
			cancel(fmt.Errorf("confirm timer: %w", err))
		}
	})
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case rev, ok := <-watch:
				if !ok {
					return
				}
				s.reconcile(ctx, rev)
			}
		}
	})
	<-ctx.Done()
	wg.Wait()
	if err := context.Cause(ctx); !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// reconcile hands a running revision to every service.
func (s *Supervisor) reconcile(ctx context.Context, rev store.Revision) {
	s.log.Info("configuration running", "revision", rev.Number, "kind", rev.Kind, "author", rev.Author)
	for _, svc := range s.services {
		if svc.Apply == nil {
			continue
		}
		code := "reconcile-" + svc.Name
		start := time.Now()
		if err := svc.Apply(ctx, rev.Config); err != nil {
			s.log.Error("reconcile failed", "service", svc.Name, "revision", rev.Number, "err", err)
			s.set(svc.Name, func(st *State) { st.Err = err.Error() })
			s.alarms.Raise(code, alarm.Major, fmt.Sprintf("%s could not apply revision %d: %v", svc.Name, rev.Number, err))
			continue
		}
		s.set(svc.Name, func(st *State) { st.Err = "" })
		s.alarms.Clear(code)
		s.log.Debug("reconciled", "service", svc.Name, "revision", rev.Number, "took", time.Since(start))
	}
}

func (s *Supervisor) autoRolledBack(rev store.Revision) {
	s.log.Warn("unconfirmed apply rolled back", "revision", rev.Number, "restored", rev.From, "comment", rev.Comment)
	if err := s.store.Audit(store.Event{Actor: "system", Action: "auto-rollback", Detail: rev.Comment, OK: true}); err != nil {
		s.log.Error("audit event lost", "action", "auto-rollback", "err", err)
	}
	s.alarms.Raise("config-auto-rollback", alarm.Major,
		fmt.Sprintf("An apply was not confirmed in time and was rolled back: revision %d restores revision %d.", rev.Number, rev.From))
}
