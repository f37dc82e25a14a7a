package sbc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psigate/psigate/appliance/field"
	"github.com/psigate/psigate/sbc/media"
)

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

// pair is a generated certificate with its key, PEM encoded.
type pair struct {
	cert, key string // key is SEC 1 ("EC PRIVATE KEY")
	pkcs8     string // the same key as PKCS #8 ("PRIVATE KEY")
}

// newPair makes a self-signed ECDSA P-256 certificate for cn.
func newPair(t *testing.T, cn string) pair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		DNSNames:              []string{cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pair{
		cert:  string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		key:   string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})),
		pkcs8: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})),
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	if c.CoreMediaProfile != "default" {
		t.Errorf("CoreMediaProfile = %q, want default", c.CoreMediaProfile)
	}
	if want := []UserAgentProfile{{UserAgent: "ZoomPbxPhone", MediaProfile: "Zoom"}}; !slices.Equal(c.UserAgentProfiles, want) {
		t.Errorf("UserAgentProfiles = %+v, want %+v", c.UserAgentProfiles, want)
	}
	if c.MediaProfile("Zoom") == nil || c.MediaProfile("default") == nil || c.MediaProfile("zoom") != nil {
		t.Errorf("MediaProfile lookup: Zoom=%v default=%v zoom=%v", c.MediaProfile("Zoom"), c.MediaProfile("default"), c.MediaProfile("zoom"))
	}

	s := c.SIPServer
	if s.CommSystemType != CommClustered || s.NodeGroups == nil || len(s.NodeGroups) != 0 {
		t.Errorf("SIPServer = %+v, want clustered, no groups", s)
	}
	if s.Keepalive != (Keepalive{IntervalSeconds: 30, FailureThreshold: 3}) {
		t.Errorf("Keepalive = %+v", s.Keepalive)
	}

	r := c.RemoteSubscribers
	if r.MaxExpirySeconds != 2678400 {
		t.Errorf("MaxExpirySeconds = %d, want 2678400", r.MaxExpirySeconds)
	}
	if r.MinIntervalSeconds != 300 {
		t.Errorf("MinIntervalSeconds = %d, want 300", r.MinIntervalSeconds)
	}
	wantThrottle := RegisterThrottling{Enabled: true, UDPSeconds: 60, StreamEnabled: true, StreamSeconds: 60, MaxThresholdSeconds: 1800}
	if !r.Enabled || r.RegisterThrottling != wantThrottle {
		t.Errorf("RemoteSubscribers enabled=%v throttling=%+v, want %+v", r.Enabled, r.RegisterThrottling, wantThrottle)
	}
	if r.Quarantine != (Quarantine{DurationSeconds: 600}) || r.InviteNoAnswerTimeoutMs != 360000 || r.InviteNoReplyTimeoutMs != 3000 {
		t.Errorf("RemoteSubscribers = %+v", r)
	}

	sec := c.Security
	wantDoS := DoS{MaxMessageBytes: 16384, RequestsPerSecondPerSource: 50, MaxConnectionsPerSource: 20,
		BlacklistSeconds: 300, ProcessInitialRegistration: true, FailedRegistrationsThreshold: 10}
	if sec.DoS != wantDoS || sec.CertificateProfiles == nil || len(sec.CertificateProfiles) != 0 || sec.SIPTLSProfile != "" {
		t.Errorf("Security = %+v", sec)
	}

	if e := c.Emergency; !slices.Equal(e.Numbers, []string{"911", "933"}) || e.RemoteEndpoint != nil {
		t.Errorf("Emergency = %+v", e)
	}
}

