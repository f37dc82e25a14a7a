package media

import (
	"slices"
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

func TestDefaultProfiles(t *testing.T) {
	ps := DefaultProfiles()
	if len(ps) != 2 || ps[0].Name != "default" || ps[1].Name != "Zoom" {
		t.Fatalf("DefaultProfiles names: %+v", ps)
	}
	for i, p := range ps {
		if err := p.Validate(); err != nil {
			t.Errorf("DefaultProfiles()[%d] (%s).Validate() = %v", i, p.Name, err)
		}
		if p.TelephoneEventPayloadType != 101 {
			t.Errorf("%s: telephone-event PT = %d, want 101", p.Name, p.TelephoneEventPayloadType)
		}
		if p.RTCPMode != RTCPBypass {
			t.Errorf("%s: rtcpMode = %q, want bypass", p.Name, p.RTCPMode)
		}
	}
	d, z := ps[0], ps[1]
	if d.Protocol != ProtocolRTP || d.SDES.Enabled || !d.AllowUnconfiguredCodecs || len(d.Codecs) != 0 {
		t.Errorf("default profile = %+v", d)
	}
	if d.Codecs == nil || d.SDES.Suites == nil {
		t.Error("default profile lists are nil, want empty (JSON [])")
	}
	if z.Protocol != ProtocolSRTP || !z.SDES.Enabled || z.KeepSendonlyOnNAT || !z.EnforceCodecPriority || !z.Transcoding || z.AllowUnconfiguredCodecs {
		t.Errorf("Zoom profile = %+v", z)
	}
	if want := []string{SuiteAES128SHA1_80, SuiteAES128SHA1_32}; !slices.Equal(z.SDES.Suites, want) {
		t.Errorf("Zoom suites = %q, want %q", z.SDES.Suites, want)
	}
	var names []string
	for i, c := range z.Codecs {
		names = append(names, c.Name)
		if c.Priority != i+1 {
			t.Errorf("Zoom codec %s priority %d, want %d", c.Name, c.Priority, i+1)
		}
	}
	if want := []string{"G722", "G711A", "G711U", "G729"}; !slices.Equal(names, want) {
		t.Errorf("Zoom codecs = %q, want %q", names, want)
	}
	// Fresh copies: changing one result must not change the next.
	ps[1].Codecs[0].Name = "OPUS"
	ps[1].SDES.Suites[0] = "x"
	if again := DefaultProfiles(); again[1].Codecs[0].Name != "G722" || again[1].SDES.Suites[0] != SuiteAES128SHA1_80 {
		t.Error("DefaultProfiles shares its slices between calls")
	}
}

func TestCodecs(t *testing.T) {
	names := Codecs()
	if len(names) != 11 {
		t.Fatalf("Codecs() has %d names, want 11: %q", len(names), names)
	}
	if len(codecs) != len(names) {
		t.Errorf("codec table has %d entries, Codecs() %d", len(codecs), len(names))
	}
	for _, n := range []string{"G711A", "G711U", "G722", "G729", "OPUS", "iLBC", "iSAC", "G7221-24", "G7221C-32"} {
		if !slices.Contains(names, n) {
			t.Errorf("Codecs() lacks %q", n)
		}
	}
	if codecs["G711A"] != "PCMA/8000" || codecs["G711U"] != "PCMU/8000" || codecs["OPUS"] != "opus/48000/2" {
		t.Errorf("SDP encodings: G711A=%q G711U=%q OPUS=%q", codecs["G711A"], codecs["G711U"], codecs["OPUS"])
	}
	// Every listed codec is accepted in a profile.
	for i, n := range names {
		p := Profile{Name: "p", Protocol: ProtocolRTP, RTCPMode: RTCPBypass, TelephoneEventPayloadType: 101,
			Codecs: []Codec{{Name: n, Priority: i + 1}}}
		if err := p.Validate(); err != nil {
			t.Errorf("codec %q refused: %v", n, err)
		}
	}
}

func good() Profile {
	return Profile{
		Name: "RedSky", Protocol: ProtocolBestEffort, RTCPMode: RTCPTerminate,
		SDES: SDES{Enabled: true, Suites: []string{SuiteAEADAES128GCM, SuiteAES128SHA1_80}},
		Codecs: []Codec{
			{Name: "OPUS", Priority: 1, PacketizationMs: 20},
			{Name: "G711U", Priority: 2, PacketizationMs: 0},
			{Name: "G729", Priority: 3, PacketizationMs: 120},
		},
		EnforcePacketization:      true,
		TelephoneEventPayloadType: 96,
	}
}

func TestProfileValidate(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(p *Profile)
		wantPath string
	}{
		// Good values.
		{"good", func(p *Profile) {}, ""},
		{"srtp", func(p *Profile) { p.Protocol = ProtocolSRTP }, ""},
		{"rtp without sdes", func(p *Profile) { p.Protocol = ProtocolRTP; p.SDES = SDES{} }, ""},
		{"rtp with sdes", func(p *Profile) { p.Protocol = ProtocolRTP }, ""},
		{"rtcp bypass", func(p *Profile) { p.RTCPMode = RTCPBypass }, ""},
		{"pt 127", func(p *Profile) { p.TelephoneEventPayloadType = 127 }, ""},
		{"pt 101", func(p *Profile) { p.TelephoneEventPayloadType = 101 }, ""},
		{"ptime 10", func(p *Profile) { p.Codecs[0].PacketizationMs = 10 }, ""},
		{"priority 99", func(p *Profile) { p.Codecs[2].Priority = 99 }, ""},
		{"no codecs but unconfigured allowed", func(p *Profile) { p.Codecs = nil; p.AllowUnconfiguredCodecs = true }, ""},
		{"sdes disabled with suites on rtp", func(p *Profile) { p.Protocol = ProtocolRTP; p.SDES.Enabled = false }, ""},

		// Bad values.
		{"name empty", func(p *Profile) { p.Name = "" }, "name"},
		{"protocol unknown", func(p *Profile) { p.Protocol = "zrtp" }, "protocol"},
		{"protocol empty", func(p *Profile) { p.Protocol = "" }, "protocol"},
		{"protocol wrong case", func(p *Profile) { p.Protocol = "SRTP" }, "protocol"},
		{"rtcp mode unknown", func(p *Profile) { p.RTCPMode = "mux" }, "rtcpMode"},
		{"rtcp mode empty", func(p *Profile) { p.RTCPMode = "" }, "rtcpMode"},
		{"srtp without sdes", func(p *Profile) { p.Protocol = ProtocolSRTP; p.SDES.Enabled = false }, "sdes.enabled"},
		{"best effort without sdes", func(p *Profile) { p.SDES.Enabled = false }, "sdes.enabled"},
		{"sdes without suites", func(p *Profile) { p.SDES.Suites = nil }, "sdes.suites"},
		{"unknown suite", func(p *Profile) { p.SDES.Suites[1] = "AES_256_CM_HMAC_SHA1_80" }, "sdes.suites[1]"},
		{"unknown suite while disabled", func(p *Profile) {
			p.Protocol = ProtocolRTP
			p.SDES = SDES{Suites: []string{"bogus"}}
		}, "sdes.suites[0]"},
		{"no codecs", func(p *Profile) { p.Codecs = []Codec{} }, "codecs"},
		{"unknown codec", func(p *Profile) { p.Codecs[0].Name = "G7299" }, "codecs[0].name"},
		{"codec wrong case", func(p *Profile) { p.Codecs[1].Name = "g711u" }, "codecs[1].name"},
		{"codec SDP name", func(p *Profile) { p.Codecs[1].Name = "PCMU" }, "codecs[1].name"},
		{"codec empty", func(p *Profile) { p.Codecs[2].Name = "" }, "codecs[2].name"},
		{"priority 0", func(p *Profile) { p.Codecs[0].Priority = 0 }, "codecs[0].priority"},
		{"priority 100", func(p *Profile) { p.Codecs[0].Priority = 100 }, "codecs[0].priority"},
		{"ptime 5", func(p *Profile) { p.Codecs[0].PacketizationMs = 5 }, "codecs[0].packetizationMs"},
		{"ptime 15", func(p *Profile) { p.Codecs[0].PacketizationMs = 15 }, "codecs[0].packetizationMs"},
		{"ptime 130", func(p *Profile) { p.Codecs[0].PacketizationMs = 130 }, "codecs[0].packetizationMs"},
		{"ptime -20", func(p *Profile) { p.Codecs[0].PacketizationMs = -20 }, "codecs[0].packetizationMs"},
		{"duplicate codec", func(p *Profile) { p.Codecs[2].Name = "OPUS" }, "codecs[2].name"},
		{"duplicate priority", func(p *Profile) { p.Codecs[1].Priority = 1 }, "codecs[1].priority"},
		{"pt 95", func(p *Profile) { p.TelephoneEventPayloadType = 95 }, "telephoneEventPayloadType"},
		{"pt 128", func(p *Profile) { p.TelephoneEventPayloadType = 128 }, "telephoneEventPayloadType"},
		{"pt 0", func(p *Profile) { p.TelephoneEventPayloadType = 0 }, "telephoneEventPayloadType"},
		{"busy tone style", func(p *Profile) { p.BusyTone = "loud" }, "busyTone"},
		{"busy tone 0.5 min", func(p *Profile) { p.BusyTone, p.BusyToneSeconds = "cept", 31 }, "busyToneSeconds"},
		{"busy tone negative", func(p *Profile) { p.BusyToneSeconds = -1 }, "busyToneSeconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := good()
			tt.mutate(&p)
			checkErr(t, p.Validate(), tt.wantPath)
		})
	}
}

func TestUnknownCodecMessage(t *testing.T) {
	p := good()
	p.Codecs[0].Name = "G7299"
	err := p.Validate()
	want := `codecs[0].name: unknown codec "G7299" (known: G711A, G711U, G722, G7221-24, G7221-32, G7221C-24, G7221C-32, G729, OPUS, iLBC, iSAC)`
	if err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want %s", err, want)
	}
}
