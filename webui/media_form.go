package webui

// Forms of the Media pages: inputs named by configuration paths, so that
// a validation error is shown next to the input it names, and the
// parsing of the submitted forms.

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/psigate/psigate/appliance/field"
	"github.com/psigate/psigate/sbc"
	"github.com/psigate/psigate/sbc/media"
)

// slot is one input of a form: its configuration path (the id of the
// input; its wrapper's id is "field-" + path), its value, the choices of
// a select, and the errors placed next to it.
type slot struct {
	Path    string
	Value   string
	Options []option
	Errs    []string
}

// option is a choice of a select or a checkbox of a group.
type option struct {
	Value, Label string
	Selected     bool
}

// checkboxArgs are the arguments of the "checkbox" template.
type checkboxArgs struct {
	Slot        *slot
	Name, Label string
}

// form collects the slots of a page so that errors can be placed.
type form struct {
	slots map[string]*slot
	Top   []fieldError // errors that name no input of the page
}

func (f *form) input(path, value string) *slot {
	if f.slots == nil {
		f.slots = map[string]*slot{}
	}
	s := &slot{Path: path, Value: value}
	f.slots[path] = s
	return s
}

// choice is a select of values (shown as labels, or as themselves when
// labels is nil); a current value that is not among them is added, so
// that it is shown rather than silently replaced.
func (f *form) choice(path, value string, values, labels []string) *slot {
	s := f.input(path, value)
	found := false
	for i, v := range values {
		label := v
		if labels != nil {
			label = labels[i]
		}
		s.Options = append(s.Options, option{Value: v, Label: label, Selected: v == value})
		found = found || v == value
	}
	if !found {
		s.Options = append(s.Options, option{Value: value, Label: value + " (unknown)", Selected: true})
	}
	return s
}

// check is a checkbox; its value is "1" when on.
func (f *form) check(path string, on bool) *slot {
	if on {
		return f.input(path, "1")
	}
	return f.input(path, "")
}

// place puts each field error of err at the slot of its path, or of the
// nearest enclosing path that has one ("a.b[2].c", "a.b[2]", "a.b", "a");
// the others go to Top.
func (f *form) place(err error) {
	for _, fe := range fieldErrors(err) {
		if s := f.nearest(fe.Path); s != nil {
			s.Errs = append(s.Errs, fe.Message)
			continue
		}
		f.Top = append(f.Top, fe)
	}
}

func (f *form) nearest(path string) *slot {
	for path != "" {
		if s, ok := f.slots[path]; ok {
			return s
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return nil
		}
		path = path[:i]
	}
	return nil
}

// Labels of the seed (9.4.2) for the profile's choices.
var (
	protocolValues = []string{string(media.ProtocolRTP), string(media.ProtocolSRTP), string(media.ProtocolBestEffort)}
	protocolLabels = []string{"RTP only", "SRTP only", "Best effort SRTP"}
	rtcpValues     = []string{string(media.RTCPBypass), string(media.RTCPTerminate)}
	rtcpLabels     = []string{"Bypass", "Terminate"}
	knownSuites    = []string{media.SuiteAES128SHA1_80, media.SuiteAES128SHA1_32, media.SuiteAEADAES128GCM}
)

// ptimeChoices are the packetization intervals offered: 0 (auto), 10-120.
func ptimeChoices() (values, labels []string) {
	values, labels = []string{"0"}, []string{"Auto"}
	for ms := 10; ms <= 120; ms += 10 {
		values = append(values, strconv.Itoa(ms))
		labels = append(labels, fmt.Sprintf("%d ms", ms))
	}
	return values, labels
}

func label(values, labels []string, v string) string {
	for i, x := range values {
		if x == v {
			return labels[i]
		}
	}
	return v
}

// emptyCodecRows is how many blank codec rows the profile form offers for
// adding codecs; rows without a codec are ignored.
const emptyCodecRows = 3

