package sbc

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/psigate/psigate/appliance/field"
)

// Security is TLS and denial-of-service protection (seed 9.3).
type Security struct {
	// CertificateProfiles hold uploaded certificates and TLS policy.
	CertificateProfiles []CertificateProfile `json:"certificateProfiles"`
	// SIPTLSProfile names the certificate profile of the SIP TLS
	// listeners; empty = the appliance's self-signed certificate.
	SIPTLSProfile string `json:"sipTLSProfile"`
	DoS           DoS    `json:"dos"`
}

// CertificateProfile is a server certificate with its key, CA chain and
// TLS policy (seed 9.3 "Certificate Profile configuration").
type CertificateProfile struct {
	// Name identifies the profile, e.g. "Zoom BYOT".
	Name string `json:"name"`
	// CertificatePEM is the server certificate, PEM.
	CertificatePEM string `json:"certificatePEM"`
	// KeyPEM is the certificate's private key, PEM. Secret.
	KeyPEM string `json:"keyPEM" secret:"true"`
	// CAPEM is the CA chain sent with the certificate and used to verify
	// clients, PEM; may be empty.
	CAPEM string `json:"caPEM"`
	// ClientVerification is none, optional or required (the MTLS port
	// always requires a client certificate).
	ClientVerification string `json:"clientVerification"`
	// MinTLSVersion is "1.2" or "1.3"; default "1.2".
	MinTLSVersion string `json:"minTLSVersion"`
}

// DoS are the denial-of-service thresholds (seed 9.3 "Denial of Service").
type DoS struct {
	// MaxMessageBytes refuses larger SIP messages; default 16384.
	MaxMessageBytes int `json:"maxMessageBytes"`
	// RequestsPerSecondPerSource above which a source is blacklisted;
	// default 50.
	RequestsPerSecondPerSource int `json:"requestsPerSecondPerSource"`
	// MaxConnectionsPerSource caps TCP/TLS connections from one address;
	// default 20.
	MaxConnectionsPerSource int `json:"maxConnectionsPerSource"`
	// BlacklistSeconds a blacklisted source stays blocked; default 300.
	BlacklistSeconds int `json:"blacklistSeconds"`
	// ProcessInitialRegistration counts failed initial registrations
	// towards the dynamic blacklist (the seed turns it on).
	ProcessInitialRegistration bool `json:"processInitialRegistration"`
	// FailedRegistrationsThreshold failed initial registrations from one
	// source within a minute blacklist it; default 10.
	FailedRegistrationsThreshold int `json:"failedRegistrationsThreshold"`
}

// DefaultSecurity has no uploaded certificate and the seed's DoS setting.
func DefaultSecurity() Security {
	return Security{
		CertificateProfiles: []CertificateProfile{},
		DoS: DoS{
			MaxMessageBytes: 16384, RequestsPerSecondPerSource: 50, MaxConnectionsPerSource: 20,
			BlacklistSeconds: 300, ProcessInitialRegistration: true, FailedRegistrationsThreshold: 10,
		},
	}
}

// Validate checks profiles (their PEM must parse and the key must match the
// certificate), the profile reference and the thresholds.
func (s Security) Validate() error {
	var l field.List
	names := make([]string, len(s.CertificateProfiles))
	for i, p := range s.CertificateProfiles {
		names[i] = p.Name
		l.Merge(field.Index("certificateProfiles", i), p.Validate())
	}
	l.Unique("certificateProfiles", "name", names)
	if s.SIPTLSProfile != "" && s.profile(s.SIPTLSProfile) == nil {
		l.Addf("sipTLSProfile", "no certificate profile named %q", s.SIPTLSProfile)
	}
	d := s.DoS
	l.Range("dos.maxMessageBytes", d.MaxMessageBytes, 1500, 65535)
	l.Range("dos.requestsPerSecondPerSource", d.RequestsPerSecondPerSource, 1, 100000)
	l.Range("dos.maxConnectionsPerSource", d.MaxConnectionsPerSource, 1, 10000)
	l.Range("dos.blacklistSeconds", d.BlacklistSeconds, 1, 86400)
	l.Range("dos.failedRegistrationsThreshold", d.FailedRegistrationsThreshold, 1, 1000)
	return l.Err()
}

func (s Security) profile(name string) *CertificateProfile {
	for i := range s.CertificateProfiles {
		if s.CertificateProfiles[i].Name == name {
			return &s.CertificateProfiles[i]
		}
	}
	return nil
}

// Validate checks one certificate profile.
func (p CertificateProfile) Validate() error {
	var l field.List
	l.Required("name", p.Name)
	l.OneOf("clientVerification", p.ClientVerification, "none", "optional", "required")
	l.OneOf("minTLSVersion", p.MinTLSVersion, "1.2", "1.3")
	switch {
	case p.CertificatePEM == "":
		l.Addf("certificatePEM", "required")
	case checkCerts(p.CertificatePEM) != nil:
		l.Addf("certificatePEM", "%v", checkCerts(p.CertificatePEM))
	case p.KeyPEM == "":
		l.Addf("keyPEM", "required")
	default:
		if _, err := tls.X509KeyPair([]byte(p.CertificatePEM), []byte(p.KeyPEM)); err != nil {
			l.Addf("keyPEM", "certificate and key do not form a pair: %v", err)
		}
	}
	if p.CAPEM != "" {
		if err := checkCerts(p.CAPEM); err != nil {
			l.Addf("caPEM", "%v", err)
		}
	}
	return l.Err()
}

// checkCerts reports whether s is one or more PEM certificates.
func checkCerts(s string) error {
	rest, n := []byte(s), 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return fmt.Errorf("PEM block %d is %q, want CERTIFICATE", n+1, b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("certificate %d: %w", n+1, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("no PEM certificate found")
	}
	return nil
}
