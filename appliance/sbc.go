package main

import (
	"crypto/tls"
	"net"
	"net/netip"

	"github.com/psigate/psigate/appliance/alarm"
	"github.com/psigate/psigate/appliance/cdr"
	"github.com/psigate/psigate/appliance/config"
	"github.com/psigate/psigate/appliance/store"
	"github.com/psigate/psigate/netcfg"
	"github.com/psigate/psigate/sbc"
	"github.com/psigate/psigate/webui"
)

// sbcDesired maps the configuration onto what the SBC needs: each realm's
// listening address (its first static address, else all addresses) and
// the host it advertises (its advertised address, else the address it
// has).
func sbcDesired(c config.Config, cert tls.Certificate) sbc.Desired {
	d := sbc.Desired{Config: c.SBC, Certificate: cert}
	for _, r := range c.Network.Realms {
		bind := netip.IPv4Unspecified()
		if len(r.Addresses) > 0 {
			if p, err := netip.ParsePrefix(r.Addresses[0]); err == nil {
				bind = p.Addr()
			}
		}
		advertise := r.AdvertisedAddress
		if advertise == "" {
			advertise = hostAddress(r, bind)
		}
		d.Realms = append(d.Realms, sbc.Realm{
			Name: r.Name, Role: string(r.Role), Bind: bind, Advertise: advertise,
			UDP: r.SIPPorts.UDP, TCP: r.SIPPorts.TCP, TLS: r.SIPPorts.TLS, MTLS: r.SIPPorts.MTLS,
			MediaMin: r.MediaPorts.Min, MediaMax: r.MediaPorts.Max,
		})
	}
	return d
}

// hostAddress is the address a realm listening on bind is reached at: bind
// itself, else the first global address of the realm's interface, else of
// any interface, else loopback.
func hostAddress(r netcfg.Realm, bind netip.Addr) string {
	if !bind.IsUnspecified() {
		return bind.String()
	}
	if ifc, err := net.InterfaceByName(r.Interface); err == nil {
		if a, ok := firstGlobal(ifc.Addrs()); ok {
			return a
		}
	}
	if a, ok := firstGlobal(net.InterfaceAddrs()); ok {
		return a
	}
	return "127.0.0.1"
}

func firstGlobal(addrs []net.Addr, err error) (string, bool) {
	if err != nil {
		return "", false
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && p.Addr().IsGlobalUnicast() {
			return p.Addr().String(), true
		}
	}
	return "", false
}

// sipStatus shows the SBC's registrations and PBX nodes in the portal.
type sipStatus struct{ s *sbc.Service }

func (a sipStatus) Registrations() []webui.Registration {
	bs := a.s.Bindings()
	out := make([]webui.Registration, len(bs))
	for i, b := range bs {
		out[i] = webui.Registration{
			AOR: b.AOR, UserAgent: b.UserAgent, Transport: b.Flow.Transport, Source: b.Flow.Source,
			Since: b.Since, Expires: b.Expires, Node: b.Node,
		}
	}
	return out
}

func (a sipStatus) Calls() []webui.ActiveCall {
	cs := a.s.Calls()
	out := make([]webui.ActiveCall, len(cs))
	for i, c := range cs {
		out[i] = webui.ActiveCall{From: c.From, To: c.To, Direction: direction(c.ToClient), CallerAgent: c.CallerAgent, CalleeAgent: c.CalleeAgent, CallID: c.CallID, Started: c.Started, Answered: c.Answered,
			Codecs: c.Codecs, SRTP: c.SRTP}
		for leg := range 2 {
			out[i].PacketsIn[leg], out[i].PacketsOut[leg], out[i].Lost[leg] = c.Stats[leg].PacketsIn, c.Stats[leg].PacketsOut, c.Stats[leg].Lost
		}
	}
	return out
}

// direction names who called whom, as the portal says it.
func direction(toClient bool) string {
	if toClient {
		return "PBX to client"
	}
	return "client to PBX"
}

func (a sipStatus) Nodes() []webui.NodeStatus {
	ns := a.s.Nodes()
	out := make([]webui.NodeStatus, len(ns))
	for i, n := range ns {
		out[i] = webui.NodeStatus{
			Group: n.Group, Name: n.Name, Address: n.Addr, Transport: n.Transport, Priority: n.Priority,
			Up: n.Up, Failures: n.Failures, Since: n.Since, LastError: n.LastErr,
		}
	}
	return out
}

// callHistory shows the kept call records in the portal.
type callHistory struct{ st *store.Store }

func (h callHistory) EndedCalls(limit int, before uint64) (webui.CallHistoryPage, error) {
	p, err := h.st.CallRecords(limit, before)
	if err != nil {
		return webui.CallHistoryPage{}, err
	}
	kept, err := h.st.CallRecordCount()
	if err != nil {
		return webui.CallHistoryPage{}, err
	}
	out := webui.CallHistoryPage{Calls: make([]webui.EndedCall, len(p.Records)), Next: p.Next, Unreadable: p.Skipped, Kept: kept}
	for i, r := range p.Records {
		out.Calls[i] = endedCall(r)
	}
	return out, nil
}

func endedCall(r store.CallRecord) webui.EndedCall {
	return webui.EndedCall{
		ID: r.Seq, From: r.From, To: r.To, Direction: direction(r.ToClient), CallerAgent: r.CallerAgent, CalleeAgent: r.CalleeAgent,
		CallID: r.CallID, Started: r.Started, Answered: r.Answered, Ended: r.Ended, DurationS: r.Duration().Seconds(),
		Result: string(r.Result), Code: r.Code, Reason: r.Reason,
		Codecs: r.Codecs, SRTP: r.SRTP, PacketsIn: r.PacketsIn, PacketsOut: r.PacketsOut, Lost: r.Lost,
	}
}

// callCounts are the dashboard's figures of the call log.
func callCounts(s cdr.Stats) (webui.CallCounts, uint64) {
	c := s.Last24h
	return webui.CallCounts{Answered: c.Answered, Refused: c.Refused, Cancelled: c.Cancelled, Failed: c.Failed}, s.Dropped + s.Unsaved
}

// majorAlarms raises a service's alarms as major.
type majorAlarms struct{ r *alarm.Registry }

func (a majorAlarms) Raise(code, text string) { a.r.Raise(code, alarm.Major, text) }
func (a majorAlarms) Clear(code string)       { a.r.Clear(code) }
