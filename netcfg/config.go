// Package netcfg holds the appliance's desired network state: its realms
// (core, access, admin), each an interface with addresses, VLAN, SIP ports
// and a media port range, and the static routes.
//
// Applying that state to the kernel through netlink is not built yet; for
// now the package defines, defaults and validates the configuration.
package netcfg

import (
	"net/netip"

	"github.com/psigate/psigate/appliance/field"
)

// Role is what a realm is for.
type Role string

const (
	RoleCore   Role = "core"   // towards the PBX, on-premises (seed 9.1 "Core Realm")
	RoleAccess Role = "access" // towards Zoom PSI clients on the Internet
	RoleAdmin  Role = "admin"  // the management LAN, where the portal is reached
)

// Config is the "network" section of the configuration.
type Config struct {
	// Realms are the appliance's network legs. Exactly one core and at least
	// one access realm; an admin realm is optional (the portal is then
	// served on the core realm).
	Realms []Realm `json:"realms"`
	// Routes are static routes, the default gateway among them
	// (destination 0.0.0.0/0).
	Routes []Route `json:"routes"`
}

// Realm is one network leg of the appliance (seed 9.1, "Core Realm
// Configuration" and "Access and Admin realm configuration").
type Realm struct {
	// Name identifies the realm elsewhere in the configuration,
	// e.g. "Main-Core-IPv4".
	Name string `json:"name"`
	// Role is core, access or admin.
	Role Role `json:"role"`
	// Interface is the kernel interface, e.g. "eth0".
	Interface string `json:"interface"`
	// VLAN tags the realm's traffic with this 802.1Q id; 0 = untagged.
	VLAN int `json:"vlan"`
	// DHCP takes the address from a DHCP server instead of Addresses.
	DHCP bool `json:"dhcp"`
	// Addresses are static addresses with prefix, e.g. "10.180.0.4/21".
	// Empty with DHCP off means the realm shares the addresses the
	// interface already has (single-arm deployment).
	Addresses []string `json:"addresses"`
	// AdvertisedAddress is the address or FQDN put into SIP and SDP when
	// the realm sits behind NAT, e.g. "sbc01.example.com"; empty = the
	// bound address.
	AdvertisedAddress string `json:"advertisedAddress"`
	// SIPPorts are the SIP listening ports per transport; 0 = off.
	SIPPorts SIPPorts `json:"sipPorts"`
	// MediaPorts is the RTP/RTCP port range of the realm.
	MediaPorts PortRange `json:"mediaPorts"`
}

// SIPPorts are per-transport SIP listening ports; 0 turns a transport off.
// The seed recommends TLS only on the access realm, on a custom port such
// as 65061 rather than 5061.
type SIPPorts struct {
	UDP  int `json:"udp"`  // e.g. 5060
	TCP  int `json:"tcp"`  // e.g. 5060
	TLS  int `json:"tls"`  // e.g. 5061
	MTLS int `json:"mtls"` // TLS with client certificate verification, e.g. 5161
}

// PortRange is an inclusive UDP port range for RTP and RTCP. Min is even
// (RTP on even ports, RTCP on the odd port above, RFC 3550 section 11).
type PortRange struct {
	Min int `json:"min"` // e.g. 20000
	Max int `json:"max"` // e.g. 29999
}

// Route is a static route.
type Route struct {
	Destination string `json:"destination"` // e.g. "0.0.0.0/0"
	Gateway     string `json:"gateway"`     // e.g. "10.180.0.1"
	Realm       string `json:"realm"`       // the realm whose interface carries it
}

// Default is a single-arm appliance on eth0 with DHCP: the core realm
// with SIP on 5060 (UDP, TCP) and 5061 (TLS) towards the PBX, and the
// access realm with TLS only on 65061, as the seed recommends.
func Default() Config {
	return Config{
		Realms: []Realm{
			{
				Name: "Main-Core-IPv4", Role: RoleCore, Interface: "eth0", DHCP: true, Addresses: []string{},
				SIPPorts:   SIPPorts{UDP: 5060, TCP: 5060, TLS: 5061},
				MediaPorts: PortRange{Min: 20000, Max: 24999},
			},
			{
				Name: "Main-Access-IPv4", Role: RoleAccess, Interface: "eth0", Addresses: []string{},
				SIPPorts:   SIPPorts{TLS: 65061},
				MediaPorts: PortRange{Min: 25000, Max: 29999},
			},
		},
		Routes: []Route{},
	}
}

// Validate checks every realm and route and their consistency.
func (c Config) Validate() error {
	var l field.List
	names := make([]string, len(c.Realms))
	roles := map[Role]int{}
	for i, r := range c.Realms {
		names[i] = r.Name
		roles[r.Role]++
		l.Merge(field.Index("realms", i), r.Validate())
	}
	l.Unique("realms", "name", names)
	if roles[RoleCore] != 1 {
		l.Addf("realms", "exactly one realm with role %q required, found %d", RoleCore, roles[RoleCore])
	}
	if roles[RoleAccess] < 1 {
		l.Addf("realms", "at least one realm with role %q required", RoleAccess)
	}
	c.checkSharedPorts(&l)
	for i, r := range c.Routes {
		p := field.Index("routes", i)
		l.Merge(p, r.validate())
		if r.Realm != "" && c.Realm(r.Realm) == nil {
			l.Addf(field.Join(p, "realm"), "no realm named %q", r.Realm)
		}
	}
	return l.Err()
}

// Realm returns the realm with the given name, or nil.
func (c Config) Realm(name string) *Realm {
	for i := range c.Realms {
		if c.Realms[i].Name == name {
			return &c.Realms[i]
		}
	}
	return nil
}

