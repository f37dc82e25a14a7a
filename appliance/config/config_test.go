package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psigate/psigate/appliance/field"
	"github.com/psigate/psigate/cloudlinkd"
	"github.com/psigate/psigate/netcfg"
	"github.com/psigate/psigate/sbc"
	"github.com/psigate/psigate/sbc/media"
)

func checkErr(t *testing.T, err error, wantPath string) {
	t.Helper()
	if wantPath == "" {
		if err != nil {
			t.Fatalf("err = %v, want nil", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("err = nil, want an error at %q", wantPath)
	}
	if paths := field.Paths(err); !slices.Contains(paths, wantPath) {
		t.Fatalf("error paths %q do not contain %q; error:\n%v", paths, wantPath, err)
	}
}

// newPair makes a self-signed ECDSA certificate and its key, PEM.
func newPair(t *testing.T, cn string) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}))
}

const proxyPassword = "pr0xy-S3CRET-pw"

// full is a valid configuration with every section filled in, two
// certificate profiles with real keys and a proxy password.
func full(t *testing.T) Config {
	t.Helper()
	c := Default()
	c.System.Domain = "example.com"
	c.Network.Routes = []netcfg.Route{{Destination: "0.0.0.0/0", Gateway: "10.180.0.1", Realm: "Main-Core-IPv4"}}
	c.Network.Realms = append(c.Network.Realms, netcfg.Realm{Name: "Admin", Role: netcfg.RoleAdmin, Interface: "eth1", DHCP: true})
	c.SBC.SIPServer.NodeGroups = []sbc.NodeGroup{{Name: "OS4K", Nodes: []sbc.Node{
		{Name: "node1", Priority: 1, Address: "10.180.0.10", Transport: sbc.TransportTCP, Port: 5060},
	}}}
	c.SBC.MediaProfiles = append(c.SBC.MediaProfiles, media.Profile{
		Name: "RedSky", Protocol: media.ProtocolRTP, RTCPMode: media.RTCPBypass,
		Codecs: []media.Codec{{Name: "G711U", Priority: 1}}, TelephoneEventPayloadType: 101,
	})
	cert1, key1 := newPair(t, "sbc01.example.com")
	cert2, key2 := newPair(t, "pbx.example.com")
	c.SBC.Security.CertificateProfiles = []sbc.CertificateProfile{
		{Name: "Zoom BYOT", CertificatePEM: cert1, KeyPEM: key1, ClientVerification: "none", MinTLSVersion: "1.2"},
		{Name: "PBX", CertificatePEM: cert2, KeyPEM: key2, CAPEM: cert1, ClientVerification: "required", MinTLSVersion: "1.3"},
	}
	c.SBC.Security.SIPTLSProfile = "Zoom BYOT"
	c.SBC.Emergency.RemoteEndpoint = &sbc.RemoteEndpoint{
		Name: "RedSky", Address: "e911.example.net", Port: 5061, Transport: sbc.TransportTLS,
		MediaProfile: "RedSky", AccessRealm: "Main-Access-IPv4", CoreRealm: "Main-Core-IPv4",
	}
	c.CloudLink = cloudlinkd.Config{
		Enabled: true,
		Proxy:   cloudlinkd.Proxy{URL: "http://proxy.example.com:3128", Username: "psigate", Password: proxyPassword},
		DNS:     []string{"10.180.0.2"},
	}
	return c
}

