package webui

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/psigate/psigate/appliance/config"
	"github.com/psigate/psigate/appliance/field"
	"github.com/psigate/psigate/appliance/store"
)

// apiError is the body of every error answer.
type apiError struct {
	Error  string       `json:"error"`
	Fields []fieldError `json:"fields,omitempty"`
}

type fieldError struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

func fieldErrors(err error) []fieldError {
	var l field.List
	var one *field.Error
	switch {
	case errors.As(err, &l):
		out := make([]fieldError, len(l))
		for i, e := range l {
			out[i] = fieldError{Path: e.Path, Message: e.Msg}
		}
		return out
	case errors.As(err, &one):
		return []fieldError{{Path: one.Path, Message: one.Msg}}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	body := apiError{Error: err.Error(), Fields: fieldErrors(err)}
	if body.Fields != nil {
		body.Error = "validation failed; see fields"
	}
	writeJSON(w, status, body)
}

// fail answers an unexpected error without details and logs them.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	if strings.HasPrefix(r.URL.Path, "/api/") {
		writeError(w, http.StatusInternalServerError, errors.New("internal error; see the appliance log"))
		return
	}
	http.Error(w, "Internal error; see the appliance log.", http.StatusInternalServerError)
}

// configError answers a store error: 422 with field paths for validation,
// 404 for a missing revision, 409 for no pending apply.
func (s *Server) configError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case fieldErrors(err) != nil:
		writeError(w, http.StatusUnprocessableEntity, err)
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, err)
	case errors.Is(err, store.ErrNoPending):
		writeError(w, http.StatusConflict, err)
	default:
		s.fail(w, r, err)
	}
}

// statusView is GET /api/v1/status.
type statusView struct {
	Status
	Running store.RevisionInfo `json:"running"`
	Pending *store.Pending     `json:"pending,omitempty"`
}

func (s *Server) status(r *http.Request) (statusView, error) {
	v := statusView{Status: s.opts.Status(r.Context())}
	run, err := s.opts.Config.Running()
	if err != nil {
		return v, err
	}
	v.Running = run.RevisionInfo
	v.Pending, err = s.pending()
	return v, err
}

func (s *Server) pending() (*store.Pending, error) {
	p, err := s.opts.Config.Pending()
	if errors.Is(err, store.ErrNoPending) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &p, nil
}

func (s *Server) apiStatus(w http.ResponseWriter, r *http.Request) {
	v, err := s.status(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) apiRunning(w http.ResponseWriter, r *http.Request) {
	run, err := s.opts.Config.Running()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"revision": run.RevisionInfo, "config": config.Redact(run.Config)})
}

func (s *Server) apiCandidate(w http.ResponseWriter, r *http.Request) {
	c, err := s.opts.Config.Candidate()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, config.Redact(c))
}

// readConfig reads a configuration body (at most 4 MiB) strictly.
func readConfig(w http.ResponseWriter, r *http.Request, parse func([]byte) (config.Config, error)) (config.Config, error) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<20))
	if err != nil {
		return config.Config{}, fmt.Errorf("reading the request body: %w", err)
	}
	return parse(data)
}

func (s *Server) apiPutCandidate(w http.ResponseWriter, r *http.Request) {
	c, err := readConfig(w, r, config.Parse)
	if err != nil {
		s.badConfig(w, err)
		return
	}
	saved, err := s.saveCandidate(r, c)
	if err != nil {
		s.configError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, config.Redact(saved))
}

// badConfig answers a body that did not parse: 422 with the field when the
// decoder named one, else 400.
func (s *Server) badConfig(w http.ResponseWriter, err error) {
	if fieldErrors(err) != nil {
		writeError(w, http.StatusUnprocessableEntity, err)
		return
	}
	writeError(w, http.StatusBadRequest, err)
}

// saveCandidate stores an edited candidate and audits what it changed.
func (s *Server) saveCandidate(r *http.Request, c config.Config) (config.Config, error) {
	prev, err := s.opts.Config.Candidate()
	if err != nil {
		return config.Config{}, err
	}
	saved, err := s.opts.Config.SetCandidate(c)
	detail := fmt.Sprintf("%d fields changed", len(config.Diff(prev, saved)))
	if err != nil {
		detail = "refused: " + firstLine(err.Error())
	}
	s.audit(r, sessionFrom(r.Context()).User, "candidate", detail, err == nil)
	return saved, err
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

type applyRequest struct {
	Comment        string `json:"comment"`
	ConfirmMinutes int    `json:"confirmMinutes"`
}

// maxConfirmMinutes bounds "confirm within N minutes".
const maxConfirmMinutes = 60

// doApply applies the candidate for the session's user.
func (s *Server) doApply(r *http.Request, req applyRequest) (store.Revision, error) {
	if req.ConfirmMinutes < 0 || req.ConfirmMinutes > maxConfirmMinutes {
		return store.Revision{}, &field.Error{Path: "confirmMinutes", Msg: fmt.Sprintf("%d out of range 0-%d", req.ConfirmMinutes, maxConfirmMinutes)}
	}
	user := sessionFrom(r.Context()).User
	rev, err := s.opts.Config.Apply(store.ApplyOptions{
		Author: user, Comment: req.Comment, ConfirmWithin: time.Duration(req.ConfirmMinutes) * time.Minute,
	})
	detail := req.Comment
	if err == nil {
		detail = fmt.Sprintf("revision %d: %s", rev.Number, req.Comment)
		if req.ConfirmMinutes > 0 {
			detail += fmt.Sprintf(" (confirm within %d min)", req.ConfirmMinutes)
		}
	}
	s.audit(r, user, "apply", detail, err == nil)
	return rev, err
}

func (s *Server) apiApply(w http.ResponseWriter, r *http.Request) {
	var req applyRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	rev, err := s.doApply(r, req)
	if err != nil {
		s.configError(w, r, err)
		return
	}
	p, err := s.pending()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"revision": rev.RevisionInfo, "pending": p})
}

