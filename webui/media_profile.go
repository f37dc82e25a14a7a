package webui

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/psigate/psigate/appliance/config"
	"github.com/psigate/psigate/sbc/media"
)

// profileData is the form of one media profile.
type profileData struct {
	Changes  int
	New      bool
	Action   string
	Name     *slot
	Protocol *slot
	SDES     *slot
	Suites   *slot // the checkboxes are its Options
	RTCP     *slot
	Codecs   *slot
	Rows     []codecRow

	AllowUnconfigured, EnforcePriority, EnforcePacketization *slot
	KeepSendonly, TelephoneEvent, Transcoding                *slot
	BusyTone, BusyToneSeconds                                *slot
}

type codecRow struct{ Name, Priority, Ptime *slot }

// buildProfile lays out the form of p as the profile at index i.
func buildProfile(f *form, p media.Profile, i int) profileData {
	P := profilePath(i)
	d := profileData{
		Name:                 f.input(P+".name", p.Name),
		Protocol:             f.choice(P+".protocol", string(p.Protocol), protocolValues, protocolLabels),
		SDES:                 f.check(P+".sdes.enabled", p.SDES.Enabled),
		Suites:               f.input(P+".sdes.suites", ""),
		RTCP:                 f.choice(P+".rtcpMode", string(p.RTCPMode), rtcpValues, rtcpLabels),
		Codecs:               f.input(P+".codecs", ""),
		AllowUnconfigured:    f.check(P+".allowUnconfiguredCodecs", p.AllowUnconfiguredCodecs),
		EnforcePriority:      f.check(P+".enforceCodecPriority", p.EnforceCodecPriority),
		EnforcePacketization: f.check(P+".enforcePacketization", p.EnforcePacketization),
		KeepSendonly:         f.check(P+".keepSendonlyOnNAT", p.KeepSendonlyOnNAT),
		TelephoneEvent:       f.input(P+".telephoneEventPayloadType", strconv.Itoa(p.TelephoneEventPayloadType)),
		Transcoding:          f.check(P+".transcoding", p.Transcoding),
		BusyTone:             f.choice(P+".busyTone", p.BusyTone, busyToneValues, busyToneLabels),
		BusyToneSeconds:      f.input(P+".busyToneSeconds", secondsOrEmpty(p.BusyToneSeconds)),
	}
	// The chosen suites first, in their order of preference, then the rest.
	for _, s := range p.SDES.Suites {
		d.Suites.Options = append(d.Suites.Options, option{Value: s, Label: s, Selected: true})
	}
	for _, s := range knownSuites {
		if !slices.Contains(p.SDES.Suites, s) {
			d.Suites.Options = append(d.Suites.Options, option{Value: s, Label: s})
		}
	}
	d.Rows = codecRows(f, P, p.Codecs)
	return d
}

// codecRows are the rows of the codecs, then emptyCodecRows blank ones
// with the next priorities.
func codecRows(f *form, P string, codecs []media.Codec) []codecRow {
	names := append([]string{""}, media.Codecs()...)
	labels := append([]string{"(none)"}, media.Codecs()...)
	ptimes, ptimeLabels := ptimeChoices()
	var rows []codecRow
	next := 1
	add := func(c media.Codec) {
		cp := P + ".codecs[" + strconv.Itoa(len(rows)) + "]"
		prio := ""
		if c.Priority != 0 {
			prio = strconv.Itoa(c.Priority)
		}
		rows = append(rows, codecRow{
			Name:     f.choice(cp+".name", c.Name, names, labels),
			Priority: f.input(cp+".priority", prio),
			Ptime:    f.choice(cp+".packetizationMs", strconv.Itoa(c.PacketizationMs), ptimes, ptimeLabels),
		})
	}
	for _, c := range codecs {
		add(c)
		next = max(next, c.Priority+1)
	}
	for j := range emptyCodecRows {
		add(media.Codec{Priority: next + j})
	}
	return rows
}