func TestDefault(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	if c.SchemaVersion != SchemaVersion || SchemaVersion != 1 {
		t.Errorf("SchemaVersion = %d (const %d), want 1", c.SchemaVersion, SchemaVersion)
	}
	if c.System != (System{Hostname: "psigate"}) {
		t.Errorf("System = %+v", c.System)
	}
	if !reflect.DeepEqual(c.Network, netcfg.Default()) || !reflect.DeepEqual(c.SBC, sbc.Default()) || !reflect.DeepEqual(c.CloudLink, cloudlinkd.Default()) {
		t.Error("Default does not compose the sections' defaults")
	}
	if err := full(t).Validate(); err != nil {
		t.Fatalf("full(t).Validate() = %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(c *Config)
		wantPath string
	}{
		{"full", func(c *Config) {}, ""},
		{"no emergency endpoint", func(c *Config) { c.SBC.Emergency.RemoteEndpoint = nil }, ""},
		{"hostname 63", func(c *Config) { c.System.Hostname = strings.Repeat("h", 63) }, ""},
		{"domain empty", func(c *Config) { c.System.Domain = "" }, ""},
		{"domain trailing dot", func(c *Config) { c.System.Domain = "example.com." }, ""},

		{"schema 0", func(c *Config) { c.SchemaVersion = 0 }, "schemaVersion"},
		{"schema 2", func(c *Config) { c.SchemaVersion = 2 }, "schemaVersion"},
		{"hostname empty", func(c *Config) { c.System.Hostname = "" }, "system.hostname"},
		{"hostname fqdn", func(c *Config) { c.System.Hostname = "psigate.example.com" }, "system.hostname"},
		{"hostname hyphen", func(c *Config) { c.System.Hostname = "-psigate" }, "system.hostname"},
		{"hostname 64", func(c *Config) { c.System.Hostname = strings.Repeat("h", 64) }, "system.hostname"},
		{"domain bad", func(c *Config) { c.System.Domain = "exa_mple.com" }, "system.domain"},
		{"domain double dot", func(c *Config) { c.System.Domain = "example..com" }, "system.domain"},

		// Section errors keep their paths under the section name.
		{"network", func(c *Config) { c.Network.Realms[1].SIPPorts.TLS = 70000 }, "network.realms[1].sipPorts.tls"},
		{"network core count", func(c *Config) { c.Network.Realms[2].Role = netcfg.RoleCore }, "network.realms"},
		{"network route", func(c *Config) { c.Network.Routes[0].Realm = "nope" }, "network.routes[0].realm"},
		{"sbc media profile", func(c *Config) { c.SBC.MediaProfiles[1].TelephoneEventPayloadType = 95 }, "sbc.mediaProfiles[1].telephoneEventPayloadType"},
		{"sbc codec", func(c *Config) { c.SBC.MediaProfiles[1].Codecs[2].Name = "G7299" }, "sbc.mediaProfiles[1].codecs[2].name"},
		{"sbc key pair", func(c *Config) {
			c.SBC.Security.CertificateProfiles[0].KeyPEM = c.SBC.Security.CertificateProfiles[1].KeyPEM
		}, "sbc.security.certificateProfiles[0].keyPEM"},
		{"sbc remote subscribers", func(c *Config) { c.SBC.RemoteSubscribers.MinIntervalSeconds = 0 }, "sbc.remoteSubscribers.minIntervalSeconds"},
		{"cloudLink proxy", func(c *Config) { c.CloudLink.Proxy.URL = "ftp://proxy" }, "cloudLink.proxy.url"},
		{"cloudLink dns", func(c *Config) { c.CloudLink.DNS = []string{"dns.example.com"} }, "cloudLink.dns[0]"},

		// Cross-section: the emergency endpoint's realms.
		{"emergency access realm unknown", func(c *Config) { c.SBC.Emergency.RemoteEndpoint.AccessRealm = "Access2" }, "sbc.emergency.remoteEndpoint.accessRealm"},
		{"emergency access realm is core", func(c *Config) { c.SBC.Emergency.RemoteEndpoint.AccessRealm = "Main-Core-IPv4" }, "sbc.emergency.remoteEndpoint.accessRealm"},
		{"emergency access realm is admin", func(c *Config) { c.SBC.Emergency.RemoteEndpoint.AccessRealm = "Admin" }, "sbc.emergency.remoteEndpoint.accessRealm"},
		{"emergency access realm wrong case", func(c *Config) { c.SBC.Emergency.RemoteEndpoint.AccessRealm = "main-access-ipv4" }, "sbc.emergency.remoteEndpoint.accessRealm"},
		{"emergency access realm empty", func(c *Config) { c.SBC.Emergency.RemoteEndpoint.AccessRealm = "" }, "sbc.emergency.remoteEndpoint.accessRealm"},
		{"emergency core realm unknown", func(c *Config) { c.SBC.Emergency.RemoteEndpoint.CoreRealm = "Core2" }, "sbc.emergency.remoteEndpoint.coreRealm"},
		{"emergency core realm is access", func(c *Config) { c.SBC.Emergency.RemoteEndpoint.CoreRealm = "Main-Access-IPv4" }, "sbc.emergency.remoteEndpoint.coreRealm"},
		{"emergency core realm empty", func(c *Config) { c.SBC.Emergency.RemoteEndpoint.CoreRealm = "" }, "sbc.emergency.remoteEndpoint.coreRealm"},
		{"access realm renamed", func(c *Config) { c.Network.Realms[1].Name = "Access" }, "sbc.emergency.remoteEndpoint.accessRealm"},
		{"emergency media profile", func(c *Config) { c.SBC.Emergency.RemoteEndpoint.MediaProfile = "E911" }, "sbc.emergency.remoteEndpoint.mediaProfile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := full(t)
			tt.mutate(&c)
			checkErr(t, c.Validate(), tt.wantPath)
		})
	}
}

