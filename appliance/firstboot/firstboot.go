// Package firstboot gives a new appliance what it needs before anyone has
// configured it: a machine identity (a random UUID, kept forever), a
// self-signed ECDSA certificate for the admin portal, and the admin
// account without a password, so the portal asks for one before anything
// else.
package firstboot

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"

	"github.com/google/uuid"
	"github.com/psigate/psigate/appliance/store"
)

// AdminUser is the name of the portal's administrator account.
const AdminUser = "admin"

// certValidity is how long the self-signed certificate is valid: the
// appliance is meant to run for years without anyone renewing it.
const certValidity = 10 * 365 * 24 * time.Hour

// Ensure creates, on first use, the identity and the admin account, and
// returns the identity and the portal's certificate. names are the host
// names the certificate should carry besides localhost and loopback.
func Ensure(s *store.Store, now time.Time, names ...string) (store.Identity, tls.Certificate, error) {
	id, err := s.Identity(func() (store.Identity, error) { return NewIdentity(now, names...) })
	if err != nil {
		return store.Identity{}, tls.Certificate{}, err
	}
	if err := s.EnsureUser(AdminUser); err != nil {
		return store.Identity{}, tls.Certificate{}, fmt.Errorf("firstboot: admin account: %w", err)
	}
	cert, err := tls.X509KeyPair([]byte(id.CertPEM), []byte(id.KeyPEM))
	if err != nil {
		return store.Identity{}, tls.Certificate{}, fmt.Errorf("firstboot: stored portal certificate: %w", err)
	}
	if now.Before(cert.Leaf.NotBefore) || now.After(cert.Leaf.NotAfter) {
		// A box without a real-time clock may have made its certificate
		// before NTP set the time (in 1970, say): make a new one.
		return renew(s, id, now, names...)
	}
	return id, cert, nil
}

// renew replaces the portal certificate, keeping the machine ID.
func renew(s *store.Store, id store.Identity, now time.Time, names ...string) (store.Identity, tls.Certificate, error) {
	fresh, err := NewIdentity(now, names...)
	if err != nil {
		return store.Identity{}, tls.Certificate{}, err
	}
	if err := s.ReplaceCertificate(fresh.CertPEM, fresh.KeyPEM); err != nil {
		return store.Identity{}, tls.Certificate{}, fmt.Errorf("firstboot: renew portal certificate: %w", err)
	}
	id.CertPEM, id.KeyPEM = fresh.CertPEM, fresh.KeyPEM
	cert, err := tls.X509KeyPair([]byte(id.CertPEM), []byte(id.KeyPEM))
	if err != nil {
		return store.Identity{}, tls.Certificate{}, fmt.Errorf("firstboot: renewed portal certificate: %w", err)
	}
	return id, cert, nil
}

// NewIdentity makes a random machine ID and a self-signed P-256
// certificate for the given names plus localhost, 127.0.0.1 and ::1.
func NewIdentity(now time.Time, names ...string) (store.Identity, error) {
	machineID, err := uuid.NewRandom()
	if err != nil {
		return store.Identity{}, fmt.Errorf("machine id: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return store.Identity{}, fmt.Errorf("certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return store.Identity{}, fmt.Errorf("certificate serial: %w", err)
	}
	dns := []string{"localhost"}
	for _, n := range names {
		if n != "" && n != "localhost" {
			dns = append(dns, n)
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: dns[len(dns)-1], Organization: []string{"psigate " + machineID.String()}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              dns,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return store.Identity{}, fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return store.Identity{}, fmt.Errorf("encode key: %w", err)
	}
	return store.Identity{
		MachineID: machineID.String(),
		Created:   now.UTC(),
		CertPEM:   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		KeyPEM:    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
	}, nil
}