// full is a valid section with every part filled in.
func full(t *testing.T) Config {
	t.Helper()
	c := Default()
	c.SIPServer.NodeGroups = []NodeGroup{
		{Name: "OS4K", StickWithNode: true, Nodes: []Node{
			{Name: "node1", Priority: 1, Address: "10.180.0.10", Transport: TransportTCP, Port: 5060},
			{Name: "node2", Priority: 2, Address: "os4k-b.example.com", Transport: TransportTLS, Port: 5061},
		}},
		{Name: "Backup", Nodes: []Node{
			{Name: "node1", Priority: 99, Address: "2001:db8::10", Transport: TransportUDP, Port: 65535},
		}},
	}
	rs := media.Profile{
		Name: "RedSky", Protocol: media.ProtocolRTP, RTCPMode: media.RTCPTerminate,
		Codecs:                    []media.Codec{{Name: "G711U", Priority: 1}},
		TelephoneEventPayloadType: 101,
	}
	c.MediaProfiles = append(c.MediaProfiles, rs)
	c.UserAgentProfiles = append(c.UserAgentProfiles, UserAgentProfile{UserAgent: "Zoom", MediaProfile: "default"})
	p := newPair(t, "sbc01.example.com")
	ca := newPair(t, "ca.example.com")
	c.Security.CertificateProfiles = []CertificateProfile{
		{Name: "Zoom BYOT", CertificatePEM: p.cert, KeyPEM: p.key, CAPEM: ca.cert, ClientVerification: "optional", MinTLSVersion: "1.2"},
		{Name: "PBX", CertificatePEM: ca.cert, KeyPEM: ca.pkcs8, ClientVerification: "none", MinTLSVersion: "1.3"},
	}
	c.Security.SIPTLSProfile = "Zoom BYOT"
	c.Emergency = Emergency{
		Numbers: []string{"911", "933", "112", "+4911", "*#06#"},
		RemoteEndpoint: &RemoteEndpoint{
			Name: "RedSky", Address: "e911.redsky.example", Port: 5061, Transport: TransportTLS,
			MediaProfile: "RedSky", AccessRealm: "Main-Access-IPv4", CoreRealm: "Main-Core-IPv4", PrivacyFlags: true,
		},
	}
	return c
}