func (s *Server) doConfirm(r *http.Request) (store.Pending, error) {
	p, err := s.opts.Config.Confirm()
	detail := fmt.Sprintf("revision %d", p.Revision)
	if err != nil {
		detail = err.Error()
	}
	s.audit(r, sessionFrom(r.Context()).User, "confirm", detail, err == nil)
	return p, err
}

func (s *Server) apiConfirm(w http.ResponseWriter, r *http.Request) {
	p, err := s.doConfirm(r)
	if err != nil {
		s.configError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"confirmed": p.Revision})
}

func (s *Server) apiRevisions(w http.ResponseWriter, r *http.Request) {
	list, err := s.opts.Config.Revisions()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

// resolve loads a configuration named by a revision number, "running" or
// "candidate".
func (s *Server) resolve(ref string) (config.Config, error) {
	switch ref {
	case "running":
		r, err := s.opts.Config.Running()
		return r.Config, err
	case "candidate":
		return s.opts.Config.Candidate()
	}
	n, err := strconv.ParseUint(ref, 10, 64)
	if err != nil {
		return config.Config{}, &field.Error{Path: "revision", Msg: fmt.Sprintf("%q is not a revision number, \"running\" or \"candidate\"", ref)}
	}
	r, err := s.opts.Config.Revision(n)
	return r.Config, err
}

// diff compares two configurations named as resolve accepts.
func (s *Server) diff(from, to string) ([]config.Change, error) {
	a, err := s.resolve(from)
	if err != nil {
		return nil, err
	}
	b, err := s.resolve(to)
	if err != nil {
		return nil, err
	}
	return config.Diff(a, b), nil
}

func (s *Server) apiDiff(w http.ResponseWriter, r *http.Request) {
	from, to := r.URL.Query().Get("from"), r.URL.Query().Get("to")
	if from == "" || to == "" {
		writeError(w, http.StatusBadRequest, errors.New("from and to are required (revision number, running or candidate)"))
		return
	}
	changes, err := s.diff(from, to)
	if err != nil {
		s.configError(w, r, err)
		return
	}
	if changes == nil {
		changes = []config.Change{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"from": from, "to": to, "changes": changes})
}

type rollbackRequest struct {
	Revision uint64 `json:"revision"`
	Comment  string `json:"comment"`
}

func (s *Server) doRollback(r *http.Request, req rollbackRequest) (store.Revision, error) {
	user := sessionFrom(r.Context()).User
	rev, err := s.opts.Config.Rollback(req.Revision, user, req.Comment)
	s.audit(r, user, "rollback", fmt.Sprintf("to revision %d", req.Revision), err == nil)
	return rev, err
}

func (s *Server) apiRollback(w http.ResponseWriter, r *http.Request) {
	var req rollbackRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	rev, err := s.doRollback(r, req)
	if err != nil {
		s.configError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"revision": rev.RevisionInfo})
}

// export builds the backup document of the running configuration.
func (s *Server) export(r *http.Request, withSecrets bool) (config.Export, error) {
	run, err := s.opts.Config.Running()
	if err != nil {
		return config.Export{}, err
	}
	detail := "without secrets"
	if withSecrets {
		detail = "with secrets"
	}
	s.audit(r, sessionFrom(r.Context()).User, "export", fmt.Sprintf("revision %d %s", run.Number, detail), true)
	return config.NewExport(run.Config, s.opts.MachineID, run.Number, s.opts.Now(), withSecrets), nil
}

func (s *Server) writeExport(w http.ResponseWriter, r *http.Request, withSecrets bool) {
	e, err := s.export(r, withSecrets)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	name := fmt.Sprintf("psigate-config-r%d-%s.json", e.Revision, e.Exported.Format("20060102-150405"))
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	writeJSON(w, http.StatusOK, e)
}

func (s *Server) apiExport(w http.ResponseWriter, r *http.Request) {
	s.writeExport(w, r, r.URL.Query().Get("secrets") == "true")
}

// errBadImport marks an import document that does not parse.
var errBadImport = errors.New("import refused")

// doImport loads an export (or a bare configuration) into the candidate,
// and applies it when asked. Nothing changes when it is invalid.
func (s *Server) doImport(r *http.Request, data []byte, apply bool, comment string) (config.Config, *store.Revision, error) {
	user := sessionFrom(r.Context()).User
	c, err := config.ParseImport(data)
	if err != nil {
		s.audit(r, user, "import", err.Error(), false)
		return c, nil, fmt.Errorf("%w: %w", errBadImport, err)
	}
	c, err = s.opts.Config.SetCandidate(c)
	s.audit(r, user, "import", "into the candidate", err == nil)
	if err != nil || !apply {
		return c, nil, err
	}
	if comment == "" {
		comment = "import"
	}
	rev, err := s.doApply(r, applyRequest{Comment: comment})
	if err != nil {
		return c, nil, err
	}
	return c, &rev, nil
}

func (s *Server) apiImport(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	q := r.URL.Query()
	c, rev, err := s.doImport(r, data, q.Get("apply") == "true", q.Get("comment"))
	switch {
	case errors.Is(err, errBadImport):
		s.badConfig(w, err)
		return
	case err != nil:
		s.configError(w, r, err)
		return
	}
	out := map[string]any{"candidate": config.Redact(c)}
	if rev != nil {
		out["revision"] = rev.RevisionInfo
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiAudit(w http.ResponseWriter, r *http.Request) {
	limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	log, err := s.opts.Auth.AuditLog(limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, log)
}
