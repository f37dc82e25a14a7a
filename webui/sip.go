package webui

// The SIP settings of the candidate: the PBX side (seed 9.2 "Sip Server
// Settings": comm system type, node groups, keepalive) and the remote
// subscriber feature (seed 9.4.1.1). The pages and the API replace a
// whole section of the candidate; saveCandidate validates and audits.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"

	"github.com/psigate/psigate/appliance/config"
	"github.com/psigate/psigate/appliance/field"
	"github.com/psigate/psigate/sbc"
)

// Configuration paths of the two sections.
const (
	sipServerPath   = "sbc.sipServer"
	subscribersPath = "sbc.remoteSubscribers"
)

// sipServerOf is the candidate's SIP server section, lists never null.
func sipServerOf(c config.Config) sbc.SIPServer {
	s := c.SBC.SIPServer
	normalizeSIPServer(&s)
	return s
}

// normalizeSIPServer gives absent lists their empty value, as the
// defaults have, so that they do not show up in diffs. It copies the
// lists it changes rather than writing into shared ones.
func normalizeSIPServer(s *sbc.SIPServer) {
	groups := make([]sbc.NodeGroup, len(s.NodeGroups))
	copy(groups, s.NodeGroups)
	for i := range groups {
		if groups[i].Nodes == nil {
			groups[i].Nodes = []sbc.Node{}
		}
	}
	s.NodeGroups = groups
}

func setSIPServer(c *config.Config, s sbc.SIPServer) {
	normalizeSIPServer(&s)
	c.SBC.SIPServer = s
}

func subscribersOf(c config.Config) sbc.RemoteSubscribers { return c.SBC.RemoteSubscribers }

func setSubscribers(c *config.Config, r sbc.RemoteSubscribers) { c.SBC.RemoteSubscribers = r }

// apiGetSection answers GET with one section of the candidate.
func apiGetSection[T any](s *Server, get func(config.Config) T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := s.opts.Config.Candidate()
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, get(c))
	}
}

// apiPutSection replaces the section at path (e.g. "sbc.sipServer") with
// the body and answers with the section as saved. A value of the wrong
// JSON type is 422 at its full path; other bad bodies are 400.
func apiPutSection[T any](s *Server, path string, get func(config.Config) T, set func(*config.Config, T)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body T
		if err := decodeSection(w, r, &body); err != nil {
			var fe *field.Error
			if errors.As(err, &fe) {
				writeError(w, http.StatusUnprocessableEntity, &field.Error{Path: field.Join(path, fe.Path), Msg: fe.Msg})
				return
			}
			writeError(w, http.StatusBadRequest, err)
			return
		}
		saved, err := s.editCandidate(r, func(c *config.Config) error {
			set(c, body)
			return nil
		})
		if err != nil {
			s.configError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, get(saved))
	}
}

// decodeSection decodes a JSON body strictly, like decodeJSON; a value of
// the wrong type is a *field.Error at its path with list positions, e.g.
// "nodeGroups[0].nodes[1].port" (the decoder names "nodeGroups.nodes.port").
func decodeSection(w http.ResponseWriter, r *http.Request, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("reading the request body: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		path := te.Field
		if p, ok := wrongType(data, strings.Split(te.Field, "."), te.Type, ""); ok {
			path = p
		}
		return &field.Error{Path: path, Msg: fmt.Sprintf("cannot use JSON %s as %s", te.Value, te.Type)}
	}
	if err != nil {
		return fmt.Errorf("invalid request body: %w", err)
	}
	return nil
}

// wrongType finds the first value along names (JSON member names, list
// positions skipped) that does not decode as a t, and returns its path
// with the positions, prefixed by at.
func wrongType(raw json.RawMessage, names []string, t reflect.Type, at string) (string, bool) {
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) == nil && (len(names) > 0 || t.Kind() != reflect.Slice) {
		for i, el := range list {
			if p, ok := wrongType(el, names, t, field.Index(at, i)); ok {
				return p, true
			}
		}
		return "", false
	}
	if len(names) == 0 {
		return at, json.Unmarshal(raw, reflect.New(t).Interface()) != nil
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return "", false
	}
	for k, v := range obj { // encoding/json matches member names case-insensitively
		if strings.EqualFold(k, names[0]) {
			return wrongType(v, names[1:], t, field.Join(at, names[0]))
		}
	}
	return "", false
}
