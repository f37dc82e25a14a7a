package config

import "testing"

func TestKeepSecretsDropsSecretOfClearedHolder(t *testing.T) {
	prev := Default()
	prev.CloudLink.Proxy.URL = "http://proxy.example.com:3128"
	prev.CloudLink.Proxy.Username = "u"
	prev.CloudLink.Proxy.Password = "s3cret-proxy"

	kept := Redact(prev)
	KeepSecrets(&kept, prev)
	if kept.CloudLink.Proxy.Password != "s3cret-proxy" {
		t.Fatalf("redacted edit lost the password: %q", kept.CloudLink.Proxy.Password)
	}

	removed := Redact(prev)
	removed.CloudLink.Proxy.URL, removed.CloudLink.Proxy.Username = "", ""
	KeepSecrets(&removed, prev)
	if removed.CloudLink.Proxy.Password != "" {
		t.Fatalf("removing the proxy kept its password")
	}
	if err := removed.Validate(); err != nil {
		t.Fatalf("configuration without proxy: %v", err)
	}
}
