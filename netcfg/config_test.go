package netcfg

import (
	"slices"
	"testing"

	"github.com/psigate/psigate/appliance/field"
)

// checkErr asserts err is nil when wantPath is "", else that one of its
// field paths is exactly wantPath.
func checkErr(t *testing.T, err error, wantPath string) {
	t.Helper()
	if wantPath == "" {
		if err != nil {
			t.Fatalf("Validate() = %v, want nil", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("Validate() = nil, want an error at %q", wantPath)
	}
	if paths := field.Paths(err); !slices.Contains(paths, wantPath) {
		t.Fatalf("Validate() error paths %q do not contain %q; error:\n%v", paths, wantPath, err)
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	if len(c.Realms) != 2 {
		t.Fatalf("Default has %d realms, want 2", len(c.Realms))
	}
	core, access := c.Realm("Main-Core-IPv4"), c.Realm("Main-Access-IPv4")
	if core == nil || access == nil {
		t.Fatalf("Default realms: %+v", c.Realms)
	}
	if core.Role != RoleCore || access.Role != RoleAccess {
		t.Errorf("roles = %q, %q", core.Role, access.Role)
	}
	if want := (SIPPorts{UDP: 5060, TCP: 5060, TLS: 5061}); core.SIPPorts != want {
		t.Errorf("core SIP ports = %+v, want %+v", core.SIPPorts, want)
	}
	if want := (SIPPorts{TLS: 65061}); access.SIPPorts != want {
		t.Errorf("access SIP ports = %+v, want %+v", access.SIPPorts, want)
	}
	if !core.DHCP || core.Interface != "eth0" || access.Interface != "eth0" {
		t.Errorf("core DHCP=%v iface=%q, access iface=%q", core.DHCP, core.Interface, access.Interface)
	}
	if c.Routes == nil || len(c.Routes) != 0 {
		t.Errorf("Routes = %#v, want empty non-nil", c.Routes)
	}
}

func TestRealmLookup(t *testing.T) {
	c := Default()
	r := c.Realm("Main-Access-IPv4")
	if r == nil {
		t.Fatal("Realm(Main-Access-IPv4) = nil")
	}
	r.VLAN = 7 // points into the config
	if c.Realms[1].VLAN != 7 {
		t.Error("Realm does not return a pointer into the list")
	}
	if c.Realm("nope") != nil {
		t.Error("Realm(nope) != nil")
	}
	if c.Realm("main-access-ipv4") != nil {
		t.Error("Realm lookup is case-insensitive, want exact")
	}
}

// threeArm is a valid config with separate core, access and admin legs.
func threeArm() Config {
	return Config{
		Realms: []Realm{
			{
				Name: "core", Role: RoleCore, Interface: "eth0",
				Addresses:  []string{"10.180.0.4/21"},
				SIPPorts:   SIPPorts{UDP: 5060, TCP: 5060, TLS: 5061},
				MediaPorts: PortRange{Min: 20000, Max: 29999},
			},
			{
				Name: "access", Role: RoleAccess, Interface: "eth1", VLAN: 100,
				Addresses:         []string{"192.0.2.10/24", "2001:db8::10/64"},
				AdvertisedAddress: "sbc01.example.com",
				SIPPorts:          SIPPorts{TLS: 65061, MTLS: 65161},
				MediaPorts:        PortRange{Min: 40000, Max: 49999},
			},
			{Name: "admin", Role: RoleAdmin, Interface: "eth2", DHCP: true},
		},
		Routes: []Route{
			{Destination: "0.0.0.0/0", Gateway: "192.0.2.1", Realm: "access"},
			{Destination: "10.0.0.0/8", Gateway: "10.180.0.1", Realm: "core"},
			{Destination: "::/0", Gateway: "2001:db8::1", Realm: "access"},
		},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(c *Config)
		wantPath string // "" = valid
	}{
		// Good values.
		{"three arm", func(c *Config) {}, ""},
		{"vlan 0", func(c *Config) { c.Realms[1].VLAN = 0 }, ""},
		{"vlan 4094", func(c *Config) { c.Realms[1].VLAN = 4094 }, ""},
		{"interface 15 chars", func(c *Config) { c.Realms[0].Interface = "enp0s31f6.12345" }, ""},
		{"advertised IP", func(c *Config) { c.Realms[1].AdvertisedAddress = "203.0.113.5" }, ""},
		{"all SIP ports off", func(c *Config) { c.Realms[0].SIPPorts = SIPPorts{} }, ""},
		{"udp and tcp on 5060 in one realm", func(c *Config) { c.Realms[0].SIPPorts = SIPPorts{UDP: 5060, TCP: 5060} }, ""},
		{"udp and tls on one port", func(c *Config) { c.Realms[0].SIPPorts = SIPPorts{UDP: 5061, TLS: 5061} }, ""},
		{"sip port 65535", func(c *Config) { c.Realms[1].SIPPorts.TLS = 65535 }, ""},
		{"sip port 1", func(c *Config) { c.Realms[1].SIPPorts.TLS = 1 }, ""},
		{"sip port just below media", func(c *Config) { c.Realms[0].SIPPorts.UDP = 19999 }, ""},
		{"sip port just above media", func(c *Config) { c.Realms[0].SIPPorts.UDP = 30000 }, ""},
		{"media min 1024 max 1027", func(c *Config) { c.Realms[0].MediaPorts = PortRange{Min: 1024, Max: 1027} }, ""},
		{"media max 65535", func(c *Config) { c.Realms[1].MediaPorts = PortRange{Min: 65530, Max: 65535} }, ""},
		{"admin realm with media", func(c *Config) { c.Realms[2].MediaPorts = PortRange{Min: 30000, Max: 30099} }, ""},
		{"admin realm without SIP", func(c *Config) { c.Realms[2].SIPPorts = SIPPorts{} }, ""},
		{"no admin realm", func(c *Config) { c.Realms = c.Realms[:2] }, ""},
		{"two access realms", func(c *Config) {
			c.Realms = append(c.Realms, Realm{Name: "access2", Role: RoleAccess, Interface: "eth3", DHCP: true,
				SIPPorts: SIPPorts{TLS: 5061}, MediaPorts: PortRange{Min: 20000, Max: 20099}})
		}, ""},
		{"no routes", func(c *Config) { c.Routes = nil }, ""},

		// Realm fields.
		{"name empty", func(c *Config) { c.Realms[1].Name = "" }, "realms[1].name"},
		{"name blank", func(c *Config) { c.Realms[1].Name = "  " }, "realms[1].name"},
		{"role unknown", func(c *Config) { c.Realms[2].Role = "dmz" }, "realms[2].role"},
		{"role empty", func(c *Config) { c.Realms[2].Role = "" }, "realms[2].role"},
		{"interface empty", func(c *Config) { c.Realms[0].Interface = "" }, "realms[0].interface"},
		{"interface 16 chars", func(c *Config) { c.Realms[0].Interface = "enp0s31f6.123456" }, "realms[0].interface"},
		{"interface with space", func(c *Config) { c.Realms[0].Interface = "eth 0" }, "realms[0].interface"},
		{"interface with colon", func(c *Config) { c.Realms[0].Interface = "eth0:1" }, "realms[0].interface"},
		{"interface with slash", func(c *Config) { c.Realms[0].Interface = "eth/0" }, "realms[0].interface"},
		{"interface non-ASCII", func(c *Config) { c.Realms[0].Interface = "ethé" }, "realms[0].interface"},
		{"vlan -1", func(c *Config) { c.Realms[1].VLAN = -1 }, "realms[1].vlan"},
		{"vlan 4095", func(c *Config) { c.Realms[1].VLAN = 4095 }, "realms[1].vlan"},
		{"dhcp with addresses", func(c *Config) { c.Realms[0].DHCP = true }, "realms[0].addresses"},
		{"address without prefix", func(c *Config) { c.Realms[1].Addresses[1] = "2001:db8::10" }, "realms[1].addresses[1]"},
		{"address garbage", func(c *Config) { c.Realms[0].Addresses[0] = "10.180.0/21" }, "realms[0].addresses[0]"},
		{"advertised bad", func(c *Config) { c.Realms[1].AdvertisedAddress = "sbc_01.example.com" }, "realms[1].advertisedAddress"},
		{"udp 65536", func(c *Config) { c.Realms[0].SIPPorts.UDP = 65536 }, "realms[0].sipPorts.udp"},
		{"tcp -1", func(c *Config) { c.Realms[0].SIPPorts.TCP = -1 }, "realms[0].sipPorts.tcp"},
		{"tls 70000", func(c *Config) { c.Realms[1].SIPPorts.TLS = 70000 }, "realms[1].sipPorts.tls"},
		{"mtls 65536", func(c *Config) { c.Realms[1].SIPPorts.MTLS = 65536 }, "realms[1].sipPorts.mtls"},
		{"tcp and tls same port", func(c *Config) { c.Realms[0].SIPPorts.TLS = 5060 }, "realms[0].sipPorts.tls"},
		{"tls and mtls same port", func(c *Config) { c.Realms[1].SIPPorts.MTLS = 65061 }, "realms[1].sipPorts.mtls"},
		{"media min odd", func(c *Config) { c.Realms[0].MediaPorts.Min = 20001 }, "realms[0].mediaPorts.min"},
		{"media min 1022", func(c *Config) { c.Realms[0].MediaPorts.Min = 1022 }, "realms[0].mediaPorts.min"},
		{"media min 0 on access", func(c *Config) { c.Realms[1].MediaPorts = PortRange{} }, "realms[1].mediaPorts.min"},
		{"media max 65536", func(c *Config) { c.Realms[1].MediaPorts.Max = 65536 }, "realms[1].mediaPorts.max"},
		{"media one pair", func(c *Config) { c.Realms[0].MediaPorts = PortRange{Min: 20000, Max: 20002} }, "realms[0].mediaPorts.max"},
		{"media max below min", func(c *Config) { c.Realms[0].MediaPorts = PortRange{Min: 30000, Max: 20000} }, "realms[0].mediaPorts.max"},
		{"media min 65534", func(c *Config) { c.Realms[0].MediaPorts = PortRange{Min: 65534, Max: 65535} }, "realms[0].mediaPorts.max"},
		{"admin media odd", func(c *Config) { c.Realms[2].MediaPorts = PortRange{Min: 30001, Max: 30099} }, "realms[2].mediaPorts.min"},
		{"udp inside media", func(c *Config) { c.Realms[0].SIPPorts.UDP = 25000 }, "realms[0].sipPorts.udp"},
		{"tcp at media min", func(c *Config) { c.Realms[0].SIPPorts.TCP = 20000 }, "realms[0].sipPorts.tcp"},
		{"tls at media max", func(c *Config) { c.Realms[1].SIPPorts.TLS = 49999 }, "realms[1].sipPorts.tls"},
		{"mtls inside media", func(c *Config) { c.Realms[1].SIPPorts.MTLS = 45000 }, "realms[1].sipPorts.mtls"},

		// Config level.
		{"duplicate realm name", func(c *Config) { c.Realms[2].Name = "CORE" }, "realms[2].name"},
		{"no core", func(c *Config) { c.Realms[0].Role = RoleAdmin }, "realms"},
		{"two cores", func(c *Config) { c.Realms[2].Role = RoleCore }, "realms"},
		{"no access", func(c *Config) { c.Realms[1].Role = RoleAdmin }, "realms"},
		{"no realms", func(c *Config) { c.Realms = nil }, "realms"},

		// Routes.
		{"route destination", func(c *Config) { c.Routes[1].Destination = "10.0.0.0" }, "routes[1].destination"},
		{"route destination empty", func(c *Config) { c.Routes[0].Destination = "" }, "routes[0].destination"},
		{"route gateway", func(c *Config) { c.Routes[0].Gateway = "gw.example.com" }, "routes[0].gateway"},
		{"route gateway prefix", func(c *Config) { c.Routes[0].Gateway = "192.0.2.1/24" }, "routes[0].gateway"},
		{"route realm empty", func(c *Config) { c.Routes[2].Realm = "" }, "routes[2].realm"},
		{"route realm unknown", func(c *Config) { c.Routes[2].Realm = "dmz" }, "routes[2].realm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := threeArm()
			tt.mutate(&c)
			checkErr(t, c.Validate(), tt.wantPath)
		})
	}
}

// TestSharedInterface covers realms sharing one interface (single-arm
// deployments): same port on the same socket family refused, UDP and TCP
// on one port allowed, separate VLANs or addresses allowed.
func TestSharedInterface(t *testing.T) {
	base := func() Config {
		return Config{Realms: []Realm{
			{Name: "core", Role: RoleCore, Interface: "eth0", DHCP: true,
				SIPPorts: SIPPorts{UDP: 5060}, MediaPorts: PortRange{Min: 20000, Max: 24999}},
			{Name: "access", Role: RoleAccess, Interface: "eth0",
				SIPPorts: SIPPorts{TLS: 65061}, MediaPorts: PortRange{Min: 25000, Max: 29999}},
		}}
	}
	tests := []struct {
		name     string
		mutate   func(c *Config)
		wantPath string
	}{
		{"distinct ports", func(c *Config) {}, ""},
		{"udp 5060 and tcp 5060", func(c *Config) { c.Realms[1].SIPPorts = SIPPorts{TCP: 5060} }, ""},
		{"udp 5060 and tls 5060", func(c *Config) { c.Realms[1].SIPPorts = SIPPorts{TLS: 5060} }, ""},
		{"same udp port", func(c *Config) { c.Realms[1].SIPPorts = SIPPorts{UDP: 5060} }, "realms[1].sipPorts.udp"},
		{"tcp and tcp", func(c *Config) {
			c.Realms[0].SIPPorts = SIPPorts{TCP: 5060}
			c.Realms[1].SIPPorts = SIPPorts{TCP: 5060}
		}, "realms[1].sipPorts.tcp"},
		{"tcp and tls", func(c *Config) {
			c.Realms[0].SIPPorts = SIPPorts{TCP: 5060}
			c.Realms[1].SIPPorts = SIPPorts{TLS: 5060}
		}, "realms[1].sipPorts.tls"},
		{"tls and mtls", func(c *Config) {
			c.Realms[0].SIPPorts = SIPPorts{TLS: 5061}
			c.Realms[1].SIPPorts = SIPPorts{MTLS: 5061}
		}, "realms[1].sipPorts.mtls"},
		{"media overlap", func(c *Config) { c.Realms[1].MediaPorts = PortRange{Min: 24998, Max: 29999} }, "realms[1].mediaPorts"},
		{"media adjacent", func(c *Config) { c.Realms[1].MediaPorts = PortRange{Min: 25000, Max: 25003} }, ""},
		{"same port other vlan", func(c *Config) {
			c.Realms[1].VLAN = 10
			c.Realms[1].SIPPorts = SIPPorts{UDP: 5060}
			c.Realms[1].MediaPorts = c.Realms[0].MediaPorts
		}, ""},
		{"same port other interface", func(c *Config) {
			c.Realms[1].Interface = "eth1"
			c.Realms[1].SIPPorts = SIPPorts{UDP: 5060}
		}, ""},
		{"same port distinct static addresses", func(c *Config) {
			c.Realms[0].DHCP = false
			c.Realms[0].Addresses = []string{"10.0.0.4/24"}
			c.Realms[1].Addresses = []string{"10.0.0.5/24"}
			c.Realms[1].SIPPorts = SIPPorts{UDP: 5060}
			c.Realms[1].MediaPorts = c.Realms[0].MediaPorts
		}, ""},
		{"same port same static address", func(c *Config) {
			c.Realms[0].DHCP = false
			c.Realms[0].Addresses = []string{"10.0.0.4/24"}
			c.Realms[1].Addresses = []string{"10.0.0.9/24", "10.0.0.4/32"}
			c.Realms[1].SIPPorts = SIPPorts{UDP: 5060}
		}, "realms[1].sipPorts.udp"},
		{"same port, one realm without addresses", func(c *Config) {
			c.Realms[0].DHCP = false
			c.Realms[0].Addresses = []string{"10.0.0.4/24"}
			c.Realms[1].SIPPorts = SIPPorts{UDP: 5060}
		}, "realms[1].sipPorts.udp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.mutate(&c)
			checkErr(t, c.Validate(), tt.wantPath)
		})
	}
}

// TestTwoAdminRealmsWithoutMedia: admin realms may leave mediaPorts unset
// (0-0, "no media"). Two such realms on one interface have no media ports
// at all, so they cannot overlap.
func TestTwoAdminRealmsWithoutMedia(t *testing.T) {
	c := Default()
	c.Realms = append(c.Realms,
		Realm{Name: "admin-a", Role: RoleAdmin, Interface: "eth1"},
		Realm{Name: "admin-b", Role: RoleAdmin, Interface: "eth1"},
	)
	checkErr(t, c.Validate(), "")
}
