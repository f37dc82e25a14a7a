package sbc

import "github.com/psigate/psigate/appliance/field"

// CommSystemType is the kind of communication system behind the SBC
// (seed 9.2 "Comm System Type").
type CommSystemType string

const (
	CommStandalone CommSystemType = "standalone" // one PBX node
	CommClustered  CommSystemType = "clustered"  // node groups with priorities
)

// Transport is a SIP transport towards a server.
type Transport string

const (
	TransportUDP Transport = "udp"
	TransportTCP Transport = "tcp"
	TransportTLS Transport = "tls"
)

// SIPServer is the PBX side (seed 9.2 "Sip Server Settings").
type SIPServer struct {
	// CommSystemType is standalone or clustered; default clustered.
	CommSystemType CommSystemType `json:"commSystemType"`
	// NodeGroups are the PBX node groups; empty until the PBX is set up.
	NodeGroups []NodeGroup `json:"nodeGroups"`
	// Keepalive probes every node with OPTIONS.
	Keepalive Keepalive `json:"keepalive"`
}

// NodeGroup is a set of PBX nodes tried in priority order.
type NodeGroup struct {
	// Name identifies the group, e.g. "OS4K".
	Name string `json:"name"`
	// StickWithNode keeps a subscriber on the node it registered on while
	// that node is up (seed "Stick with CommServer").
	StickWithNode bool   `json:"stickWithNode"`
	Nodes         []Node `json:"nodes"`
}

// Node is one PBX node.
type Node struct {
	// Name identifies the node, e.g. "node1".
	Name string `json:"name"`
	// Priority: lower is preferred, 1-99.
	Priority int `json:"priority"`
	// Address is an IP address or FQDN, e.g. "10.180.0.10".
	Address string `json:"address"`
	// Transport is udp, tcp or tls; the seed uses tcp or tls (OS4K
	// refuses UDP, Appendix A).
	Transport Transport `json:"transport"`
	// Port, e.g. 5060 for tcp, 5061 for tls.
	Port int `json:"port"`
}

// Keepalive is the OPTIONS keepalive towards each node.
type Keepalive struct {
	// IntervalSeconds between probes, 5-600; default 30.
	IntervalSeconds int `json:"intervalSeconds"`
	// FailureThreshold is how many unanswered probes mark a node down,
	// 1-10; default 3.
	FailureThreshold int `json:"failureThreshold"`
}

// DefaultSIPServer is a clustered system without nodes yet.
func DefaultSIPServer() SIPServer {
	return SIPServer{
		CommSystemType: CommClustered,
		NodeGroups:     []NodeGroup{},
		Keepalive:      Keepalive{IntervalSeconds: 30, FailureThreshold: 3},
	}
}

// Validate checks the PBX side.
func (s SIPServer) Validate() error {
	var l field.List
	l.OneOf("commSystemType", string(s.CommSystemType), string(CommStandalone), string(CommClustered))
	if s.CommSystemType == CommStandalone {
		nodes := 0
		for _, g := range s.NodeGroups {
			nodes += len(g.Nodes)
		}
		if len(s.NodeGroups) > 1 || nodes > 1 {
			l.Addf("nodeGroups", "a standalone system has one node, found %d in %d groups", nodes, len(s.NodeGroups))
		}
	}
	groups := make([]string, len(s.NodeGroups))
	for i, g := range s.NodeGroups {
		groups[i] = g.Name
		l.Merge(field.Index("nodeGroups", i), g.validate())
	}
	l.Unique("nodeGroups", "name", groups)
	l.Range("keepalive.intervalSeconds", s.Keepalive.IntervalSeconds, 5, 600)
	l.Range("keepalive.failureThreshold", s.Keepalive.FailureThreshold, 1, 10)
	return l.Err()
}

func (g NodeGroup) validate() error {
	var l field.List
	l.Required("name", g.Name)
	if len(g.Nodes) == 0 {
		l.Addf("nodes", "a group needs at least one node")
	}
	names := make([]string, len(g.Nodes))
	for i, n := range g.Nodes {
		names[i] = n.Name
		p := field.Index("nodes", i)
		l.Required(field.Join(p, "name"), n.Name)
		l.Range(field.Join(p, "priority"), n.Priority, 1, 99)
		l.Host(field.Join(p, "address"), n.Address)
		l.OneOf(field.Join(p, "transport"), string(n.Transport), string(TransportUDP), string(TransportTCP), string(TransportTLS))
		l.Port(field.Join(p, "port"), n.Port, false)
	}
	l.Unique("nodes", "name", names)
	return l.Err()
}

