// Package cloudlinkd is the cloud connector: it links the appliance to a
// cloud account, reports inventory, relays push notifications and checks
// for firmware updates (seed 6.4).
//
// The connector is not built yet; for now the package defines, defaults
// and validates its configuration, the "cloudLink" section.
package cloudlinkd

import (
	"net/netip"
	"net/url"

	"github.com/psigate/psigate/appliance/field"
)

// Config is the "cloudLink" section of the configuration.
type Config struct {
	// Enabled connects the appliance to the cloud; default off.
	Enabled bool `json:"enabled"`
	// Proxy is an HTTP proxy towards the cloud; empty URL = direct.
	Proxy Proxy `json:"proxy"`
	// DNS servers used to resolve the cloud's names, e.g. "10.180.0.2";
	// empty = the system's resolvers.
	DNS []string `json:"dns"`
}

// Proxy is an HTTP(S) proxy with optional credentials.
type Proxy struct {
	// URL, e.g. "http://proxy.example.com:3128".
	URL      string `json:"url"`
	Username string `json:"username"`
	// Password is secret: never exported unless asked for.
	Password string `json:"password" secret:"true"`
}

// Default is a disconnected appliance.
func Default() Config {
	return Config{DNS: []string{}}
}

// Validate checks the proxy URL and DNS servers.
func (c Config) Validate() error {
	var l field.List
	if c.Proxy.URL != "" {
		u, err := url.Parse(c.Proxy.URL)
		switch {
		case err != nil:
			l.Addf("proxy.url", "%v", err)
		case u.Scheme != "http" && u.Scheme != "https":
			l.Addf("proxy.url", "scheme %q: want http or https", u.Scheme)
		case u.Hostname() == "":
			l.Addf("proxy.url", "no host in %q", c.Proxy.URL)
		case u.User != nil:
			l.Addf("proxy.url", "put credentials in proxy.username and proxy.password, not in the URL")
		default:
			l.Host("proxy.url", u.Hostname())
		}
	} else if c.Proxy.Username != "" || c.Proxy.Password != "" {
		l.Addf("proxy.url", "credentials given without a proxy URL")
	}
	if c.Proxy.Password != "" && c.Proxy.Username == "" {
		l.Addf("proxy.username", "required with a password")
	}
	for i, s := range c.DNS {
		if _, err := netip.ParseAddr(s); err != nil {
			l.Addf(field.Index("dns", i), "%q is not an IP address", s)
		}
	}
	return l.Err()
}
