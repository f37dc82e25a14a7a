package webui

// The media settings of the candidate: media profiles (seed 9.4), the
// User-Agent -> profile map, the core-side profile and the media port
// range per realm. The page and the API edit the candidate through the
// same functions; saveCandidate validates and audits.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/psigate/psigate/appliance/config"
	"github.com/psigate/psigate/appliance/field"
	"github.com/psigate/psigate/netcfg"
	"github.com/psigate/psigate/sbc"
	"github.com/psigate/psigate/sbc/media"
)

// mediaView is GET /api/v1/media.
type mediaView struct {
	Profiles          []media.Profile        `json:"profiles"`
	UserAgentProfiles []sbc.UserAgentProfile `json:"userAgentProfiles"`
	CoreMediaProfile  string                 `json:"coreMediaProfile"`
	MediaPorts        []realmPorts           `json:"mediaPorts"`
}

// realmPorts is one realm's media port range.
type realmPorts struct {
	Realm string `json:"realm"`
	Min   int    `json:"min"`
	Max   int    `json:"max"`
}

func mediaOf(c config.Config) mediaView {
	v := mediaView{
		Profiles:          c.SBC.MediaProfiles,
		UserAgentProfiles: c.SBC.UserAgentProfiles,
		CoreMediaProfile:  c.SBC.CoreMediaProfile,
		MediaPorts:        []realmPorts{},
	}
	if v.Profiles == nil {
		v.Profiles = []media.Profile{}
	}
	if v.UserAgentProfiles == nil {
		v.UserAgentProfiles = []sbc.UserAgentProfile{}
	}
	for _, r := range c.Network.Realms {
		v.MediaPorts = append(v.MediaPorts, realmPorts{Realm: r.Name, Min: r.MediaPorts.Min, Max: r.MediaPorts.Max})
	}
	return v
}

// errNoProfile marks a media profile that does not exist (404).
var errNoProfile = errors.New("no media profile named")

func noProfile(name string) error { return fmt.Errorf("%w %q", errNoProfile, name) }

// profilePath is the configuration path of profile i.
func profilePath(i int) string { return field.Index("sbc.mediaProfiles", i) }

// profileIndex is the index of the profile named name, or -1.
func profileIndex(c config.Config, name string) int {
	return slices.IndexFunc(c.SBC.MediaProfiles, func(p media.Profile) bool { return p.Name == name })
}

// normalizeProfile gives absent lists their empty value, as the defaults
// have, so that a profile sent without them does not show up in diffs.
func normalizeProfile(p *media.Profile) {
	if p.SDES.Suites == nil {
		p.SDES.Suites = []string{}
	}
	if p.Codecs == nil {
		p.Codecs = []media.Codec{}
	}
}

// putProfile stores p in place of the profile named old, renaming it and
// every reference to it when p's name differs. With old empty, or absent
// and equal to p's name, p is added at the end. It returns p's index.
func putProfile(c *config.Config, old string, p media.Profile) (int, error) {
	normalizeProfile(&p)
	list := c.SBC.MediaProfiles
	i := -1
	if old != "" {
		i = profileIndex(*c, old)
	}
	if i < 0 {
		if old != "" && p.Name != old {
			return -1, noProfile(old)
		}
		c.SBC.MediaProfiles = append(list, p)
		return len(list), nil
	}
	for j, q := range list {
		if j != i && p.Name != "" && strings.EqualFold(q.Name, p.Name) {
			return i, &field.Error{Path: profilePath(i) + ".name", Msg: fmt.Sprintf("duplicate %q (also at %s)", p.Name, profilePath(j))}
		}
	}
	list[i] = p
	if p.Name != old {
		renameProfileRefs(&c.SBC, old, p.Name)
	}
	return i, nil
}

// renameProfileRefs points every reference to profile old at new.
func renameProfileRefs(sc *sbc.Config, old, new string) {
	for i := range sc.UserAgentProfiles {
		if sc.UserAgentProfiles[i].MediaProfile == old {
			sc.UserAgentProfiles[i].MediaProfile = new
		}
	}
	if sc.CoreMediaProfile == old {
		sc.CoreMediaProfile = new
	}
	if ep := sc.Emergency.RemoteEndpoint; ep != nil && ep.MediaProfile == old {
		ep.MediaProfile = new
	}
}

// profileRefs names the fields that use profile name.
func profileRefs(sc sbc.Config, name string) []string {
	var out []string
	for i, u := range sc.UserAgentProfiles {
		if u.MediaProfile == name {
			out = append(out, field.Index("sbc.userAgentProfiles", i)+".mediaProfile")
		}
	}
	if sc.CoreMediaProfile == name {
		out = append(out, "sbc.coreMediaProfile")
	}
	if ep := sc.Emergency.RemoteEndpoint; ep != nil && ep.MediaProfile == name {
		out = append(out, "sbc.emergency.remoteEndpoint.mediaProfile")
	}
	return out
}