// RemoteSubscribers is the remote subscriber feature (seed 9.4.1.1).
type RemoteSubscribers struct {
	// Enabled relays registrations of access-realm clients to the PBX.
	Enabled            bool               `json:"enabled"`
	RegisterThrottling RegisterThrottling `json:"registerThrottling"`
	// MaxExpirySeconds caps the registration expiry; default 2678400
	// (31 days). The seed warns that Zoom mobile clients are rejected
	// when it is lower.
	MaxExpirySeconds int `json:"maxExpirySeconds"`
	// MinIntervalSeconds is the shortest registration interval accepted
	// (423 Interval Too Brief below it); default 300.
	MinIntervalSeconds int `json:"minIntervalSeconds"`
	// Quarantine blocks a source that registers faster than allowed.
	Quarantine Quarantine `json:"quarantine"`
	// InviteNoAnswerTimeoutMs ends a ringing call nobody answers; default
	// 360000 (6 minutes).
	InviteNoAnswerTimeoutMs int `json:"inviteNoAnswerTimeoutMs"`
	// InviteNoReplyTimeoutMs ends an INVITE with no response at all;
	// default 3000.
	InviteNoReplyTimeoutMs int `json:"inviteNoReplyTimeoutMs"`
}

// RegisterThrottling gives clients a short expiry that keeps their NAT and
// TLS flow alive, while the PBX is refreshed on a longer interval.
type RegisterThrottling struct {
	// Enabled turns throttling on for UDP clients.
	Enabled bool `json:"enabled"`
	// UDPSeconds is the expiry given to UDP clients; default 60.
	UDPSeconds int `json:"udpSeconds"`
	// StreamEnabled turns throttling on for TCP and TLS clients (seed
	// "Enable register throttling for TLS").
	StreamEnabled bool `json:"streamEnabled"`
	// StreamSeconds is the expiry given to TCP/TLS clients; default 60.
	StreamSeconds int `json:"streamSeconds"`
	// MaxThresholdSeconds is the longest interval the PBX registration is
	// refreshed on; default 1800.
	MaxThresholdSeconds int `json:"maxThresholdSeconds"`
}

// Quarantine of registration rate violators.
type Quarantine struct {
	Enabled bool `json:"enabled"`
	// DurationSeconds a violating source stays blocked; default 600.
	DurationSeconds int `json:"durationSeconds"`
}

// DefaultRemoteSubscribers are the seed's values.
func DefaultRemoteSubscribers() RemoteSubscribers {
	return RemoteSubscribers{
		Enabled: true,
		RegisterThrottling: RegisterThrottling{
			Enabled: true, UDPSeconds: 60, StreamEnabled: true, StreamSeconds: 60, MaxThresholdSeconds: 1800,
		},
		MaxExpirySeconds:        2678400,
		MinIntervalSeconds:      300,
		Quarantine:              Quarantine{DurationSeconds: 600},
		InviteNoAnswerTimeoutMs: 360000,
		InviteNoReplyTimeoutMs:  3000,
	}
}

// Validate checks ranges and the relations between the timers.
func (r RemoteSubscribers) Validate() error {
	var l field.List
	t := r.RegisterThrottling
	l.Range("registerThrottling.udpSeconds", t.UDPSeconds, 10, 3600)
	l.Range("registerThrottling.streamSeconds", t.StreamSeconds, 10, 3600)
	l.Range("registerThrottling.maxThresholdSeconds", t.MaxThresholdSeconds, 60, 86400)
	if m := max(t.UDPSeconds, t.StreamSeconds); t.MaxThresholdSeconds < m {
		l.Addf("registerThrottling.maxThresholdSeconds", "%d is below the client timer %d", t.MaxThresholdSeconds, m)
	}
	l.Range("maxExpirySeconds", r.MaxExpirySeconds, 60, 1<<31-1)
	l.Range("minIntervalSeconds", r.MinIntervalSeconds, 1, 86400)
	if r.MinIntervalSeconds > r.MaxExpirySeconds {
		l.Addf("minIntervalSeconds", "%d exceeds maxExpirySeconds %d", r.MinIntervalSeconds, r.MaxExpirySeconds)
	}
	l.Range("quarantine.durationSeconds", r.Quarantine.DurationSeconds, 10, 86400)
	l.Range("inviteNoAnswerTimeoutMs", r.InviteNoAnswerTimeoutMs, 1000, 3600000)
	l.Range("inviteNoReplyTimeoutMs", r.InviteNoReplyTimeoutMs, 500, 64000)
	return l.Err()
}
