package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/psigate/psigate/appliance/alarm"
	"github.com/psigate/psigate/appliance/cdr"
	"github.com/psigate/psigate/appliance/config"
	"github.com/psigate/psigate/appliance/firstboot"
	"github.com/psigate/psigate/appliance/store"
	"github.com/psigate/psigate/appliance/supervisor"
	"github.com/psigate/psigate/appliance/sysinfo"
	"github.com/psigate/psigate/sbc"
	"github.com/psigate/psigate/webui"
)

type options struct {
	dataDir  string
	httpAddr string
	drain    time.Duration
	log      *slog.Logger

	// Firmware updates: see newUpdater.
	releaseFile  string // e.g. /etc/psigate/release.json
	updateKey    string // e.g. /etc/psigate/update-signing.pub
	rollbackFile string // e.g. /perm/bootguard/rollback.json
}

// notBuilt are the services whose configuration exists but whose runtime
// does not yet; the dashboard says so instead of pretending.
var notBuilt = []webui.Component{
	{Name: "netcfg", State: "not built yet", Detail: "realm addresses and routes: configuration only"},
	{Name: "cloudlinkd", State: "not built yet", Detail: "cloud connector: configuration only"},
}

// run wires the appliance and runs it until ctx ends.
func run(ctx context.Context, o options) error {
	started := time.Now()
	st, err := store.Open(o.dataDir, store.Options{})
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			o.log.Error("closing the store", "err", err)
		}
	}()
	hostname, _ := os.Hostname()
	id, cert, err := firstboot.Ensure(st, started, hostname)
	if err != nil {
		return err
	}
	alarms := alarm.New(nil)
	alarms.Raise("portal-self-signed", alarm.Minor, "The admin portal uses the appliance's self-signed certificate.")
	updater := newUpdater(o, majorAlarms{alarms})

	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return fmt.Errorf("admin portal: %w", err)
	}
	defer ln.Close()

	// stopCalls runs as run returns: after the supervisor has stopped
	// the SBC, so that the records of the calls it ends on its way out
	// are kept, and before the store closes.
	calls, stopCalls, err := startCallLog(st, o.log.With("service", "cdr"))
	if err != nil {
		return err
	}
	defer stopCalls()

	var sup *supervisor.Supervisor
	sbcSvc := sbc.NewService(o.log.With("service", "sbc"), st, majorAlarms{alarms})
	sbcSvc.OnCallEnd(calls.Add)
	status := func(ctx context.Context) webui.Status {
		info, err := sysinfo.Read("/proc", o.dataDir)
		if err != nil {
			o.log.Debug("sysinfo", "err", err)
		}
		run, _ := st.Running()
		last24h, lost := callCounts(calls.Stats())
		return webui.Status{
			Version: version, MachineID: id.MachineID, Hostname: run.Config.System.Hostname,
			Started: started, UptimeS: time.Since(started).Seconds(), System: info,
			Alarms: alarms.List(), Components: components(sup.States()),
			Subscribers: len(sbcSvc.Bindings()), Calls: len(sbcSvc.Calls()),
			Last24h: last24h, RecordsLost: lost,
		}
	}
	portal, err := webui.New(webui.Options{
		Config: st, Auth: st, Status: status, AdminUser: firstboot.AdminUser,
		MachineID: id.MachineID, Logger: o.log.With("service", "portal"), SIP: sipStatus{sbcSvc},
		History: callHistory{st}, Firmware: updater,
	})
	if err != nil {
		return err
	}
	sup = supervisor.New(o.log, st, alarms, supervisor.Service{
		Name: "portal",
		Run:  func(ctx context.Context) error { return portal.Serve(ctx, ln, cert, o.drain) },
	}, supervisor.Service{
		Name:  "sbc",
		Apply: func(ctx context.Context, c config.Config) error { return sbcSvc.Apply(ctx, sbcDesired(c, cert)) },
		Run:   sbcSvc.Run,
	})
	o.log.Info("appliance starting", "version", version, "machineID", id.MachineID, "data", st.Path())
	fmt.Printf("psigate: admin portal at %s\n", portalURL(ln.Addr(), hostname))
	fmt.Fprintf(console(), "psigate %s starting: admin portal at %s\n", version, portalURL(ln.Addr(), hostname))
	return sup.Run(ctx)
}

// startCallLog starts writing call records to st. stop writes what is
// still queued and waits; call it after the SBC has stopped and before
// the store closes.
func startCallLog(st *store.Store, log *slog.Logger) (rec *cdr.Recorder, stop func(), err error) {
	rec, err = cdr.New(st, cdr.Options{Log: log})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := rec.Run(ctx); err != nil {
			log.Error("call log stopped", "err", err)
		}
	}()
	return rec, func() { cancel(); <-done }, nil
}

// portalURL is the address to type into a browser.
func portalURL(addr net.Addr, hostname string) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return "https://" + addr.String() + "/"
	}
	host := tcp.IP.String()
	if tcp.IP.IsUnspecified() {
		host = hostname
	}
	if tcp.Port == 443 {
		return "https://" + host + "/"
	}
	return "https://" + net.JoinHostPort(host, fmt.Sprint(tcp.Port)) + "/"
}

func components(states []supervisor.State) []webui.Component {
	out := make([]webui.Component, 0, len(states)+len(notBuilt))
	for _, s := range states {
		c := webui.Component{Name: s.Name, State: "stopped", Detail: s.Err}
		switch {
		case s.Running && s.Err != "":
			// Running, but the running configuration did not apply
			// (/healthz names it, with 200: it still serves).
			c.State = "degraded"
		case s.Running:
			c.State = "running"
		case s.Err != "":
			c.State = "failed"
		}
		out = append(out, c)
	}
	return append(out, notBuilt...)
}