func TestValidate(t *testing.T) {
	other := newPair(t, "other.example.com")
	tests := []struct {
		name     string
		mutate   func(c *Config)
		wantPath string
	}{
		{"full", func(c *Config) {}, ""},

		// sipServer.
		{"standalone one node", func(c *Config) {
			c.SIPServer.CommSystemType = CommStandalone
			c.SIPServer.NodeGroups = c.SIPServer.NodeGroups[1:]
		}, ""},
		{"standalone no node", func(c *Config) {
			c.SIPServer.CommSystemType = CommStandalone
			c.SIPServer.NodeGroups = nil
		}, ""},
		{"keepalive bounds low", func(c *Config) { c.SIPServer.Keepalive = Keepalive{IntervalSeconds: 5, FailureThreshold: 1} }, ""},
		{"keepalive bounds high", func(c *Config) { c.SIPServer.Keepalive = Keepalive{IntervalSeconds: 600, FailureThreshold: 10} }, ""},
		{"comm type empty", func(c *Config) { c.SIPServer.CommSystemType = "" }, "sipServer.commSystemType"},
		{"comm type unknown", func(c *Config) { c.SIPServer.CommSystemType = "cluster" }, "sipServer.commSystemType"},
		{"standalone two nodes", func(c *Config) {
			c.SIPServer.CommSystemType = CommStandalone
			c.SIPServer.NodeGroups = c.SIPServer.NodeGroups[:1]
		}, "sipServer.nodeGroups"},
		{"standalone two groups", func(c *Config) {
			c.SIPServer.CommSystemType = CommStandalone
			c.SIPServer.NodeGroups[0].Nodes = c.SIPServer.NodeGroups[0].Nodes[:1]
		}, "sipServer.nodeGroups"},
		{"group name empty", func(c *Config) { c.SIPServer.NodeGroups[1].Name = "" }, "sipServer.nodeGroups[1].name"},
		{"group without nodes", func(c *Config) { c.SIPServer.NodeGroups[1].Nodes = nil }, "sipServer.nodeGroups[1].nodes"},
		{"duplicate group", func(c *Config) { c.SIPServer.NodeGroups[1].Name = "os4k" }, "sipServer.nodeGroups[1].name"},
		{"node name empty", func(c *Config) { c.SIPServer.NodeGroups[0].Nodes[1].Name = "" }, "sipServer.nodeGroups[0].nodes[1].name"},
		{"duplicate node", func(c *Config) { c.SIPServer.NodeGroups[0].Nodes[1].Name = "node1" }, "sipServer.nodeGroups[0].nodes[1].name"},
		{"priority 0", func(c *Config) { c.SIPServer.NodeGroups[0].Nodes[0].Priority = 0 }, "sipServer.nodeGroups[0].nodes[0].priority"},
		{"priority 100", func(c *Config) { c.SIPServer.NodeGroups[0].Nodes[0].Priority = 100 }, "sipServer.nodeGroups[0].nodes[0].priority"},
		{"address empty", func(c *Config) { c.SIPServer.NodeGroups[0].Nodes[0].Address = "" }, "sipServer.nodeGroups[0].nodes[0].address"},
		{"address bad", func(c *Config) { c.SIPServer.NodeGroups[0].Nodes[1].Address = "os4k_b.example.com" }, "sipServer.nodeGroups[0].nodes[1].address"},
		{"address with port", func(c *Config) { c.SIPServer.NodeGroups[0].Nodes[0].Address = "10.180.0.10:5060" }, "sipServer.nodeGroups[0].nodes[0].address"},
		{"transport unknown", func(c *Config) { c.SIPServer.NodeGroups[0].Nodes[0].Transport = "sctp" }, "sipServer.nodeGroups[0].nodes[0].transport"},
		{"transport upper", func(c *Config) { c.SIPServer.NodeGroups[0].Nodes[0].Transport = "TCP" }, "sipServer.nodeGroups[0].nodes[0].transport"},
		{"node port 0", func(c *Config) { c.SIPServer.NodeGroups[0].Nodes[0].Port = 0 }, "sipServer.nodeGroups[0].nodes[0].port"},
		{"node port 65536", func(c *Config) { c.SIPServer.NodeGroups[0].Nodes[0].Port = 65536 }, "sipServer.nodeGroups[0].nodes[0].port"},
		{"keepalive interval 4", func(c *Config) { c.SIPServer.Keepalive.IntervalSeconds = 4 }, "sipServer.keepalive.intervalSeconds"},
		{"keepalive interval 601", func(c *Config) { c.SIPServer.Keepalive.IntervalSeconds = 601 }, "sipServer.keepalive.intervalSeconds"},
		{"keepalive threshold 0", func(c *Config) { c.SIPServer.Keepalive.FailureThreshold = 0 }, "sipServer.keepalive.failureThreshold"},
		{"keepalive threshold 11", func(c *Config) { c.SIPServer.Keepalive.FailureThreshold = 11 }, "sipServer.keepalive.failureThreshold"},

		// remoteSubscribers.
		{"remote subscribers disabled", func(c *Config) { c.RemoteSubscribers.Enabled = false }, ""},
		{"throttle bounds low", func(c *Config) {
			c.RemoteSubscribers.RegisterThrottling = RegisterThrottling{UDPSeconds: 10, StreamSeconds: 10, MaxThresholdSeconds: 60}
		}, ""},
		{"throttle bounds high", func(c *Config) {
			c.RemoteSubscribers.RegisterThrottling = RegisterThrottling{UDPSeconds: 3600, StreamSeconds: 3600, MaxThresholdSeconds: 86400}
		}, ""},
		{"threshold equals client timer", func(c *Config) {
			c.RemoteSubscribers.RegisterThrottling = RegisterThrottling{UDPSeconds: 120, StreamSeconds: 300, MaxThresholdSeconds: 300}
		}, ""},
		{"expiry bounds", func(c *Config) {
			c.RemoteSubscribers.MaxExpirySeconds = 60
			c.RemoteSubscribers.MinIntervalSeconds = 60
		}, ""},
		{"expiry max int32", func(c *Config) { c.RemoteSubscribers.MaxExpirySeconds = 1<<31 - 1 }, ""},
		{"timeout bounds low", func(c *Config) {
			c.RemoteSubscribers.InviteNoAnswerTimeoutMs = 1000
			c.RemoteSubscribers.InviteNoReplyTimeoutMs = 500
			c.RemoteSubscribers.Quarantine.DurationSeconds = 10
		}, ""},
		{"timeout bounds high", func(c *Config) {
			c.RemoteSubscribers.InviteNoAnswerTimeoutMs = 3600000
			c.RemoteSubscribers.InviteNoReplyTimeoutMs = 64000
			c.RemoteSubscribers.Quarantine.DurationSeconds = 86400
		}, ""},
		{"udp seconds 9", func(c *Config) { c.RemoteSubscribers.RegisterThrottling.UDPSeconds = 9 }, "remoteSubscribers.registerThrottling.udpSeconds"},
		{"udp seconds 3601", func(c *Config) { c.RemoteSubscribers.RegisterThrottling.UDPSeconds = 3601 }, "remoteSubscribers.registerThrottling.udpSeconds"},
		{"stream seconds 9", func(c *Config) { c.RemoteSubscribers.RegisterThrottling.StreamSeconds = 9 }, "remoteSubscribers.registerThrottling.streamSeconds"},
		{"stream seconds 3601", func(c *Config) { c.RemoteSubscribers.RegisterThrottling.StreamSeconds = 3601 }, "remoteSubscribers.registerThrottling.streamSeconds"},
		{"threshold 59", func(c *Config) {
			c.RemoteSubscribers.RegisterThrottling = RegisterThrottling{UDPSeconds: 10, StreamSeconds: 10, MaxThresholdSeconds: 59}
		}, "remoteSubscribers.registerThrottling.maxThresholdSeconds"},
		{"threshold 86401", func(c *Config) { c.RemoteSubscribers.RegisterThrottling.MaxThresholdSeconds = 86401 }, "remoteSubscribers.registerThrottling.maxThresholdSeconds"},
		{"threshold below stream timer", func(c *Config) {
			c.RemoteSubscribers.RegisterThrottling = RegisterThrottling{UDPSeconds: 60, StreamSeconds: 600, MaxThresholdSeconds: 599}
		}, "remoteSubscribers.registerThrottling.maxThresholdSeconds"},
		{"threshold below udp timer", func(c *Config) {
			c.RemoteSubscribers.RegisterThrottling = RegisterThrottling{UDPSeconds: 600, StreamSeconds: 60, MaxThresholdSeconds: 300}
		}, "remoteSubscribers.registerThrottling.maxThresholdSeconds"},
		{"max expiry 59", func(c *Config) {
			c.RemoteSubscribers.MaxExpirySeconds = 59
			c.RemoteSubscribers.MinIntervalSeconds = 1
		}, "remoteSubscribers.maxExpirySeconds"},
		{"max expiry 0", func(c *Config) { c.RemoteSubscribers.MaxExpirySeconds = 0 }, "remoteSubscribers.maxExpirySeconds"},
		{"min interval 0", func(c *Config) { c.RemoteSubscribers.MinIntervalSeconds = 0 }, "remoteSubscribers.minIntervalSeconds"},
		{"min interval 86401", func(c *Config) { c.RemoteSubscribers.MinIntervalSeconds = 86401 }, "remoteSubscribers.minIntervalSeconds"},
		{"min interval above max expiry", func(c *Config) {
			c.RemoteSubscribers.MaxExpirySeconds = 3600
			c.RemoteSubscribers.MinIntervalSeconds = 3601
		}, "remoteSubscribers.minIntervalSeconds"},
		{"quarantine 9", func(c *Config) { c.RemoteSubscribers.Quarantine.DurationSeconds = 9 }, "remoteSubscribers.quarantine.durationSeconds"},
		{"quarantine 86401", func(c *Config) { c.RemoteSubscribers.Quarantine.DurationSeconds = 86401 }, "remoteSubscribers.quarantine.durationSeconds"},
		{"no answer 999", func(c *Config) { c.RemoteSubscribers.InviteNoAnswerTimeoutMs = 999 }, "remoteSubscribers.inviteNoAnswerTimeoutMs"},
		{"no answer 3600001", func(c *Config) { c.RemoteSubscribers.InviteNoAnswerTimeoutMs = 3600001 }, "remoteSubscribers.inviteNoAnswerTimeoutMs"},
		{"no reply 499", func(c *Config) { c.RemoteSubscribers.InviteNoReplyTimeoutMs = 499 }, "remoteSubscribers.inviteNoReplyTimeoutMs"},
		{"no reply 64001", func(c *Config) { c.RemoteSubscribers.InviteNoReplyTimeoutMs = 64001 }, "remoteSubscribers.inviteNoReplyTimeoutMs"},

		// mediaProfiles, userAgentProfiles, coreMediaProfile.
		{"core on Zoom", func(c *Config) { c.CoreMediaProfile = "Zoom" }, ""},
		{"no user agent map", func(c *Config) { c.UserAgentProfiles = nil }, ""},
		{"profile invalid", func(c *Config) { c.MediaProfiles[2].RTCPMode = "mux" }, "mediaProfiles[2].rtcpMode"},
		{"profile codec invalid", func(c *Config) { c.MediaProfiles[1].Codecs[3].Name = "G7299" }, "mediaProfiles[1].codecs[3].name"},
		{"duplicate profile", func(c *Config) { c.MediaProfiles[2].Name = "ZOOM" }, "mediaProfiles[2].name"},
		{"user agent empty", func(c *Config) { c.UserAgentProfiles[1].UserAgent = "" }, "userAgentProfiles[1].userAgent"},
		{"user agent duplicate", func(c *Config) { c.UserAgentProfiles[1].UserAgent = "zoompbxphone" }, "userAgentProfiles[1].userAgent"},
		{"user agent profile empty", func(c *Config) { c.UserAgentProfiles[0].MediaProfile = "" }, "userAgentProfiles[0].mediaProfile"},
		{"user agent profile unknown", func(c *Config) { c.UserAgentProfiles[0].MediaProfile = "Teams" }, "userAgentProfiles[0].mediaProfile"},
		{"user agent profile wrong case", func(c *Config) { c.UserAgentProfiles[0].MediaProfile = "zoom" }, "userAgentProfiles[0].mediaProfile"},
		{"core profile empty", func(c *Config) { c.CoreMediaProfile = "" }, "coreMediaProfile"},
		{"core profile unknown", func(c *Config) { c.CoreMediaProfile = "PBX" }, "coreMediaProfile"},
		{"core profile removed", func(c *Config) { c.MediaProfiles = c.MediaProfiles[1:] }, "coreMediaProfile"},

		// security.
		{"no sip tls profile", func(c *Config) { c.Security.SIPTLSProfile = "" }, ""},
		{"no CA", func(c *Config) { c.Security.CertificateProfiles[0].CAPEM = "" }, ""},
		{"CA chain of two", func(c *Config) { c.Security.CertificateProfiles[0].CAPEM += other.cert }, ""},
		{"verification required", func(c *Config) { c.Security.CertificateProfiles[0].ClientVerification = "required" }, ""},
		{"dos bounds low", func(c *Config) {
			c.Security.DoS = DoS{MaxMessageBytes: 1500, RequestsPerSecondPerSource: 1, MaxConnectionsPerSource: 1, BlacklistSeconds: 1, FailedRegistrationsThreshold: 1}
		}, ""},
		{"dos bounds high", func(c *Config) {
			c.Security.DoS = DoS{MaxMessageBytes: 65535, RequestsPerSecondPerSource: 100000, MaxConnectionsPerSource: 10000, BlacklistSeconds: 86400, FailedRegistrationsThreshold: 1000}
		}, ""},
		{"profile name empty", func(c *Config) { c.Security.CertificateProfiles[1].Name = "" }, "security.certificateProfiles[1].name"},
		{"duplicate cert profile", func(c *Config) { c.Security.CertificateProfiles[1].Name = "zoom byot" }, "security.certificateProfiles[1].name"},
		{"verification unknown", func(c *Config) { c.Security.CertificateProfiles[0].ClientVerification = "maybe" }, "security.certificateProfiles[0].clientVerification"},
		{"verification empty", func(c *Config) { c.Security.CertificateProfiles[0].ClientVerification = "" }, "security.certificateProfiles[0].clientVerification"},
		{"tls 1.1", func(c *Config) { c.Security.CertificateProfiles[0].MinTLSVersion = "1.1" }, "security.certificateProfiles[0].minTLSVersion"},
		{"tls empty", func(c *Config) { c.Security.CertificateProfiles[0].MinTLSVersion = "" }, "security.certificateProfiles[0].minTLSVersion"},
		{"mismatched key", func(c *Config) { c.Security.CertificateProfiles[0].KeyPEM = other.key }, "security.certificateProfiles[0].keyPEM"},
		{"mismatched key pkcs8", func(c *Config) { c.Security.CertificateProfiles[1].KeyPEM = other.pkcs8 }, "security.certificateProfiles[1].keyPEM"},
		{"garbage key", func(c *Config) { c.Security.CertificateProfiles[0].KeyPEM = "not a key" }, "security.certificateProfiles[0].keyPEM"},
		{"corrupt key PEM", func(c *Config) {
			c.Security.CertificateProfiles[0].KeyPEM = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"
		}, "security.certificateProfiles[0].keyPEM"},
		{"missing key", func(c *Config) { c.Security.CertificateProfiles[0].KeyPEM = "" }, "security.certificateProfiles[0].keyPEM"},
		{"certificate as key", func(c *Config) {
			c.Security.CertificateProfiles[0].KeyPEM = c.Security.CertificateProfiles[0].CertificatePEM
		}, "security.certificateProfiles[0].keyPEM"},
		{"missing certificate", func(c *Config) { c.Security.CertificateProfiles[0].CertificatePEM = "" }, "security.certificateProfiles[0].certificatePEM"},
		{"CA garbage", func(c *Config) { c.Security.CertificateProfiles[0].CAPEM = "garbage" }, "security.certificateProfiles[0].caPEM"},
		{"CA is a key", func(c *Config) { c.Security.CertificateProfiles[0].CAPEM = other.key }, "security.certificateProfiles[0].caPEM"},
		{"CA second block a key", func(c *Config) { c.Security.CertificateProfiles[0].CAPEM = other.cert + other.key }, "security.certificateProfiles[0].caPEM"},
		{"CA corrupt DER", func(c *Config) {
			c.Security.CertificateProfiles[0].CAPEM = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
		}, "security.certificateProfiles[0].caPEM"},
		{"sip tls profile unknown", func(c *Config) { c.Security.SIPTLSProfile = "BYOT" }, "security.sipTLSProfile"},
		{"message bytes 1499", func(c *Config) { c.Security.DoS.MaxMessageBytes = 1499 }, "security.dos.maxMessageBytes"},
		{"message bytes 65536", func(c *Config) { c.Security.DoS.MaxMessageBytes = 65536 }, "security.dos.maxMessageBytes"},
		{"requests 0", func(c *Config) { c.Security.DoS.RequestsPerSecondPerSource = 0 }, "security.dos.requestsPerSecondPerSource"},
		{"requests 100001", func(c *Config) { c.Security.DoS.RequestsPerSecondPerSource = 100001 }, "security.dos.requestsPerSecondPerSource"},
		{"connections 0", func(c *Config) { c.Security.DoS.MaxConnectionsPerSource = 0 }, "security.dos.maxConnectionsPerSource"},
		{"connections 10001", func(c *Config) { c.Security.DoS.MaxConnectionsPerSource = 10001 }, "security.dos.maxConnectionsPerSource"},
		{"blacklist 0", func(c *Config) { c.Security.DoS.BlacklistSeconds = 0 }, "security.dos.blacklistSeconds"},
		{"blacklist 86401", func(c *Config) { c.Security.DoS.BlacklistSeconds = 86401 }, "security.dos.blacklistSeconds"},
		{"failed regs 0", func(c *Config) { c.Security.DoS.FailedRegistrationsThreshold = 0 }, "security.dos.failedRegistrationsThreshold"},
		{"failed regs 1001", func(c *Config) { c.Security.DoS.FailedRegistrationsThreshold = 1001 }, "security.dos.failedRegistrationsThreshold"},

		// emergency.
		{"no numbers", func(c *Config) { c.Emergency.Numbers = nil }, ""},
		{"no endpoint", func(c *Config) { c.Emergency.RemoteEndpoint = nil }, ""},
		{"endpoint without media profile", func(c *Config) { c.Emergency.RemoteEndpoint.MediaProfile = "" }, ""},
		{"endpoint IP", func(c *Config) { c.Emergency.RemoteEndpoint.Address = "198.51.100.7" }, ""},
		{"number 32 digits", func(c *Config) { c.Emergency.Numbers[0] = strings.Repeat("9", 32) }, ""},
		{"number 33 digits", func(c *Config) { c.Emergency.Numbers[0] = strings.Repeat("9", 33) }, "emergency.numbers[0]"},
		{"number letters", func(c *Config) { c.Emergency.Numbers[1] = "9a3" }, "emergency.numbers[1]"},
		{"number empty", func(c *Config) { c.Emergency.Numbers[2] = "" }, "emergency.numbers[2]"},
		{"number inner plus", func(c *Config) { c.Emergency.Numbers[2] = "1+12" }, "emergency.numbers[2]"},
		{"number space", func(c *Config) { c.Emergency.Numbers[0] = "9 11" }, "emergency.numbers[0]"},
		{"number duplicate", func(c *Config) { c.Emergency.Numbers[4] = "112" }, "emergency.numbers[4]"},
		{"endpoint name empty", func(c *Config) { c.Emergency.RemoteEndpoint.Name = "" }, "emergency.remoteEndpoint.name"},
		{"endpoint address empty", func(c *Config) { c.Emergency.RemoteEndpoint.Address = "" }, "emergency.remoteEndpoint.address"},
		{"endpoint address URL", func(c *Config) { c.Emergency.RemoteEndpoint.Address = "sips:e911.example" }, "emergency.remoteEndpoint.address"},

		// calls.
		{"no header lists", func(c *Config) { c.Calls = Calls{} }, ""},
		{"empty header list", func(c *Config) { c.Calls.HeadersToCore = []string{} }, ""},
		{"header not a token", func(c *Config) { c.Calls.HeadersToCore = append(c.Calls.HeadersToCore, "X Bad") }, "calls.headersToCore[" + strconv.Itoa(len(Default().Calls.HeadersToCore)) + "]"},
		{"own header", func(c *Config) { c.Calls.HeadersToAccess = []string{"Subject", "via"} }, "calls.headersToAccess[1]"},
		{"header twice", func(c *Config) { c.Calls.HeadersToAccess = []string{"Subject", "subject"} }, "calls.headersToAccess[1]"},
		{"empty header name", func(c *Config) { c.Calls.HeadersToCore = []string{""} }, "calls.headersToCore[0]"},
		{"media timeouts default", func(c *Config) { c.Calls.MediaStartSeconds, c.Calls.MediaStopSeconds = 0, 0 }, ""},
		{"media start timeout", func(c *Config) { c.Calls.MediaStartSeconds = 3601 }, "calls.mediaStartSeconds"},
		{"media stop timeout", func(c *Config) { c.Calls.MediaStopSeconds = -1 }, "calls.mediaStopSeconds"},
		{"endpoint port 0", func(c *Config) { c.Emergency.RemoteEndpoint.Port = 0 }, "emergency.remoteEndpoint.port"},
		{"endpoint port 65536", func(c *Config) { c.Emergency.RemoteEndpoint.Port = 65536 }, "emergency.remoteEndpoint.port"},
		{"endpoint transport", func(c *Config) { c.Emergency.RemoteEndpoint.Transport = "" }, "emergency.remoteEndpoint.transport"},
		{"endpoint access realm", func(c *Config) { c.Emergency.RemoteEndpoint.AccessRealm = "" }, "emergency.remoteEndpoint.accessRealm"},
		{"endpoint core realm", func(c *Config) { c.Emergency.RemoteEndpoint.CoreRealm = "" }, "emergency.remoteEndpoint.coreRealm"},
		{"endpoint media profile unknown", func(c *Config) { c.Emergency.RemoteEndpoint.MediaProfile = "E911" }, "emergency.remoteEndpoint.mediaProfile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := full(t)
			tt.mutate(&c)
			checkErr(t, c.Validate(), tt.wantPath)
		})
	}
}

