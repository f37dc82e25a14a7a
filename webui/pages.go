package webui

import (
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/psigate/psigate/appliance/config"
	"github.com/psigate/psigate/appliance/store"
)

// view is what every page template receives.
type view struct {
	Title   string
	Nav     string // the active navigation entry
	User    string
	CSRF    string
	Flash   string // a success message carried over a redirect
	Error   string
	Fields  []fieldError
	Pending *store.Pending
	Data    any
}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"time":  func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") },
		"bytes": humanBytes,
		"dur":   func(sec float64) string { return (time.Duration(sec) * time.Second).String() },
		"prev":  func(n uint64) uint64 { return n - 1 },
		"args":  func(s *slot, name, label string) checkboxArgs { return checkboxArgs{s, name, label} },
	}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("webui: layout template: %w", err)
	}
	pages := map[string]*template.Template{}
	for _, name := range []string{"setup", "login", "dashboard", "config", "history", "diff", "backup", "audit", "media", "media_profile", "sip_server", "sip_subscribers", "registrations", "calls", "call_history", "firmware"} {
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("webui: template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

func humanBytes(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}

// render executes a page; v.User and v.CSRF are filled from the session.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, v view) {
	if sess := sessionFrom(r.Context()); sess != nil {
		v.User, v.CSRF = sess.User, sess.CSRF
		if v.Pending == nil {
			v.Pending, _ = s.pending()
		}
	}
	if v.Flash == "" {
		v.Flash = r.URL.Query().Get("ok")
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := s.pages[name].ExecuteTemplate(w, "layout.html", v); err != nil {
		s.log.Error("render", "page", name, "err", err)
	}
}

// redirect answers a form with 303 to path, carrying a success message.
func redirect(w http.ResponseWriter, r *http.Request, path, msg string) {
	if msg != "" {
		path += "?ok=" + url.QueryEscape(msg)
	}
	http.Redirect(w, r, path, http.StatusSeeOther)
}

// formError shows a page again with the error (and its field paths).
func (s *Server) formError(w http.ResponseWriter, r *http.Request, name string, status int, err error, v view) {
	v.Error, v.Fields = err.Error(), fieldErrors(err)
	if v.Fields != nil {
		v.Error = "The configuration is not valid:"
	}
	s.render(w, r, status, name, v)
}

func (s *Server) setupPage(w http.ResponseWriter, r *http.Request) {
	if done, err := s.setupDone(); err != nil {
		s.fail(w, r, err)
		return
	} else if done {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, "setup", view{Title: "Set the admin password", Data: MinPasswordLength})
}

func (s *Server) setupForm(w http.ResponseWriter, r *http.Request) {
	pw, again := r.PostFormValue("password"), r.PostFormValue("confirm")
	v := view{Title: "Set the admin password", Data: MinPasswordLength}
	if pw != again {
		s.formError(w, r, "setup", http.StatusUnprocessableEntity, errors.New("the two passwords differ"), v)
		return
	}
	switch err := s.doSetup(r, pw); {
	case errors.Is(err, errSetupDone):
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	case errors.Is(err, ErrWeakPassword):
		s.formError(w, r, "setup", http.StatusUnprocessableEntity, err, v)
		return
	case err != nil:
		s.fail(w, r, err)
		return
	}
	s.loginAndGo(w, r, s.opts.AdminUser, pw, "/")
}

// loginAndGo logs in and redirects to next, or shows the login page with
// the reason.
func (s *Server) loginAndGo(w http.ResponseWriter, r *http.Request, user, pw, next string) {
	token, sess, err := s.doLogin(r, user, pw)
	var te throttledError
	switch {
	case errors.As(err, &te):
		w.Header().Set("Retry-After", strconv.Itoa(int(te.wait.Seconds()+1)))
		s.formError(w, r, "login", http.StatusTooManyRequests, err, view{Title: "Log in", Data: user})
		return
	case errors.Is(err, errBadLogin):
		s.formError(w, r, "login", http.StatusUnauthorized, err, view{Title: "Log in", Data: user})
		return
	case err != nil:
		s.fail(w, r, err)
		return
	}
	setSessionCookie(w, token, sess.Expires)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if done, err := s.setupDone(); err != nil {
		s.fail(w, r, err)
		return
	} else if !done {
		http.Redirect(w, r, "/setup", http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, "login", view{Title: "Log in", Data: s.opts.AdminUser})
}

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	if done, err := s.setupDone(); err != nil || !done {
		http.Redirect(w, r, "/setup", http.StatusSeeOther)
		return
	}
	s.loginAndGo(w, r, r.PostFormValue("username"), r.PostFormValue("password"), "/")
}

func (s *Server) logoutForm(w http.ResponseWriter, r *http.Request) {
	if s.logout(w, r) {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	}
}

func (s *Server) dashboardPage(w http.ResponseWriter, r *http.Request) {
	v, err := s.status(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "dashboard", view{Title: "Dashboard", Nav: "dashboard", Data: v})
}

// configView is the configuration page: the candidate as JSON, its
// differences from the running configuration.
type configView struct {
	JSON    string
	Running store.RevisionInfo
	Changes []config.Change
}

func (s *Server) configView(text string) (configView, error) {
	cand, err := s.opts.Config.Candidate()
	if err != nil {
		return configView{}, err
	}
	run, err := s.opts.Config.Running()
	if err != nil {
		return configView{}, err
	}
	if text == "" {
		text = string(config.Marshal(config.Redact(cand)))
	}
	return configView{JSON: text, Running: run.RevisionInfo, Changes: config.Diff(run.Config, cand)}, nil
}

func (s *Server) configPage(w http.ResponseWriter, r *http.Request) {
	cv, err := s.configView("")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "config", view{Title: "Configuration", Nav: "config", Data: cv})
}

func (s *Server) candidateForm(w http.ResponseWriter, r *http.Request) {
	text := r.PostFormValue("config")
	c, err := config.Parse([]byte(text))
	if err == nil {
		_, err = s.saveCandidate(r, c)
	}
	if err != nil {
		cv, verr := s.configView(text)
		if verr != nil {
			s.fail(w, r, verr)
			return
		}
		s.formError(w, r, "config", http.StatusUnprocessableEntity, err, view{Title: "Configuration", Nav: "config", Data: cv})
		return
	}
	redirect(w, r, "/config", "Candidate saved. Apply it to make it running.")
}

func (s *Server) applyForm(w http.ResponseWriter, r *http.Request) {
	minutes, _ := strconv.Atoi(r.PostFormValue("confirmMinutes"))
	rev, err := s.doApply(r, applyRequest{Comment: r.PostFormValue("comment"), ConfirmMinutes: minutes})
	if err != nil {
		cv, verr := s.configView("")
		if verr != nil {
			s.fail(w, r, verr)
			return
		}
		s.formError(w, r, "config", http.StatusUnprocessableEntity, err, view{Title: "Configuration", Nav: "config", Data: cv})
		return
	}
	msg := fmt.Sprintf("Revision %d is running.", rev.Number)
	if minutes > 0 {
		msg += fmt.Sprintf(" Confirm it within %d minutes or it is rolled back.", minutes)
	}
	redirect(w, r, "/config", msg)
}

func (s *Server) confirmForm(w http.ResponseWriter, r *http.Request) {
	p, err := s.doConfirm(r)
	if errors.Is(err, store.ErrNoPending) {
		redirect(w, r, "/config", "Nothing was waiting for confirmation.")
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	redirect(w, r, "/config", fmt.Sprintf("Revision %d confirmed.", p.Revision))
}

func (s *Server) historyPage(w http.ResponseWriter, r *http.Request) {
	list, err := s.opts.Config.Revisions()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	run, err := s.opts.Config.Running()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	data := struct {
		Revisions []store.RevisionInfo
		Running   uint64
	}{list, run.Number}
	s.render(w, r, http.StatusOK, "history", view{Title: "Configuration history", Nav: "history", Data: data})
}

func (s *Server) diffPage(w http.ResponseWriter, r *http.Request) {
	from, to := r.URL.Query().Get("from"), r.URL.Query().Get("to")
	changes, err := s.diff(from, to)
	v := view{Title: "Differences", Nav: "history"}
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, store.ErrNotFound) {
			status = http.StatusNotFound
		}
		s.formError(w, r, "diff", status, err, v)
		return
	}
	v.Data = struct {
		From, To string
		Changes  []config.Change
	}{from, to, changes}
	s.render(w, r, http.StatusOK, "diff", v)
}