func TestValidateReportsEverySection(t *testing.T) {
	c := full(t)
	c.SchemaVersion = 9
	c.System.Hostname = ""
	c.Network.Realms[0].VLAN = 5000
	c.SBC.CoreMediaProfile = "nope"
	c.CloudLink.DNS = []string{"x"}
	c.SBC.Emergency.RemoteEndpoint.CoreRealm = "Admin"
	want := []string{
		"schemaVersion", "system.hostname", "network.realms[0].vlan", "sbc.coreMediaProfile",
		"cloudLink.dns[0]", "sbc.emergency.remoteEndpoint.coreRealm",
	}
	err := c.Validate()
	if got := field.Paths(err); !slices.Equal(got, want) {
		t.Errorf("paths = %q, want %q\n%v", got, want, err)
	}
}

func TestParseRoundTrip(t *testing.T) {
	for name, c := range map[string]Config{"default": Default(), "full": full(t)} {
		t.Run(name, func(t *testing.T) {
			data := Marshal(c)
			got, err := Parse(data)
			if err != nil {
				t.Fatalf("Parse(Marshal(c)) = %v", err)
			}
			if !reflect.DeepEqual(got, c) {
				t.Fatalf("round trip differs:\n got %+v\nwant %+v\ndiff %v", got, c, Diff(c, got))
			}
			if d := Diff(c, got); len(d) != 0 {
				t.Errorf("Diff after round trip = %v", d)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("parsed config does not validate: %v", err)
			}
			if !json.Valid(data) || !strings.HasPrefix(string(data), "{\n  \"schemaVersion\": 1,\n") {
				t.Errorf("Marshal output not indented JSON starting with schemaVersion:\n%.80s", data)
			}
		})
	}
	// Marshal includes secrets (it is the stored form).
	c := full(t)
	data := string(Marshal(c))
	if !strings.Contains(data, proxyPassword) || !strings.Contains(data, strings.Split(c.SBC.Security.CertificateProfiles[0].KeyPEM, "\n")[1]) {
		t.Error("Marshal dropped a secret")
	}
	// Trailing whitespace is fine.
	if _, err := Parse(append(Marshal(Default()), " \n\t\n"...)); err != nil {
		t.Errorf("Parse with trailing whitespace = %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	valid := string(Marshal(Default()))
	tests := []struct {
		name     string
		data     string
		wantPath string // "" = error without field path
		wantMsg  string // substring of the error
	}{
		{"empty", "", "", "invalid configuration JSON"},
		{"truncated", valid[:len(valid)/2], "", ""},
		{"syntax", `{"schemaVersion": 1,}`, "", "invalid JSON at byte"},
		{"not an object", `[]`, "", ""},
		{"string", `"config"`, "", ""},
		{"unknown top-level field", `{"schemaVersion": 1, "license": "x"}`, "", `unknown field "license"`},
		{"unknown nested field", `{"sbc": {"sipServer": {"bogus": true}}}`, "", `unknown field "bogus"`},
		{"unknown field in list element", `{"network": {"realms": [{"name": "a", "mtu": 1500}]}}`, "", `unknown field "mtu"`},
		{"trailing object", valid + `{}`, "", "data after the top-level object"},
		{"trailing garbage", valid + `x`, "", ""},
		{"trailing bracket", valid + `]`, "", ""},
		{"trailing number", `{} 1`, "", "data after the top-level object"},
		{"two objects", `{}{}`, "", "data after the top-level object"},
		{"schemaVersion string", `{"schemaVersion": "1"}`, "schemaVersion", "cannot use JSON string as int"},
		{"schemaVersion float", `{"schemaVersion": 1.5}`, "schemaVersion", ""},
		{"schemaVersion huge", `{"schemaVersion": 1e100}`, "schemaVersion", ""},
		{"hostname number", `{"system": {"hostname": 5}}`, "system.hostname", "cannot use JSON number as string"},
		{"system array", `{"system": []}`, "system", ""},
		{"coreMediaProfile bool", `{"sbc": {"coreMediaProfile": true}}`, "sbc.coreMediaProfile", ""},
		{"nested int", `{"sbc": {"remoteSubscribers": {"maxExpirySeconds": "31d"}}}`, "sbc.remoteSubscribers.maxExpirySeconds", ""},
		{"realms object", `{"network": {"realms": {}}}`, "network.realms", ""},
		{"cloudLink enabled string", `{"cloudLink": {"enabled": "yes"}}`, "cloudLink.enabled", ""},
		{"emergency endpoint string", `{"sbc": {"emergency": {"remoteEndpoint": "RedSky"}}}`, "sbc.emergency.remoteEndpoint", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.data))
			if err == nil {
				t.Fatalf("Parse(%.60q) = nil error", tt.data)
			}
			if !reflect.DeepEqual(c, Config{}) {
				t.Errorf("Parse returned a non-zero Config with its error: %+v", c)
			}
			if tt.wantPath != "" {
				checkErr(t, err, tt.wantPath)
			}
			if tt.wantMsg != "" && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
		})
	}
	// A wrong type inside a list element is reported at a field error that
	// names the field (the standard decoder does not know the index).
	_, err := Parse([]byte(`{"network": {"realms": [{"sipPorts": {"udp": "5060"}}]}}`))
	var fe *field.Error
	if !errors.As(err, &fe) || !strings.HasPrefix(fe.Path, "network.realms") || !strings.HasSuffix(fe.Path, "sipPorts.udp") {
		t.Errorf("wrong type in a list element: err = %v, want a field error under network.realms ending in sipPorts.udp", err)
	}
}

