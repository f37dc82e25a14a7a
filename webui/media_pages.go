package webui

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/psigate/psigate/appliance/config"
	"github.com/psigate/psigate/appliance/field"
	"github.com/psigate/psigate/netcfg"
	"github.com/psigate/psigate/sbc/media"
)

// mediaData is the Media page.
type mediaData struct {
	Changes  int // differences of the candidate from running
	Profiles []profileRow
	UAs      []uaRow
	UATable  *slot
	Core     *slot
	Ports    []portRow
}

type profileRow struct {
	Slot                     *slot
	Name, Protocol, SDES     string
	RTCP, EditURL, DeleteURL string
	Codecs, Flags            []string
}

type uaRow struct {
	Index     int // in the list
	Pos       int // as shown, from 1
	New       bool
	UserAgent *slot
	Profile   *slot
}

type portRow struct {
	Realm, Role   string
	Row, Min, Max *slot
}

// profileURL is the page of the profile named name. "new" is the form for
// a new profile, so a profile of that name is edited with ?edit=1.
func profileURL(name string) string {
	if name == "new" {
		return "/media/profiles/new?edit=1"
	}
	return "/media/profiles/" + url.PathEscape(name)
}

func profileRowOf(f *form, i int, p media.Profile) profileRow {
	row := profileRow{
		Slot: f.input(profilePath(i), ""), Name: p.Name,
		Protocol: label(protocolValues, protocolLabels, string(p.Protocol)),
		SDES:     "off", RTCP: label(rtcpValues, rtcpLabels, string(p.RTCPMode)),
		EditURL: profileURL(p.Name), DeleteURL: "/media/profiles/" + url.PathEscape(p.Name) + "/delete",
	}
	if p.SDES.Enabled {
		row.SDES = strings.Join(p.SDES.Suites, ", ")
	}
	codecs := slices.Clone(p.Codecs)
	slices.SortStableFunc(codecs, func(a, b media.Codec) int { return a.Priority - b.Priority })
	for _, c := range codecs {
		ptime := "auto"
		if c.PacketizationMs != 0 {
			ptime = fmt.Sprintf("%d ms", c.PacketizationMs)
		}
		row.Codecs = append(row.Codecs, fmt.Sprintf("%d. %s (%s)", c.Priority, c.Name, ptime))
	}
	for _, fl := range []struct {
		on   bool
		text string
	}{
		{p.AllowUnconfiguredCodecs, "unconfigured codecs allowed"},
		{p.EnforceCodecPriority, "codec priority enforced"},
		{p.EnforcePacketization, "packetization enforced"},
		{p.KeepSendonlyOnNAT, "sendonly kept on NAT"},
		{p.Transcoding, "G.711 A-law/u-law transcoding"},
	} {
		if fl.on {
			row.Flags = append(row.Flags, fl.text)
		}
	}
	row.Flags = append(row.Flags, fmt.Sprintf("telephone-event %d", p.TelephoneEventPayloadType))
	return row
}

// buildMedia lays out the Media page for c.
func buildMedia(f *form, c config.Config) mediaData {
	d := mediaData{UATable: f.input("sbc.userAgentProfiles", "")}
	var names []string
	for i, p := range c.SBC.MediaProfiles {
		names = append(names, p.Name)
		d.Profiles = append(d.Profiles, profileRowOf(f, i, p))
	}
	rows := c.SBC.UserAgentProfiles
	for i := 0; i <= len(rows); i++ {
		path := field.Index("sbc.userAgentProfiles", i)
		row := uaRow{Index: i, Pos: i + 1, New: i == len(rows)}
		if row.New {
			row.UserAgent = f.input(path+".userAgent", "")
			row.Profile = f.choice(path+".mediaProfile", "", append([]string{""}, names...), append([]string{"(choose)"}, names...))
		} else {
			row.UserAgent = f.input(path+".userAgent", rows[i].UserAgent)
			row.Profile = f.choice(path+".mediaProfile", rows[i].MediaProfile, names, nil)
		}
		d.UAs = append(d.UAs, row)
	}
	d.Core = f.choice("sbc.coreMediaProfile", c.SBC.CoreMediaProfile, names, nil)
	for j, r := range c.Network.Realms {
		path := field.Index("network.realms", j)
		d.Ports = append(d.Ports, portRow{
			Realm: r.Name, Role: string(r.Role), Row: f.input(path, ""),
			Min: f.input(path+".mediaPorts.min", strconv.Itoa(r.MediaPorts.Min)),
			Max: f.input(path+".mediaPorts.max", strconv.Itoa(r.MediaPorts.Max)),
		})
	}
	return d
}