// TestCertificateProfile checks the key pair check directly: a generated
// matching pair (SEC 1 or PKCS #8 key) is accepted; each broken input is
// reported at the field that holds the broken value, and no message
// reveals the private key.
func TestCertificateProfile(t *testing.T) {
	a, b := newPair(t, "a.example.com"), newPair(t, "b.example.com")
	ok := func() CertificateProfile {
		return CertificateProfile{Name: "p", CertificatePEM: a.cert, KeyPEM: a.key, ClientVerification: "none", MinTLSVersion: "1.2"}
	}
	tests := []struct {
		name     string
		mutate   func(p *CertificateProfile)
		wantPath string
	}{
		{"sec1 pair", func(p *CertificateProfile) {}, ""},
		{"pkcs8 pair", func(p *CertificateProfile) { p.KeyPEM = a.pkcs8 }, ""},
		{"other pair", func(p *CertificateProfile) { p.CertificatePEM, p.KeyPEM = b.cert, b.key }, ""},
		{"with CA", func(p *CertificateProfile) { p.CAPEM = b.cert }, ""},
		{"mismatched key", func(p *CertificateProfile) { p.KeyPEM = b.key }, "keyPEM"},
		{"mismatched certificate", func(p *CertificateProfile) { p.CertificatePEM = b.cert }, "keyPEM"},
		{"missing key", func(p *CertificateProfile) { p.KeyPEM = "" }, "keyPEM"},
		{"garbage key", func(p *CertificateProfile) {
			p.KeyPEM = "-----BEGIN PRIVATE KEY-----\nZm9v\n-----END PRIVATE KEY-----\n"
		}, "keyPEM"},
		{"missing certificate", func(p *CertificateProfile) { p.CertificatePEM = "" }, "certificatePEM"},
		{"both missing", func(p *CertificateProfile) { p.CertificatePEM, p.KeyPEM = "", "" }, "certificatePEM"},
		{"CA garbage", func(p *CertificateProfile) {
			p.CAPEM = "-----BEGIN CERTIFICATE-----\nZm9v\n-----END CERTIFICATE-----\n"
		}, "caPEM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ok()
			tt.mutate(&p)
			err := p.Validate()
			checkErr(t, err, tt.wantPath)
			if err != nil {
				for _, k := range []string{a.key, a.pkcs8, b.key} {
					if body := strings.Split(k, "\n")[1]; strings.Contains(err.Error(), body) {
						t.Errorf("error reveals key material: %v", err)
					}
				}
			}
		})
	}
}

// TestCertificateProfileBadCertificate: when the certificate field holds
// garbage (or a key pasted into the wrong box) the error must name
// certificatePEM, the field to fix, not keyPEM.
func TestCertificateProfileBadCertificate(t *testing.T) {
	a := newPair(t, "a.example.com")
	tests := []struct {
		name string
		cert string
	}{
		{"not PEM", "garbage"},
		{"corrupt DER", "-----BEGIN CERTIFICATE-----\nZm9v\n-----END CERTIFICATE-----\n"},
		{"key in certificate field", a.key},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := CertificateProfile{Name: "p", CertificatePEM: tt.cert, KeyPEM: a.key, ClientVerification: "none", MinTLSVersion: "1.2"}
			checkErr(t, p.Validate(), "certificatePEM")
		})
	}
}