// --- secrets -------------------------------------------------------------

// populate makes every optional part of v present (nil pointers
// allocated, empty lists of structs given one element) and sets every
// `secret:"true"` string to mark+<n>. It returns the paths of the secrets.
func populate(v reflect.Value, path, mark string, paths *[]string) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		populate(v.Elem(), path, mark, paths)
	case reflect.Slice:
		if v.Len() == 0 {
			k := v.Type().Elem().Kind()
			if k == reflect.Struct || k == reflect.Pointer {
				v.Set(reflect.Append(v, reflect.New(v.Type().Elem()).Elem()))
			}
		}
		for i := 0; i < v.Len(); i++ {
			populate(v.Index(i), path+"["+strconv.Itoa(i)+"]", mark, paths)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			p := join(path, jsonName(f))
			if f.Tag.Get("secret") == "true" {
				*paths = append(*paths, p)
				v.Field(i).SetString(mark + strconv.Itoa(len(*paths)))
				continue
			}
			populate(v.Field(i), p, mark, paths)
		}
	}
}

// secretValues lists path=value of every secret string in v.
func secretValues(v reflect.Value, path string) []string {
	var out []string
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			out = secretValues(v.Elem(), path)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			out = append(out, secretValues(v.Index(i), path+"["+strconv.Itoa(i)+"]")...)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			p := join(path, jsonName(f))
			if f.Tag.Get("secret") == "true" {
				out = append(out, p+"="+v.Field(i).String())
				continue
			}
			out = append(out, secretValues(v.Field(i), p)...)
		}
	}
	return out
}

func TestSecretFields(t *testing.T) {
	c := full(t)
	var paths []string
	populate(reflect.ValueOf(&c).Elem(), "", "SECRET-", &paths)
	for _, want := range []string{"sbc.security.certificateProfiles[0].keyPEM", "sbc.security.certificateProfiles[1].keyPEM", "cloudLink.proxy.password"} {
		if !slices.Contains(paths, want) {
			t.Errorf("secret field %s not tagged secret:\"true\" (found %q)", want, paths)
		}
	}
}

