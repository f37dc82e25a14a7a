// Package media holds what the SBC needs to anchor a call's media: the
// media profiles (seed 9.4) that decide RTP or SRTP, codec policy and RTCP
// handling per side. The relay itself is not built yet.
package media

import (
	"strconv"
	"strings"

	"github.com/psigate/psigate/appliance/field"
)

// Protocol is the media protocol of a profile (seed 9.4.2 "Media protocol").
type Protocol string

const (
	ProtocolRTP        Protocol = "rtp"        // "RTP only"
	ProtocolSRTP       Protocol = "srtp"       // "SRTP only": offers without usable crypto are refused
	ProtocolBestEffort Protocol = "bestEffort" // "Best Effort SRTP": SRTP when the peer offers it, else RTP
)

// RTCPMode is how RTCP is handled (seed 9.4.2 "RTCP Mode").
type RTCPMode string

const (
	RTCPBypass    RTCPMode = "bypass"    // relayed untouched where the keys allow
	RTCPTerminate RTCPMode = "terminate" // generated and consumed per leg
)

// SRTP crypto suites for SDES (RFC 4568, RFC 7714).
const (
	SuiteAES128SHA1_80 = "AES_CM_128_HMAC_SHA1_80"
	SuiteAES128SHA1_32 = "AES_CM_128_HMAC_SHA1_32"
	SuiteAEADAES128GCM = "AEAD_AES_128_GCM"
)

// Codec is one entry of a profile's codec list.
type Codec struct {
	// Name is one of Codecs(), e.g. "G722" or "G711A".
	Name string `json:"name"`
	// Priority orders the list, 1 = most preferred.
	Priority int `json:"priority"`
	// PacketizationMs is the ptime to use, in milliseconds; 0 = auto
	// (whatever the peer offers).
	PacketizationMs int `json:"packetizationMs"`
}

// codecs are the codecs the seed's transcoding feature lists (9.4.1),
// keyed by the names used in the configuration, with their SDP encoding.
var codecs = map[string]string{
	"G711A":     "PCMA/8000",
	"G711U":     "PCMU/8000",
	"G722":      "G722/8000",
	"G7221-24":  "G7221/16000 bitrate=24000",
	"G7221-32":  "G7221/16000 bitrate=32000",
	"G7221C-24": "G7221/32000 bitrate=24000",
	"G7221C-32": "G7221/32000 bitrate=32000",
	"G729":      "G729/8000",
	"OPUS":      "opus/48000/2",
	"iLBC":      "iLBC/8000",
	"iSAC":      "iSAC/16000",
}

// Codecs lists the codec names a profile may use.
func Codecs() []string {
	return []string{"G711A", "G711U", "G722", "G7221-24", "G7221-32", "G7221C-24", "G7221C-32", "G729", "OPUS", "iLBC", "iSAC"}
}

// SDES is the SDES key exchange setting of a profile (RFC 4568).
type SDES struct {
	Enabled bool `json:"enabled"`
	// Suites are the offered crypto suites in order of preference.
	Suites []string `json:"suites"`
}

// Profile is a media profile (seed 9.4.2, 9.4.3, 10.3.1).
type Profile struct {
	// Name identifies the profile, e.g. "Zoom".
	Name string `json:"name"`
	// Protocol is rtp, srtp or bestEffort.
	Protocol Protocol `json:"protocol"`
	// SDES configures SRTP keying; required on for srtp and bestEffort.
	SDES SDES `json:"sdes"`
	// RTCPMode is bypass or terminate.
	RTCPMode RTCPMode `json:"rtcpMode"`
	// Codecs is the codec list with priorities; empty with
	// AllowUnconfiguredCodecs means "anything the peers agree on".
	Codecs []Codec `json:"codecs"`
	// AllowUnconfiguredCodecs keeps codecs that are not in Codecs.
	AllowUnconfiguredCodecs bool `json:"allowUnconfiguredCodecs"`
	// EnforceCodecPriority reorders offers by Codecs' priorities.
	EnforceCodecPriority bool `json:"enforceCodecPriority"`
	// EnforcePacketization rewrites ptime to each codec's PacketizationMs.
	EnforcePacketization bool `json:"enforcePacketization"`
	// KeepSendonlyOnNAT keeps a=sendonly towards a client behind NAT.
	// The seed turns it off for Zoom: on, the client shows remote hold
	// but plays no music on hold.
	KeepSendonlyOnNAT bool `json:"keepSendonlyOnNAT"`
	// TelephoneEventPayloadType is the RFC 4733 telephone-event payload
	// type used towards this side, 96-127; default 101.
	TelephoneEventPayloadType int `json:"telephoneEventPayloadType"`
	// Transcoding allows G.711 A-law <-> u-law transcoding when the two
	// sides share no codec (seed 9.4.1 "Enable Codec Support for
	// transcoding").
	Transcoding bool `json:"transcoding"`
	// BusyTone: when the PBX refuses a call of this profile's client
	// with 486 Busy Here or 600 Busy Everywhere, psigate first plays a
	// busy tone to the client as early media (183 with SDP) for
	// BusyToneSeconds (default 4), then sends the refusal: Zoom clients
	// play none of their own (seed Appendix A). "" (off, the default),
	// "cept" (425 Hz) or "north-america" (480 + 620 Hz).
	BusyTone        string `json:"busyTone,omitempty"`
	BusyToneSeconds int    `json:"busyToneSeconds,omitempty"`
}

