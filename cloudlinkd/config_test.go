package cloudlinkd

import (
	"slices"
	"strings"
	"testing"

	"github.com/psigate/psigate/appliance/field"
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

func TestDefault(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	if c.Enabled {
		t.Error("Default is enabled, want off")
	}
	if c.Proxy != (Proxy{}) {
		t.Errorf("Default proxy = %+v, want none", c.Proxy)
	}
	if c.DNS == nil || len(c.DNS) != 0 {
		t.Errorf("Default DNS = %#v, want empty non-nil", c.DNS)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name     string
		c        Config
		wantPath string
	}{
		// Good values.
		{"zero", Config{}, ""},
		{"enabled direct", Config{Enabled: true, DNS: []string{"10.180.0.2", "2001:db8::53"}}, ""},
		{"http proxy", Config{Proxy: Proxy{URL: "http://proxy.example.com:3128"}}, ""},
		{"https proxy with credentials", Config{Proxy: Proxy{URL: "https://10.0.0.8:8443", Username: "u", Password: "p"}}, ""},
		{"proxy username only", Config{Proxy: Proxy{URL: "http://proxy", Username: "u"}}, ""},
		{"ipv6 proxy", Config{Proxy: Proxy{URL: "http://[2001:db8::8]:3128"}}, ""},

		// Bad values.
		{"proxy scheme ftp", Config{Proxy: Proxy{URL: "ftp://proxy.example.com"}}, "proxy.url"},
		{"proxy scheme socks5", Config{Proxy: Proxy{URL: "socks5://proxy.example.com:1080"}}, "proxy.url"},
		{"proxy no scheme", Config{Proxy: Proxy{URL: "proxy.example.com"}}, "proxy.url"},
		{"proxy host:port without scheme", Config{Proxy: Proxy{URL: "proxy.example.com:3128"}}, "proxy.url"},
		{"proxy no host", Config{Proxy: Proxy{URL: "http://:3128"}}, "proxy.url"},
		{"proxy empty host", Config{Proxy: Proxy{URL: "http://"}}, "proxy.url"},
		{"proxy unparsable", Config{Proxy: Proxy{URL: "http://[::1"}}, "proxy.url"},
		{"proxy bad host", Config{Proxy: Proxy{URL: "http://proxy_1.example.com:3128"}}, "proxy.url"},
		{"proxy credentials in URL", Config{Proxy: Proxy{URL: "http://user:pw@proxy.example.com:3128"}}, "proxy.url"},
		{"proxy user in URL", Config{Proxy: Proxy{URL: "http://user@proxy.example.com:3128"}}, "proxy.url"},
		{"username without URL", Config{Proxy: Proxy{Username: "u"}}, "proxy.url"},
		{"password without URL", Config{Proxy: Proxy{Username: "u", Password: "p"}}, "proxy.url"},
		{"password without username", Config{Proxy: Proxy{URL: "http://proxy", Password: "p"}}, "proxy.username"},
		{"dns name", Config{DNS: []string{"10.0.0.2", "dns.example.com"}}, "dns[1]"},
		{"dns empty", Config{DNS: []string{""}}, "dns[0]"},
		{"dns with port", Config{DNS: []string{"10.0.0.2:53"}}, "dns[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, tt.c.Validate(), tt.wantPath)
		})
	}
}

func TestValidateMessagesHidePassword(t *testing.T) {
	const secret = "s3cr3t-Pa55"
	for _, c := range []Config{
		{Proxy: Proxy{Username: "u", Password: secret}},
		{Proxy: Proxy{URL: "http://proxy", Password: secret}},
		{Proxy: Proxy{URL: "ftp://proxy", Username: "u", Password: secret}},
	} {
		err := c.Validate()
		if err == nil {
			t.Fatalf("Validate(%+v) = nil, want an error", c.Proxy)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error reveals the proxy password: %v", err)
		}
	}
}