func TestRedact(t *testing.T) {
	c := full(t)
	orig := Clone(c)
	keyBody := strings.Split(c.SBC.Security.CertificateProfiles[0].KeyPEM, "\n")[1]

	r := Redact(c)
	for i, p := range r.SBC.Security.CertificateProfiles {
		if p.KeyPEM != "" {
			t.Errorf("certificateProfiles[%d].keyPEM not redacted", i)
		}
		if p.CertificatePEM != c.SBC.Security.CertificateProfiles[i].CertificatePEM || p.Name != c.SBC.Security.CertificateProfiles[i].Name {
			t.Errorf("certificateProfiles[%d]: non-secret fields changed", i)
		}
	}
	if r.CloudLink.Proxy.Password != "" {
		t.Error("cloudLink.proxy.password not redacted")
	}
	if r.CloudLink.Proxy.Username != "psigate" || r.CloudLink.Proxy.URL != c.CloudLink.Proxy.URL {
		t.Errorf("proxy non-secret fields changed: %+v", r.CloudLink.Proxy)
	}
	out := string(Marshal(r))
	if strings.Contains(out, proxyPassword) || strings.Contains(out, keyBody) {
		t.Error("redacted JSON still holds a secret")
	}
	// The original is untouched.
	if !reflect.DeepEqual(c, orig) {
		t.Error("Redact modified its argument")
	}
	// Only secrets differ.
	for _, ch := range Diff(c, r) {
		if !strings.HasSuffix(ch.Path, ".keyPEM") && ch.Path != "cloudLink.proxy.password" {
			t.Errorf("Redact changed non-secret %s", ch)
		}
	}
	if n := len(Diff(c, r)); n != 3 {
		t.Errorf("Diff(c, Redact(c)) has %d changes, want 3", n)
	}
}

// TestRedactEverySecret fills every secret field reachable in the schema
// and checks that none survives Redact.
func TestRedactEverySecret(t *testing.T) {
	c := full(t)
	var paths []string
	populate(reflect.ValueOf(&c).Elem(), "", "SECRET-", &paths)
	if len(paths) < 3 {
		t.Fatalf("found %d secrets: %q", len(paths), paths)
	}
	r := Redact(c)
	for _, kv := range secretValues(reflect.ValueOf(r), "") {
		if !strings.HasSuffix(kv, "=") {
			t.Errorf("not redacted: %s", kv)
		}
	}
	if s := string(Marshal(r)); strings.Contains(s, "SECRET-") {
		t.Errorf("redacted JSON holds a secret")
	}
	for _, kv := range secretValues(reflect.ValueOf(c), "") {
		if !strings.Contains(kv, "=SECRET-") {
			t.Errorf("Redact modified the original: %s", kv)
		}
	}
}