// changes counts the differences of the candidate from running.
func (s *Server) changes() (int, error) {
	cand, err := s.opts.Config.Candidate()
	if err != nil {
		return 0, err
	}
	run, err := s.opts.Config.Running()
	if err != nil {
		return 0, err
	}
	return len(config.Diff(run.Config, cand)), nil
}

// showMedia renders the Media page for c (the candidate when nil), with
// msg as the error and err's field errors placed at their inputs.
func (s *Server) showMedia(w http.ResponseWriter, r *http.Request, status int, c *config.Config, msg string, err error) {
	if c == nil {
		cand, cerr := s.opts.Config.Candidate()
		if cerr != nil {
			s.fail(w, r, cerr)
			return
		}
		c = &cand
	}
	var f form
	d := buildMedia(&f, *c)
	f.place(err)
	n, cerr := s.changes()
	if cerr != nil {
		s.fail(w, r, cerr)
		return
	}
	d.Changes = n
	s.render(w, r, status, "media", view{Title: "Media", Nav: "media", Error: msg, Fields: f.Top, Data: d})
}

func (s *Server) mediaPage(w http.ResponseWriter, r *http.Request) {
	s.showMedia(w, r, http.StatusOK, nil, "", nil)
}

// notSaved heads the errors of a refused form.
const notSaved = "Nothing was saved. Correct the fields marked below."

// mediaFormDone answers a form of the Media page: a redirect on success,
// else the page again with the refused values and the errors.
func (s *Server) mediaFormDone(w http.ResponseWriter, r *http.Request, c config.Config, err error, ok, refused string) {
	switch {
	case err == nil:
		redirect(w, r, "/media", ok)
	case errors.Is(err, errNoProfile):
		s.showMedia(w, r, http.StatusNotFound, nil, err.Error(), nil)
	case fieldErrors(err) != nil:
		s.showMedia(w, r, http.StatusUnprocessableEntity, &c, refused, err)
	default:
		s.fail(w, r, err)
	}
}

const applyHint = " Apply it on the Configuration page."

func (s *Server) profileDeleteForm(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	c, err := s.editCandidate(r, func(c *config.Config) error { return deleteProfile(c, name) })
	s.mediaFormDone(w, r, c, err, fmt.Sprintf("Profile %q deleted from the candidate.", name)+applyHint,
		fmt.Sprintf("Profile %q was not deleted: it is still used.", name))
}

// parsedForm parses a form body; a body that does not parse, or lacks
// the field every such form has, is answered with 400 and false.
func parsedForm(w http.ResponseWriter, r *http.Request, must string) bool {
	if err := r.ParseForm(); err != nil || !r.PostForm.Has(must) {
		http.Error(w, "Bad request: incomplete form", http.StatusBadRequest)
		return false
	}
	return true
}

func (s *Server) userAgentsForm(w http.ResponseWriter, r *http.Request) {
	if !parsedForm(w, r, "ua") {
		return
	}
	rows := parseUserAgentRows(r.PostForm)
	c, err := s.editCandidate(r, func(c *config.Config) error {
		c.SBC.UserAgentProfiles = rows
		if r.PostForm.Has("coreMediaProfile") {
			c.SBC.CoreMediaProfile = r.PostForm.Get("coreMediaProfile")
		}
		return nil
	})
	s.mediaFormDone(w, r, c, err, "Profile selection saved in the candidate."+applyHint, notSaved)
}

func (s *Server) portsForm(w http.ResponseWriter, r *http.Request) {
	if !parsedForm(w, r, "realm") {
		return
	}
	c, err := s.editCandidate(r, func(c *config.Config) error {
		list, err := parsePortRows(r.PostForm, func(i int, realm string) string {
			if j := slices.IndexFunc(c.Network.Realms, func(x netcfg.Realm) bool { return x.Name == realm }); j >= 0 {
				return field.Index("network.realms", j)
			}
			return field.Index("mediaPorts", i)
		})
		if err != nil {
			return err
		}
		return setPorts(c, list)
	})
	s.mediaFormDone(w, r, c, err, "Media ports saved in the candidate."+applyHint, notSaved)
}
