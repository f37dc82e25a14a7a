package sbc

import (
	"github.com/psigate/psigate/appliance/field"
)

// Emergency routes emergency numbers to a remote endpoint, the E911
// provider (seed chapter 10).
type Emergency struct {
	// Numbers are the dialled strings treated as emergency calls, e.g.
	// "911", "933", "112".
	Numbers []string `json:"numbers"`
	// RemoteEndpoint is the E911 provider; nil = emergency calls go to the
	// PBX like any other call.
	RemoteEndpoint *RemoteEndpoint `json:"remoteEndpoint"`
}

// RemoteEndpoint is a SIP service provider endpoint (seed 10.3.2).
type RemoteEndpoint struct {
	// Name, e.g. "RedSky".
	Name string `json:"name"`
	// Address is the provider's FQDN or IP (seed "Remote URL").
	Address string `json:"address"`
	// Port, e.g. 5061.
	Port int `json:"port"`
	// Transport is udp, tcp or tls, as the provider says.
	Transport Transport `json:"transport"`
	// MediaProfile towards the provider, e.g. "RedSky" (seed 10.3.1).
	MediaProfile string `json:"mediaProfile"`
	// AccessRealm and CoreRealm name the realms the calls use.
	AccessRealm string `json:"accessRealm"`
	CoreRealm   string `json:"coreRealm"`
	// PrivacyFlags enables the SSP privacy and complementary flags (seed
	// 10.3.2.1).
	PrivacyFlags bool `json:"privacyFlags"`
}

// DefaultEmergency treats 911 and 933 (the US test number) as emergency
// numbers, with no provider endpoint yet.
func DefaultEmergency() Emergency {
	return Emergency{Numbers: []string{"911", "933"}}
}

// Validate checks the numbers and the endpoint (its realm and profile
// references are checked by the sections that own those names).
func (e Emergency) Validate() error {
	var l field.List
	for i, n := range e.Numbers {
		if !dialString(n) {
			l.Addf(field.Index("numbers", i), "%q is not a dial string (digits, *, #, leading +)", n)
		}
	}
	l.Unique("numbers", "", e.Numbers)
	if ep := e.RemoteEndpoint; ep != nil {
		l.Required("remoteEndpoint.name", ep.Name)
		l.Host("remoteEndpoint.address", ep.Address)
		l.Port("remoteEndpoint.port", ep.Port, false)
		l.OneOf("remoteEndpoint.transport", string(ep.Transport), string(TransportUDP), string(TransportTCP), string(TransportTLS))
		l.Required("remoteEndpoint.accessRealm", ep.AccessRealm)
		l.Required("remoteEndpoint.coreRealm", ep.CoreRealm)
	}
	return l.Err()
}

func dialString(s string) bool {
	if s == "" || s == "+" || len(s) > 32 {
		return false
	}
	for i, c := range s {
		if !(c >= '0' && c <= '9' || c == '*' || c == '#' || c == '+' && i == 0) {
			return false
		}
	}
	return true
}