func TestKeepSecrets(t *testing.T) {
	prev := full(t)
	keyZoom := prev.SBC.Security.CertificateProfiles[0].KeyPEM
	keyPBX := prev.SBC.Security.CertificateProfiles[1].KeyPEM

	t.Run("unchanged", func(t *testing.T) {
		dst := Redact(prev)
		KeepSecrets(&dst, prev)
		if !reflect.DeepEqual(dst, prev) {
			t.Errorf("KeepSecrets(Redact(c), c) != c: %v", Diff(prev, dst))
		}
	})
	t.Run("reordered", func(t *testing.T) {
		dst := Redact(prev)
		ps := dst.SBC.Security.CertificateProfiles
		ps[0], ps[1] = ps[1], ps[0]
		KeepSecrets(&dst, prev)
		if got := dst.SBC.Security.CertificateProfiles; got[0].Name != "PBX" || got[0].KeyPEM != keyPBX || got[1].Name != "Zoom BYOT" || got[1].KeyPEM != keyZoom {
			t.Errorf("keys not matched by name after reordering")
		}
		if err := dst.Validate(); err != nil {
			t.Errorf("restored config does not validate: %v", err)
		}
	})
	t.Run("inserted before", func(t *testing.T) {
		dst := Redact(prev)
		cert, key := newPair(t, "new.example.com")
		dst.SBC.Security.CertificateProfiles = append([]sbc.CertificateProfile{
			{Name: "New", CertificatePEM: cert, KeyPEM: key, ClientVerification: "none", MinTLSVersion: "1.2"},
		}, dst.SBC.Security.CertificateProfiles...)
		KeepSecrets(&dst, prev)
		got := dst.SBC.Security.CertificateProfiles
		if got[0].KeyPEM != key || got[1].KeyPEM != keyZoom || got[2].KeyPEM != keyPBX {
			t.Error("keys wrong after inserting a profile")
		}
	})
	t.Run("new profile without key stays empty", func(t *testing.T) {
		dst := Redact(prev)
		dst.SBC.Security.CertificateProfiles = append(dst.SBC.Security.CertificateProfiles, sbc.CertificateProfile{Name: "Fresh"})
		KeepSecrets(&dst, prev)
		if k := dst.SBC.Security.CertificateProfiles[2].KeyPEM; k != "" {
			t.Errorf("new profile got a key from another profile: %.30q", k)
		}
	})
	t.Run("renamed profile loses key", func(t *testing.T) {
		dst := Redact(prev)
		dst.SBC.Security.CertificateProfiles[1].Name = "PBX2"
		KeepSecrets(&dst, prev)
		if dst.SBC.Security.CertificateProfiles[1].KeyPEM != "" {
			t.Error("renamed profile got a key")
		}
		if dst.SBC.Security.CertificateProfiles[0].KeyPEM != keyZoom {
			t.Error("unchanged profile lost its key")
		}
	})
	t.Run("new values win", func(t *testing.T) {
		dst := Redact(prev)
		dst.SBC.Security.CertificateProfiles[0].KeyPEM = "new key"
		dst.CloudLink.Proxy.Password = "new password"
		KeepSecrets(&dst, prev)
		if dst.SBC.Security.CertificateProfiles[0].KeyPEM != "new key" || dst.CloudLink.Proxy.Password != "new password" {
			t.Error("KeepSecrets overwrote a new secret")
		}
		if dst.SBC.Security.CertificateProfiles[1].KeyPEM != keyPBX {
			t.Error("untouched secret not restored")
		}
	})
	t.Run("proxy password", func(t *testing.T) {
		dst := Redact(prev)
		dst.CloudLink.Proxy.URL = "http://proxy2.example.com:8080"
		KeepSecrets(&dst, prev)
		if dst.CloudLink.Proxy.Password != proxyPassword {
			t.Errorf("proxy password = %q, want restored", dst.CloudLink.Proxy.Password)
		}
	})
	t.Run("prev lacks parts", func(t *testing.T) {
		dst := Redact(prev)
		KeepSecrets(&dst, Default()) // no profiles, nil endpoint: nothing to take, no panic
		for _, kv := range secretValues(reflect.ValueOf(dst), "") {
			if !strings.HasSuffix(kv, "=") {
				t.Errorf("secret from nowhere: %s", kv)
			}
		}
	})
	t.Run("every secret", func(t *testing.T) {
		c := full(t)
		var paths []string
		populate(reflect.ValueOf(&c).Elem(), "", "SECRET-", &paths)
		dst := Redact(c)
		KeepSecrets(&dst, c)
		if !reflect.DeepEqual(dst, c) {
			t.Errorf("not all secrets restored: %v", Diff(c, dst))
		}
	})
}

// --- diff ----------------------------------------------------------------

func paths(cs []Change) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Path
	}
	return out
}