// deleteProfile removes the profile named name unless something uses it.
func deleteProfile(c *config.Config, name string) error {
	i := profileIndex(*c, name)
	if i < 0 {
		return noProfile(name)
	}
	var l field.List
	for _, path := range profileRefs(c.SBC, name) {
		l.Addf(path, "uses media profile %q; choose another profile here before deleting it", name)
	}
	if l.Err() != nil {
		return l
	}
	c.SBC.MediaProfiles = slices.Delete(c.SBC.MediaProfiles, i, i+1)
	return nil
}

// setPorts changes the media port range of the realms named in list;
// the other realms keep theirs.
func setPorts(c *config.Config, list []realmPorts) error {
	var l field.List
	names := make([]string, len(list))
	for i, p := range list {
		names[i] = p.Realm
		r := c.Network.Realm(p.Realm)
		if r == nil {
			l.Addf(field.Index("mediaPorts", i)+".realm", "no realm named %q", p.Realm)
			continue
		}
		r.MediaPorts = netcfg.PortRange{Min: p.Min, Max: p.Max}
	}
	l.Unique("mediaPorts", "realm", names)
	return l.Err()
}

// editCandidate applies edit to the candidate and saves the result, which
// saveCandidate validates and audits; a refused edit is audited too.
// Portal edits are serialized so that two of them do not lose each other's
// changes. It returns the edited configuration, also when refused.
func (s *Server) editCandidate(r *http.Request, edit func(*config.Config) error) (config.Config, error) {
	s.editMu.Lock()
	defer s.editMu.Unlock()
	c, err := s.opts.Config.Candidate()
	if err != nil {
		return c, err
	}
	if err := edit(&c); err != nil {
		if fieldErrors(err) != nil {
			s.audit(r, sessionFrom(r.Context()).User, "candidate", "refused: "+firstLine(err.Error()), false)
		}
		return c, err
	}
	saved, err := s.saveCandidate(r, c)
	if err != nil {
		return c, err
	}
	return saved, nil
}

// decodeBody decodes a JSON body strictly; a value of the wrong type at
// a named field is a *field.Error at the decoder's path.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	err := decodeJSON(w, r, v)
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return &field.Error{Path: te.Field, Msg: fmt.Sprintf("cannot use JSON %s as %s", te.Value, te.Type)}
	}
	return err
}

// mediaError answers an edit error: 404 for a missing profile, else as
// configError.
func (s *Server) mediaError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errNoProfile) {
		writeError(w, http.StatusNotFound, err)
		return
	}
	s.configError(w, r, err)
}

func (s *Server) apiMedia(w http.ResponseWriter, r *http.Request) {
	c, err := s.opts.Config.Candidate()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mediaOf(c))
}

// apiPutProfile is PUT /api/v1/media/profiles/{name}.
func (s *Server) apiPutProfile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var p media.Profile
	if err := decodeBody(w, r, &p); err != nil {
		s.badProfile(w, r, name, err)
		return
	}
	if p.Name == "" {
		p.Name = name
	}
	i := -1
	saved, err := s.editCandidate(r, func(c *config.Config) (err error) {
		i, err = putProfile(c, name, p)
		return err
	})
	if err != nil {
		s.mediaError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, saved.SBC.MediaProfiles[i])
}

// badProfile answers a profile body that did not decode: 422 with the
// field's full path when the decoder named one, else 400.
func (s *Server) badProfile(w http.ResponseWriter, r *http.Request, name string, err error) {
	var fe *field.Error
	if !errors.As(err, &fe) {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	c, cerr := s.opts.Config.Candidate()
	if cerr != nil {
		s.fail(w, r, cerr)
		return
	}
	i := profileIndex(c, name)
	if i < 0 {
		i = len(c.SBC.MediaProfiles)
	}
	writeError(w, http.StatusUnprocessableEntity, &field.Error{Path: field.Join(profilePath(i), fe.Path), Msg: fe.Msg})
}

// apiDeleteProfile is DELETE /api/v1/media/profiles/{name}.
func (s *Server) apiDeleteProfile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := s.editCandidate(r, func(c *config.Config) error { return deleteProfile(c, name) }); err != nil {
		s.mediaError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// apiMediaEdit decodes a body into a T, applies it with edit and answers
// with the media settings of the saved candidate.
func apiMediaEdit[T any](s *Server, edit func(*config.Config, T) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body T
		if err := decodeJSON(w, r, &body); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		saved, err := s.editCandidate(r, func(c *config.Config) error { return edit(c, body) })
		if err != nil {
			s.mediaError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, mediaOf(saved))
	}
}

type coreProfileRequest struct {
	MediaProfile string `json:"mediaProfile"`
}

func setUserAgents(c *config.Config, list []sbc.UserAgentProfile) error {
	if list == nil {
		list = []sbc.UserAgentProfile{}
	}
	c.SBC.UserAgentProfiles = list
	return nil
}

func setCoreProfile(c *config.Config, req coreProfileRequest) error {
	c.SBC.CoreMediaProfile = req.MediaProfile
	return nil
}
