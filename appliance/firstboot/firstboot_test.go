package firstboot

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/psigate/psigate/appliance/store"
)

func openStore(t *testing.T) *store.Store {
	s, err := store.Open(t.TempDir(), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func parse(t *testing.T, certPEM string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(certPEM))
	if b == nil {
		t.Fatal("no PEM certificate")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEnsureCreatesIdentityOnce(t *testing.T) {
	s := openStore(t)
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	id, cert, err := Ensure(s, now, "edge1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := uuid.Parse(id.MachineID); err != nil {
		t.Errorf("machine id %q: %v", id.MachineID, err)
	}
	c := parse(t, id.CertPEM)
	key, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Errorf("key %T, want ECDSA P-256", c.PublicKey)
	}
	if !slices.Contains(c.DNSNames, "edge1") || !slices.Contains(c.DNSNames, "localhost") {
		t.Errorf("DNS names %v", c.DNSNames)
	}
	if !slices.ContainsFunc(c.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.IPv6loopback) }) {
		t.Errorf("IP addresses %v lack ::1", c.IPAddresses)
	}
	if !cert.Leaf.Equal(c) {
		t.Error("returned certificate differs from the stored one")
	}
	u, err := s.User(AdminUser)
	if err != nil || u.PasswordHash != "" {
		t.Errorf("admin = %+v, %v; want an account without password", u, err)
	}
	again, _, err := Ensure(s, now.Add(time.Hour), "edge1")
	if err != nil || again.MachineID != id.MachineID || again.CertPEM != id.CertPEM {
		t.Errorf("second Ensure changed the identity: %v", err)
	}
}

func TestEnsureRenewsCertificateMadeWithAWrongClock(t *testing.T) {
	s := openStore(t)
	epoch := time.Unix(0, 0) // a Raspberry Pi before NTP
	id, _, err := Ensure(s, epoch)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	renewed, cert, err := Ensure(s, now)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.MachineID != id.MachineID {
		t.Error("renewal changed the machine id")
	}
	if now.Before(cert.Leaf.NotBefore) || now.After(cert.Leaf.NotAfter) {
		t.Errorf("renewed certificate valid %s to %s, not at %s", cert.Leaf.NotBefore, cert.Leaf.NotAfter, now)
	}
	stored, _, _ := Ensure(s, now)
	if stored.CertPEM != renewed.CertPEM {
		t.Error("renewed certificate not stored")
	}
}