// DefaultProfiles are the profiles of a fresh appliance: "default" (RTP
// only, for a PBX reached over TCP, seed 9.4.3) and "Zoom" (SRTP only with
// SDES, RTCP bypass, G722, G711A, G711U, G729 in that order, seed 9.4.2).
func DefaultProfiles() []Profile {
	return []Profile{
		{
			Name: "default", Protocol: ProtocolRTP, RTCPMode: RTCPBypass,
			SDES:                    SDES{Suites: []string{}},
			Codecs:                  []Codec{},
			AllowUnconfiguredCodecs: true, TelephoneEventPayloadType: 101,
		},
		{
			Name: "Zoom", Protocol: ProtocolSRTP, RTCPMode: RTCPBypass,
			SDES: SDES{Enabled: true, Suites: []string{SuiteAES128SHA1_80, SuiteAES128SHA1_32}},
			Codecs: []Codec{
				{Name: "G722", Priority: 1}, {Name: "G711A", Priority: 2},
				{Name: "G711U", Priority: 3}, {Name: "G729", Priority: 4},
			},
			EnforceCodecPriority: true, TelephoneEventPayloadType: 101, Transcoding: true,
		},
	}
}

// Validate checks a profile on its own.
func (p Profile) Validate() error {
	var l field.List
	l.Required("name", p.Name)
	l.OneOf("protocol", string(p.Protocol), string(ProtocolRTP), string(ProtocolSRTP), string(ProtocolBestEffort))
	l.OneOf("rtcpMode", string(p.RTCPMode), string(RTCPBypass), string(RTCPTerminate))
	if p.Protocol != ProtocolRTP && !p.SDES.Enabled {
		l.Addf("sdes.enabled", "protocol %q needs SDES keying", p.Protocol)
	}
	if p.SDES.Enabled && len(p.SDES.Suites) == 0 {
		l.Addf("sdes.suites", "at least one crypto suite required")
	}
	for i, s := range p.SDES.Suites {
		l.OneOf(field.Index("sdes.suites", i), s, SuiteAES128SHA1_80, SuiteAES128SHA1_32, SuiteAEADAES128GCM)
	}
	if len(p.Codecs) == 0 && !p.AllowUnconfiguredCodecs {
		l.Addf("codecs", "no codec configured and unconfigured codecs not allowed: every call would fail")
	}
	names := make([]string, len(p.Codecs))
	prios := make([]string, len(p.Codecs))
	for i, c := range p.Codecs {
		names[i], prios[i] = c.Name, strconv.Itoa(c.Priority)
		l.Merge(field.Index("codecs", i), c.validate())
	}
	l.Unique("codecs", "name", names)
	l.Unique("codecs", "priority", prios)
	l.Range("telephoneEventPayloadType", p.TelephoneEventPayloadType, 96, 127)
	if p.BusyTone != "" {
		l.OneOf("busyTone", p.BusyTone, BusyToneCEPT, BusyToneNorthAmerica)
	}
	if p.BusyToneSeconds != 0 {
		l.Range("busyToneSeconds", p.BusyToneSeconds, 1, 30)
	}
	return l.Err()
}

func (c Codec) validate() error {
	var l field.List
	if _, ok := codecs[c.Name]; !ok {
		l.Addf("name", "unknown codec %q (known: %s)", c.Name, strings.Join(Codecs(), ", "))
	}
	l.Range("priority", c.Priority, 1, 99)
	if c.PacketizationMs != 0 && (c.PacketizationMs < 10 || c.PacketizationMs > 120 || c.PacketizationMs%10 != 0) {
		l.Addf("packetizationMs", "%d is not 0 (auto) or a multiple of 10 from 10 to 120", c.PacketizationMs)
	}
	return l.Err()
}