func TestDiffEqual(t *testing.T) {
	if d := Diff(Default(), Default()); len(d) != 0 {
		t.Errorf("Diff(Default, Default) = %v", d)
	}
	c := full(t)
	if d := Diff(c, Clone(c)); len(d) != 0 {
		t.Errorf("Diff(c, Clone(c)) = %v", d)
	}
	// nil and empty lists encode differently but hold the same.
	a, b := Default(), Default()
	b.Network.Routes = nil
	if d := Diff(a, b); len(d) != 0 {
		t.Errorf("Diff(empty vs nil list) = %v", d)
	}
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []Change
	}{
		{"leaf in named element", func(c *Config) { c.SBC.MediaProfiles[1].RTCPMode = media.RTCPTerminate }, []Change{
			{Path: `sbc.mediaProfiles["Zoom"].rtcpMode`, Old: `"bypass"`, New: `"terminate"`},
		}},
		{"leaf in realm", func(c *Config) { c.Network.Realms[0].SIPPorts.UDP = 5070 }, []Change{
			{Path: `network.realms["Main-Core-IPv4"].sipPorts.udp`, Old: `5060`, New: `5070`},
		}},
		{"bool", func(c *Config) { c.CloudLink.Enabled = false }, []Change{
			{Path: `cloudLink.enabled`, Old: `true`, New: `false`},
		}},
		{"nested named list", func(c *Config) { c.SBC.MediaProfiles[1].Codecs[3].PacketizationMs = 20 }, []Change{
			{Path: `sbc.mediaProfiles["Zoom"].codecs["G729"].packetizationMs`, Old: `0`, New: `20`},
		}},
		{"element removed", func(c *Config) { c.SBC.MediaProfiles[1].Codecs = c.SBC.MediaProfiles[1].Codecs[:3] }, []Change{
			{Path: `sbc.mediaProfiles["Zoom"].codecs["G729"]`, Old: `{"name":"G729","priority":4,"packetizationMs":0}`},
		}},
		{"element inserted first", func(c *Config) {
			c.SBC.MediaProfiles[1].Codecs = append([]media.Codec{{Name: "OPUS", Priority: 5}}, c.SBC.MediaProfiles[1].Codecs...)
		}, []Change{
			{Path: `sbc.mediaProfiles["Zoom"].codecs["OPUS"]`, New: `{"name":"OPUS","priority":5,"packetizationMs":0}`},
		}},
		{"elements reordered", func(c *Config) {
			ps := c.SBC.MediaProfiles
			ps[0], ps[2] = ps[2], ps[0]
		}, nil},
		{"positional list changed", func(c *Config) { c.SBC.Emergency.Numbers[1] = "934" }, []Change{
			{Path: `sbc.emergency.numbers[1]`, Old: `"933"`, New: `"934"`},
		}},
		{"positional list appended", func(c *Config) { c.SBC.Emergency.Numbers = append(c.SBC.Emergency.Numbers, "112") }, []Change{
			{Path: `sbc.emergency.numbers[2]`, New: `"112"`},
		}},
		{"unnamed struct list", func(c *Config) { c.SBC.UserAgentProfiles[0].MediaProfile = "default" }, []Change{
			{Path: `sbc.userAgentProfiles[0].mediaProfile`, Old: `"Zoom"`, New: `"default"`},
		}},
		{"pointer removed", func(c *Config) { c.SBC.Emergency.RemoteEndpoint = nil }, []Change{
			{Path: `sbc.emergency.remoteEndpoint`, Old: `{"name":"RedSky","address":"e911.example.net","port":5061,"transport":"tls","mediaProfile":"RedSky","accessRealm":"Main-Access-IPv4","coreRealm":"Main-Core-IPv4","privacyFlags":false}`},
		}},
		{"leaf behind pointer", func(c *Config) { c.SBC.Emergency.RemoteEndpoint.Port = 5062 }, []Change{
			{Path: `sbc.emergency.remoteEndpoint.port`, Old: `5061`, New: `5062`},
		}},
		{"duplicate names match by position", func(c *Config) { c.SBC.MediaProfiles[2].Name = "Zoom" }, []Change{
			{Path: `sbc.mediaProfiles[2].name`, Old: `"RedSky"`, New: `"Zoom"`},
		}},
		{"schema order", func(c *Config) {
			c.CloudLink.DNS = nil
			c.System.Hostname = "sbc01"
			c.SBC.CoreMediaProfile = "Zoom"
			c.Network.Routes[0].Gateway = "10.180.0.254"
			c.SchemaVersion = 2
		}, []Change{
			{Path: `schemaVersion`, Old: `1`, New: `2`},
			{Path: `system.hostname`, Old: `"psigate"`, New: `"sbc01"`},
			{Path: `network.routes[0].gateway`, Old: `"10.180.0.1"`, New: `"10.180.0.254"`},
			{Path: `sbc.coreMediaProfile`, Old: `"default"`, New: `"Zoom"`},
			{Path: `cloudLink.dns[0]`, Old: `"10.180.0.2"`},
		}},
		{"secret changed", func(c *Config) { c.CloudLink.Proxy.Password = "another one" }, []Change{
			{Path: `cloudLink.proxy.password`, Old: `"(secret)"`, New: `"(secret)"`},
		}},
		{"secret cleared", func(c *Config) { c.CloudLink.Proxy.Password = "" }, []Change{
			{Path: `cloudLink.proxy.password`, Old: `"(secret)"`, New: `""`},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := full(t)
			b := Clone(a)
			tt.mutate(&b)
			got := Diff(a, b)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Diff =\n%v\nwant\n%v", got, tt.want)
			}
		})
	}
}

