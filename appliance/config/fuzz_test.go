package config_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/psigate/psigate/appliance/config"
	"github.com/psigate/psigate/cloudlinkd"
	"github.com/psigate/psigate/sbc"
)

// fuzzKeyPair makes a self-signed ECDSA certificate and its key, PEM.
func fuzzKeyPair(tb testing.TB, cn string) (certPEM, keyPEM string) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{cn},
		NotBefore:    time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}))
}

// fuzzSecretConfig is a valid configuration holding both kinds of secret.
func fuzzSecretConfig(tb testing.TB) config.Config {
	tb.Helper()
	c := config.Default()
	c.System.Domain = "example.com"
	cert, key := fuzzKeyPair(tb, "sbc01.example.com")
	c.SBC.Security.CertificateProfiles = []sbc.CertificateProfile{
		{Name: "Zoom BYOT", CertificatePEM: cert, KeyPEM: key, ClientVerification: "none", MinTLSVersion: "1.2"},
	}
	c.SBC.Security.SIPTLSProfile = "Zoom BYOT"
	c.CloudLink = cloudlinkd.Config{
		Enabled: true,
		Proxy:   cloudlinkd.Proxy{URL: "http://proxy.example.com:3128", Username: "psigate", Password: "fuzz-S3CRET"},
		DNS:     []string{"10.180.0.2"},
	}
	if err := c.Validate(); err != nil {
		tb.Fatalf("seed configuration does not validate: %v", err)
	}
	return c
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// checkRedacted fails unless Redact(c) has every secret empty and keeps
// the shape of c.
func checkRedacted(t *testing.T, c config.Config) {
	t.Helper()
	r := config.Redact(c)
	if r.CloudLink.Proxy.Password != "" {
		t.Errorf("Redact left CloudLink.Proxy.Password = %q", r.CloudLink.Proxy.Password)
	}
	if len(r.SBC.Security.CertificateProfiles) != len(c.SBC.Security.CertificateProfiles) {
		t.Fatalf("Redact changed the number of certificate profiles: %d -> %d",
			len(c.SBC.Security.CertificateProfiles), len(r.SBC.Security.CertificateProfiles))
	}
	for i, p := range r.SBC.Security.CertificateProfiles {
		if p.KeyPEM != "" {
			t.Errorf("Redact left SBC.Security.CertificateProfiles[%d].KeyPEM = %q", i, p.KeyPEM)
		}
		if p.CertificatePEM != c.SBC.Security.CertificateProfiles[i].CertificatePEM {
			t.Errorf("Redact changed CertificateProfiles[%d].CertificatePEM", i)
		}
	}
	if r.CloudLink.Proxy.Username != c.CloudLink.Proxy.Username {
		t.Errorf("Redact changed CloudLink.Proxy.Username %q -> %q", c.CloudLink.Proxy.Username, r.CloudLink.Proxy.Username)
	}
	// Only secrets may differ.
	for _, ch := range config.Diff(c, r) {
		if ch.Path != "cloudLink.proxy.password" && !strings.HasSuffix(ch.Path, ".keyPEM") {
			t.Errorf("Redact changed a non-secret field: %v", ch)
		}
	}
}

// The seeds reach the interesting branch of the fuzz target: they import
// and validate, and an export with secrets round-trips them.
func TestFuzzSeedImport(t *testing.T) {
	sec := fuzzSecretConfig(t)
	for _, tc := range []struct {
		name        string
		doc         []byte
		wantSecrets bool
	}{
		{"bare default", config.Marshal(config.Default()), false},
		{"bare with secrets", config.Marshal(sec), true},
		{"export with secrets", mustJSON(t, config.NewExport(sec, "id", 1, time.Now(), true)), true},
		{"export without secrets", mustJSON(t, config.NewExport(sec, "id", 1, time.Now(), false)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.ParseImport(tc.doc)
			if err != nil {
				t.Fatalf("ParseImport: %v", err)
			}
			if tc.wantSecrets {
				if d := config.Diff(sec, c); len(d) != 0 {
					t.Errorf("Diff(original, imported) = %v", d)
				}
				if err := c.Validate(); err != nil {
					t.Errorf("Validate: %v", err)
				}
			}
			if got := c.CloudLink.Proxy.Password != ""; got != tc.wantSecrets {
				t.Errorf("proxy password present = %v, want %v", got, tc.wantSecrets)
			}
			checkRedacted(t, c)
		})
	}
	if _, err := config.ParseImport([]byte(`{"format":"other","config":{}}`)); err == nil ||
		err.Error() != `format "other" is not "psigate-config"` {
		t.Errorf("ParseImport(foreign format) error = %v", err)
	}
}

func FuzzParseImport(f *testing.F) {
	def := config.Default()
	f.Add(config.Marshal(def))
	f.Add(mustJSON(f, config.NewExport(def, "id", 1, time.Now(), false)))

	sec := fuzzSecretConfig(f)
	f.Add(config.Marshal(sec))
	f.Add(mustJSON(f, config.NewExport(sec, "machine-1", 42, time.Now(), true)))
	f.Add(mustJSON(f, config.NewExport(sec, "machine-1", 42, time.Now(), false)))

	// Malformed documents.
	for _, s := range []string{
		``,
		`null`,
		`[]`,
		`"config"`,
		`{`,
		`{}`,
		`{"format":"psigate-config"}`,
		`{"format":"other","config":{}}`,
		`{"format":42}`,
		`{"format":"psigate-config","config":{"schemaVersion":"one"}}`,
		`{"format":"psigate-config","exported":"yesterday","config":{}}`,
		`{"format":"psigate-config","config":{},"extra":true}`,
		`{"schemaVersion":1,"unknown":{}}`,
		`{"schemaVersion":1} {"schemaVersion":1}`,
		`{"schemaVersion":1}]`,
		`{"schemaVersion":1,"sbc":{"security":{"certificateProfiles":[null,{"keyPEM":"k"}]}},"cloudLink":{"proxy":{"password":"p"}}}`,
		`{"schemaVersion":1,"sbc":{"emergency":{"remoteEndpoint":null}}}`,
		`{"SchemaVersion":1,"CLOUDLINK":{"Proxy":{"PASSWORD":"p"}}}`,
	} {
		f.Add([]byte(s))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		// Parse must not panic on anything, and Redact not on its result.
		if pc, err := config.Parse(data); err == nil {
			checkRedacted(t, pc)
		}

		c, err := config.ParseImport(data)
		if err != nil {
			if c.SchemaVersion != 0 || c.System != (config.System{}) {
				t.Errorf("ParseImport failed (%v) but returned a non-zero config", err)
			}
			return
		}
		checkRedacted(t, c)

		if c.Validate() != nil {
			return
		}
		// A valid import survives the save/load cycle unchanged.
		b := config.Marshal(c)
		parsed, err := config.Parse(b)
		if err != nil {
			t.Fatalf("Parse(Marshal(valid import)): %v\n%s", err, b)
		}
		if d := config.Diff(c, parsed); len(d) != 0 {
			t.Fatalf("Diff(import, Parse(Marshal(import))) = %v", d)
		}
		if err := parsed.Validate(); err != nil {
			t.Fatalf("re-parsed valid config no longer validates: %v", err)
		}
		// And so does it as an export.
		again, err := config.ParseImport(mustJSON(t, config.NewExport(c, "m", 1, time.Unix(0, 0), true)))
		if err != nil {
			t.Fatalf("ParseImport(NewExport(valid import)): %v", err)
		}
		if d := config.Diff(c, again); len(d) != 0 {
			t.Fatalf("Diff(import, ParseImport(NewExport(import))) = %v", d)
		}
	})
}