func (s *Server) rollbackForm(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseUint(r.PostFormValue("revision"), 10, 64)
	if err != nil {
		http.Error(w, "Bad request: revision must be a number", http.StatusBadRequest)
		return
	}
	rev, err := s.doRollback(r, rollbackRequest{Revision: n, Comment: r.PostFormValue("comment")})
	if err != nil {
		status := http.StatusUnprocessableEntity
		if errors.Is(err, store.ErrNotFound) {
			status = http.StatusNotFound
		}
		s.formError(w, r, "diff", status, err, view{Title: "Rollback failed", Nav: "history"})
		return
	}
	redirect(w, r, "/history", fmt.Sprintf("Rolled back to revision %d; it runs as revision %d.", n, rev.Number))
}

func (s *Server) backupPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "backup", view{Title: "Backup and restore", Nav: "backup"})
}

func (s *Server) exportDownload(w http.ResponseWriter, r *http.Request) {
	s.writeExport(w, r, r.URL.Query().Get("secrets") == "1")
}

func (s *Server) importForm(w http.ResponseWriter, r *http.Request) {
	v := view{Title: "Backup and restore", Nav: "backup"}
	f, _, err := r.FormFile("file")
	if err != nil {
		s.formError(w, r, "backup", http.StatusBadRequest, errors.New("choose an exported JSON file"), v)
		return
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 4<<20))
	if err != nil {
		s.formError(w, r, "backup", http.StatusBadRequest, err, v)
		return
	}
	apply := r.PostFormValue("apply") == "1"
	_, rev, err := s.doImport(r, data, apply, r.PostFormValue("comment"))
	if err != nil {
		s.formError(w, r, "backup", http.StatusUnprocessableEntity, err, v)
		return
	}
	if rev != nil {
		redirect(w, r, "/history", fmt.Sprintf("Imported and applied as revision %d.", rev.Number))
		return
	}
	redirect(w, r, "/config", "Imported into the candidate. Review the differences and apply.")
}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request) {
	log, err := s.opts.Auth.AuditLog(200)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "audit", view{Title: "Audit log", Nav: "audit", Data: log})
}
