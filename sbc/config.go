// Package sbc is the session border controller: SIP signalling between
// the access realm (Zoom PSI clients) and the core realm (the PBX), and
// the media anchoring in sbc/media.
//
// Signalling is not built yet; for now the package defines, defaults and
// validates its configuration, the "sbc" section.
package sbc

import (
	"github.com/psigate/psigate/appliance/field"
	"github.com/psigate/psigate/sbc/media"
)

// Config is the "sbc" section of the configuration.
type Config struct {
	SIPServer         SIPServer         `json:"sipServer"`
	RemoteSubscribers RemoteSubscribers `json:"remoteSubscribers"`
	// MediaProfiles are the media profiles (seed 9.4).
	MediaProfiles []media.Profile `json:"mediaProfiles"`
	// UserAgentProfiles choose a client's media profile by its User-Agent
	// (seed 9.4.2 step 9); the first entry whose userAgent the header
	// contains wins.
	UserAgentProfiles []UserAgentProfile `json:"userAgentProfiles"`
	// CoreMediaProfile is the media profile towards the PBX (seed 9.4.3
	// "Core Side Media Configuration").
	CoreMediaProfile string    `json:"coreMediaProfile"`
	Security         Security  `json:"security"`
	Emergency        Emergency `json:"emergency"`
	Calls            Calls     `json:"calls"`
}

// UserAgentProfile maps a User-Agent to a media profile, e.g.
// "ZoomPbxPhone" -> "Zoom".
type UserAgentProfile struct {
	UserAgent    string `json:"userAgent"`
	MediaProfile string `json:"mediaProfile"`
}

// Default is the seed's configuration without site-specific values: no PBX
// yet, remote subscribers with register throttling, the "default" and
// "Zoom" media profiles, and ZoomPbxPhone clients on "Zoom".
func Default() Config {
	return Config{
		SIPServer:         DefaultSIPServer(),
		RemoteSubscribers: DefaultRemoteSubscribers(),
		MediaProfiles:     media.DefaultProfiles(),
		UserAgentProfiles: []UserAgentProfile{{UserAgent: "ZoomPbxPhone", MediaProfile: "Zoom"}},
		CoreMediaProfile:  "default",
		Security:          DefaultSecurity(),
		Emergency:         DefaultEmergency(),
		Calls:             DefaultCalls(),
	}
}

// Validate checks the section and its references between parts.
func (c Config) Validate() error {
	var l field.List
	l.Merge("sipServer", c.SIPServer.Validate())
	l.Merge("remoteSubscribers", c.RemoteSubscribers.Validate())
	names := make([]string, len(c.MediaProfiles))
	for i, p := range c.MediaProfiles {
		names[i] = p.Name
		l.Merge(field.Index("mediaProfiles", i), p.Validate())
	}
	l.Unique("mediaProfiles", "name", names)
	uas := make([]string, len(c.UserAgentProfiles))
	for i, u := range c.UserAgentProfiles {
		p := field.Index("userAgentProfiles", i)
		uas[i] = u.UserAgent
		l.Required(field.Join(p, "userAgent"), u.UserAgent)
		c.checkProfile(&l, field.Join(p, "mediaProfile"), u.MediaProfile)
	}
	l.Unique("userAgentProfiles", "userAgent", uas)
	c.checkProfile(&l, "coreMediaProfile", c.CoreMediaProfile)
	l.Merge("security", c.Security.Validate())
	l.Merge("emergency", c.Emergency.Validate())
	l.Merge("calls", c.Calls.Validate())
	if ep := c.Emergency.RemoteEndpoint; ep != nil && ep.MediaProfile != "" {
		c.checkProfile(&l, "emergency.remoteEndpoint.mediaProfile", ep.MediaProfile)
	}
	return l.Err()
}

// MediaProfile returns the profile with the given name, or nil.
func (c Config) MediaProfile(name string) *media.Profile {
	for i := range c.MediaProfiles {
		if c.MediaProfiles[i].Name == name {
			return &c.MediaProfiles[i]
		}
	}
	return nil
}

func (c Config) checkProfile(l *field.List, path, name string) {
	if name == "" {
		l.Addf(path, "required")
		return
	}
	if c.MediaProfile(name) == nil {
		l.Addf(path, "no media profile named %q", name)
	}
}