// checkSharedPorts refuses two realms on one interface and VLAN (so
// possibly one address) that listen on the same port or overlap media.
func (c Config) checkSharedPorts(l *field.List) {
	for i, a := range c.Realms {
		for j := i + 1; j < len(c.Realms); j++ {
			b := c.Realms[j]
			if a.Interface != b.Interface || a.VLAN != b.VLAN || !sharesAddress(a, b) {
				continue
			}
			p := field.Index("realms", j)
			for _, pa := range a.SIPPorts.list() {
				for _, pb := range b.SIPPorts.list() {
					if pa.port != 0 && pa.port == pb.port && pa.sameSocket(pb) {
						l.Addf(field.Join(p, "sipPorts."+pb.name), "port %d already used by realm %q (%s)", pb.port, a.Name, pa.name)
					}
				}
			}
			if a.MediaPorts != (PortRange{}) && b.MediaPorts != (PortRange{}) && a.MediaPorts.overlaps(b.MediaPorts) {
				l.Addf(field.Join(p, "mediaPorts"), "overlaps the media ports of realm %q on the same interface", a.Name)
			}
		}
	}
}

// sharesAddress reports whether two realms on one interface might bind the
// same address: when either uses the interface's addresses or DHCP, or
// their static addresses intersect.
func sharesAddress(a, b Realm) bool {
	if a.DHCP || b.DHCP || len(a.Addresses) == 0 || len(b.Addresses) == 0 {
		return true
	}
	for _, x := range a.Addresses {
		for _, y := range b.Addresses {
			px, ex := netip.ParsePrefix(x)
			py, ey := netip.ParsePrefix(y)
			if ex == nil && ey == nil && px.Addr() == py.Addr() {
				return true
			}
		}
	}
	return false
}

// Validate checks one realm on its own.
func (r Realm) Validate() error {
	var l field.List
	l.Required("name", r.Name)
	l.OneOf("role", string(r.Role), string(RoleCore), string(RoleAccess), string(RoleAdmin))
	if err := checkInterface(r.Interface); err != nil {
		l.Addf("interface", "%v", err)
	}
	l.Range("vlan", r.VLAN, 0, 4094)
	if r.DHCP && len(r.Addresses) > 0 {
		l.Addf("addresses", "static addresses and DHCP are exclusive")
	}
	for i, a := range r.Addresses {
		if _, err := netip.ParsePrefix(a); err != nil {
			l.Addf(field.Index("addresses", i), "%q is not an address with prefix length (e.g. 10.180.0.4/21)", a)
		}
	}
	if r.AdvertisedAddress != "" {
		l.Host("advertisedAddress", r.AdvertisedAddress)
	}
	l.Merge("sipPorts", r.SIPPorts.validate())
	if r.Role != RoleAdmin || r.MediaPorts != (PortRange{}) {
		l.Merge("mediaPorts", r.MediaPorts.validate())
	}
	for _, p := range r.SIPPorts.list() {
		if p.port != 0 && p.port >= r.MediaPorts.Min && p.port <= r.MediaPorts.Max {
			l.Addf("sipPorts."+p.name, "port %d lies inside the media port range %d-%d", p.port, r.MediaPorts.Min, r.MediaPorts.Max)
		}
	}
	return l.Err()
}

// checkInterface applies the kernel's rules for interface names.
func checkInterface(name string) error {
	if name == "" {
		return &field.Error{Msg: "required"}
	}
	if len(name) > 15 {
		return &field.Error{Msg: "interface names have at most 15 characters"}
	}
	for _, c := range name {
		if c == '/' || c == ':' || c <= ' ' || c > '~' {
			return &field.Error{Msg: "interface name " + name + " contains an invalid character"}
		}
	}
	return nil
}

type namedPort struct {
	name string
	port int
}

// sameSocket: UDP and the stream transports do not collide with each
// other, but TCP, TLS and MTLS all bind TCP.
func (a namedPort) sameSocket(b namedPort) bool {
	return (a.name == "udp") == (b.name == "udp")
}

func (p SIPPorts) list() []namedPort {
	return []namedPort{{"udp", p.UDP}, {"tcp", p.TCP}, {"tls", p.TLS}, {"mtls", p.MTLS}}
}

func (p SIPPorts) validate() error {
	var l field.List
	ports := p.list()
	for i, a := range ports {
		l.Port(a.name, a.port, true)
		for _, b := range ports[:i] {
			if a.port != 0 && a.port == b.port && a.sameSocket(b) {
				l.Addf(a.name, "port %d already used by %s", a.port, b.name)
			}
		}
	}
	return l.Err()
}

func (r PortRange) validate() error {
	var l field.List
	l.Range("min", r.Min, 1024, 65534)
	l.Range("max", r.Max, 1025, 65535)
	if r.Min%2 != 0 {
		l.Addf("min", "must be even (RTP uses even ports, RFC 3550 section 11)")
	}
	if r.Max-r.Min < 3 {
		l.Addf("max", "range %d-%d holds fewer than two RTP/RTCP port pairs", r.Min, r.Max)
	}
	return l.Err()
}

func (r PortRange) overlaps(o PortRange) bool {
	return r.Min <= o.Max && o.Min <= r.Max
}

func (r Route) validate() error {
	var l field.List
	if _, err := netip.ParsePrefix(r.Destination); err != nil {
		l.Addf("destination", "%q is not a prefix (e.g. 0.0.0.0/0)", r.Destination)
	}
	if _, err := netip.ParseAddr(r.Gateway); err != nil {
		l.Addf("gateway", "%q is not an IP address", r.Gateway)
	}
	l.Required("realm", r.Realm)
	return l.Err()
}