// newProfile is what the form for a new profile starts with: RTP only,
// like the seed's "default" profile.
func newProfile() media.Profile {
	return media.Profile{
		Protocol: media.ProtocolRTP, RTCPMode: media.RTCPBypass,
		SDES: media.SDES{Suites: []string{}}, Codecs: []media.Codec{},
		AllowUnconfiguredCodecs: true, TelephoneEventPayloadType: 101,
	}
}

// showProfile renders the form of p as the profile at index i; orig is
// its current name, "" for a new one.
func (s *Server) showProfile(w http.ResponseWriter, r *http.Request, status int, p media.Profile, i int, orig string, err error) {
	var f form
	d := buildProfile(&f, p, i)
	f.place(err)
	n, cerr := s.changes()
	if cerr != nil {
		s.fail(w, r, cerr)
		return
	}
	d.Changes, d.New = n, orig == ""
	v := view{Title: "New media profile", Nav: "media", Fields: f.Top}
	d.Action = "/media/profiles"
	if !d.New {
		v.Title = "Media profile " + orig
		d.Action += "/" + url.PathEscape(orig)
	}
	if err != nil {
		v.Error = notSaved
	}
	v.Data = d
	s.render(w, r, status, "media_profile", v)
}

func (s *Server) profileNewPage(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("edit") == "1" {
		s.profileEdit(w, r, "new")
		return
	}
	c, err := s.opts.Config.Candidate()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.showProfile(w, r, http.StatusOK, newProfile(), len(c.SBC.MediaProfiles), "", nil)
}

func (s *Server) profileEditPage(w http.ResponseWriter, r *http.Request) {
	s.profileEdit(w, r, r.PathValue("name"))
}

func (s *Server) profileEdit(w http.ResponseWriter, r *http.Request, name string) {
	c, err := s.opts.Config.Candidate()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	i := profileIndex(c, name)
	if i < 0 {
		s.showMedia(w, r, http.StatusNotFound, &c, noProfile(name).Error(), nil)
		return
	}
	s.showProfile(w, r, http.StatusOK, c.SBC.MediaProfiles[i], i, name, nil)
}

func (s *Server) profileCreateForm(w http.ResponseWriter, r *http.Request) {
	s.profileForm(w, r, "")
}

func (s *Server) profileUpdateForm(w http.ResponseWriter, r *http.Request) {
	s.profileForm(w, r, r.PathValue("name"))
}

// profileForm saves the profile form as the profile named orig, or as a
// new one when orig is empty.
func (s *Server) profileForm(w http.ResponseWriter, r *http.Request, orig string) {
	if !parsedForm(w, r, "name") {
		return
	}
	var p media.Profile
	i := -1
	_, err := s.editCandidate(r, func(c *config.Config) error {
		i = len(c.SBC.MediaProfiles)
		if orig != "" {
			if i = profileIndex(*c, orig); i < 0 {
				return noProfile(orig)
			}
		}
		var err error
		if p, err = parseProfileForm(r.PostForm, profilePath(i)); err != nil {
			return err
		}
		_, err = putProfile(c, orig, p)
		return err
	})
	switch {
	case err == nil:
		redirect(w, r, "/media", fmt.Sprintf("Profile %q saved in the candidate.", p.Name)+applyHint)
	case errors.Is(err, errNoProfile):
		s.showMedia(w, r, http.StatusNotFound, nil, err.Error(), nil)
	case fieldErrors(err) != nil:
		s.showProfile(w, r, http.StatusUnprocessableEntity, p, i, orig, err)
	default:
		s.fail(w, r, err)
	}
}

// The busy tone choices of a profile (seed Appendix A).
var (
	busyToneValues = []string{"", media.BusyToneCEPT, media.BusyToneNorthAmerica}
	busyToneLabels = []string{"Off", "425 Hz (CEPT)", "480 + 620 Hz (North America)"}
)

func secondsOrEmpty(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}