// formInt reads a number field; empty is 0, or "required" when required.
func formInt(l *field.List, path, s string, required bool) int {
	s = strings.TrimSpace(s)
	if s == "" {
		if required {
			l.Addf(path, "required")
		}
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		l.Addf(path, "%q is not a number", s)
	}
	return n
}

func at(list []string, i int) string {
	if i < len(list) {
		return list[i]
	}
	return ""
}

// parseProfileForm reads the profile form; P is the path the profile
// will have, for the errors of fields that are not numbers.
func parseProfileForm(f url.Values, P string) (media.Profile, error) {
	var l field.List
	on := func(name string) bool { return f.Get(name) == "1" }
	p := media.Profile{
		Name:                    strings.TrimSpace(f.Get("name")),
		Protocol:                media.Protocol(f.Get("protocol")),
		SDES:                    media.SDES{Enabled: on("sdesEnabled"), Suites: append([]string{}, f["suite"]...)},
		RTCPMode:                media.RTCPMode(f.Get("rtcpMode")),
		Codecs:                  []media.Codec{},
		AllowUnconfiguredCodecs: on("allowUnconfiguredCodecs"),
		EnforceCodecPriority:    on("enforceCodecPriority"),
		EnforcePacketization:    on("enforcePacketization"),
		KeepSendonlyOnNAT:       on("keepSendonlyOnNAT"),
		Transcoding:             on("transcoding"),
		BusyTone:                f.Get("busyTone"),
	}
	p.TelephoneEventPayloadType = formInt(&l, P+".telephoneEventPayloadType", f.Get("telephoneEventPayloadType"), true)
	p.BusyToneSeconds = formInt(&l, P+".busyToneSeconds", f.Get("busyToneSeconds"), false)
	prios, ptimes := f["codecPriority"], f["codecPtime"]
	for i, name := range f["codecName"] {
		if name == "" {
			continue
		}
		cp := field.Index(P+".codecs", len(p.Codecs))
		p.Codecs = append(p.Codecs, media.Codec{
			Name:            name,
			Priority:        formInt(&l, cp+".priority", at(prios, i), true),
			PacketizationMs: formInt(&l, cp+".packetizationMs", at(ptimes, i), false),
		})
	}
	return p, l.Err()
}

// parseUserAgentRows reads the User-Agent rows: "ua" and "uaProfile" in
// order, the row numbered by the "delete" button left out, the one
// numbered by "up" moved up, and rows with neither value ignored.
func parseUserAgentRows(f url.Values) []sbc.UserAgentProfile {
	uas, profiles := f["ua"], f["uaProfile"]
	rows := make([]sbc.UserAgentProfile, len(uas))
	for i, ua := range uas {
		rows[i] = sbc.UserAgentProfile{UserAgent: strings.TrimSpace(ua), MediaProfile: at(profiles, i)}
	}
	if up, err := strconv.Atoi(f.Get("up")); err == nil && up > 0 && up < len(rows) {
		rows[up-1], rows[up] = rows[up], rows[up-1]
	}
	del, err := strconv.Atoi(f.Get("delete"))
	if err != nil {
		del = -1
	}
	out := []sbc.UserAgentProfile{}
	for i, u := range rows {
		if i != del && (u.UserAgent != "" || u.MediaProfile != "") {
			out = append(out, u)
		}
	}
	return out
}

// parsePortRows reads the media port rows ("realm", "min", "max"); realmPath
// names row i's realm's path for the errors of non-numbers.
func parsePortRows(f url.Values, realmPath func(i int, realm string) string) ([]realmPorts, error) {
	var l field.List
	mins, maxs := f["min"], f["max"]
	out := []realmPorts{}
	for i, realm := range f["realm"] {
		p := realmPath(i, realm) + ".mediaPorts"
		out = append(out, realmPorts{
			Realm: realm,
			Min:   formInt(&l, p+".min", at(mins, i), true),
			Max:   formInt(&l, p+".max", at(maxs, i), true),
		})
	}
	return out, l.Err()
}