func TestChangeString(t *testing.T) {
	tests := []struct {
		c    Change
		want string
	}{
		{Change{Path: `sbc.mediaProfiles["Zoom"].rtcpMode`, Old: `"bypass"`, New: `"terminate"`}, `sbc.mediaProfiles["Zoom"].rtcpMode: "bypass" -> "terminate"`},
		{Change{Path: `sbc.emergency.numbers[2]`, New: `"112"`}, `sbc.emergency.numbers[2]: added "112"`},
		{Change{Path: `sbc.emergency.numbers[2]`, Old: `"112"`}, `sbc.emergency.numbers[2]: removed "112"`},
		{Change{Path: `cloudLink.proxy.password`, Old: `""`, New: `"(secret)"`}, `cloudLink.proxy.password: "" -> "(secret)"`},
	}
	for _, tt := range tests {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

// TestDiffHidesSecrets changes, adds and removes everything that holds a
// secret and checks that no secret value appears anywhere in the output.
func TestDiffHidesSecrets(t *testing.T) {
	base := full(t)
	var ps []string
	populate(reflect.ValueOf(&base).Elem(), "", "SECRET-A-", &ps)
	keyBodies := []string{}
	for _, p := range base.SBC.Security.CertificateProfiles {
		if lines := strings.Split(p.KeyPEM, "\n"); len(lines) > 1 {
			keyBodies = append(keyBodies, lines[1])
		}
	}
	newCert, newKey := newPair(t, "added.example.com")
	newBody := strings.Split(newKey, "\n")[1]

	changes := map[string]func(c *Config){
		"secrets changed": func(c *Config) {
			var p []string
			populate(reflect.ValueOf(c).Elem(), "", "SECRET-B-", &p)
		},
		"secrets cleared": func(c *Config) { *c = Redact(*c) },
		"profile added": func(c *Config) {
			c.SBC.Security.CertificateProfiles = append(c.SBC.Security.CertificateProfiles,
				sbc.CertificateProfile{Name: "Added", CertificatePEM: newCert, KeyPEM: newKey})
		},
		"profile removed": func(c *Config) { c.SBC.Security.CertificateProfiles = c.SBC.Security.CertificateProfiles[1:] },
		"profile renamed": func(c *Config) { c.SBC.Security.CertificateProfiles[0].Name = "Renamed" },
		"profiles unnamed": func(c *Config) {
			for i := range c.SBC.Security.CertificateProfiles {
				c.SBC.Security.CertificateProfiles[i].Name = ""
			}
			c.SBC.Security.CertificateProfiles = append(c.SBC.Security.CertificateProfiles, sbc.CertificateProfile{KeyPEM: newKey})
		},
		"duplicate names": func(c *Config) {
			c.SBC.Security.CertificateProfiles = append(c.SBC.Security.CertificateProfiles, c.SBC.Security.CertificateProfiles[0])
			c.SBC.Security.CertificateProfiles[2].KeyPEM = newKey
		},
		"all profiles removed": func(c *Config) { c.SBC.Security.CertificateProfiles = nil },
	}
	for name, mutate := range changes {
		t.Run(name, func(t *testing.T) {
			a := Clone(base)
			b := Clone(base)
			mutate(&b)
			for _, d := range [][]Change{Diff(a, b), Diff(b, a)} {
				if len(d) == 0 {
					t.Fatal("no change reported")
				}
				var all strings.Builder
				for _, c := range d {
					all.WriteString(c.String() + "\n" + c.Path + c.Old + c.New + "\n")
				}
				js, _ := json.Marshal(d)
				all.Write(js)
				out := all.String()
				for _, s := range append([]string{"SECRET-", newBody}, keyBodies...) {
					if strings.Contains(out, s) {
						t.Errorf("diff output reveals a secret (%q):\n%s", s, out)
					}
				}
			}
		})
	}
}

func TestClone(t *testing.T) {
	c := full(t)
	d := Clone(c)
	if !reflect.DeepEqual(c, d) {
		t.Fatal("Clone differs")
	}
	d.SBC.MediaProfiles[1].Codecs[0].Name = "OPUS"
	d.SBC.Emergency.RemoteEndpoint.Port = 1
	d.Network.Realms[0].Name = "x"
	d.CloudLink.DNS[0] = "1.1.1.1"
	if c.SBC.MediaProfiles[1].Codecs[0].Name != "G722" || c.SBC.Emergency.RemoteEndpoint.Port != 5061 ||
		c.Network.Realms[0].Name != "Main-Core-IPv4" || c.CloudLink.DNS[0] != "10.180.0.2" {
		t.Error("Clone shares memory with its source")
	}
}
