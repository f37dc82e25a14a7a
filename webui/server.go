// Package webui is the admin portal: server-rendered pages and the
// /api/v1 JSON API, on HTTPS only.
//
// It sees the rest of the appliance through narrow interfaces: the
// configuration store, the account store and a status source. Every page
// that changes something has an API twin; both check the same session.
// Until the admin password is set, the only thing it serves (besides
// /healthz) is the page that sets it.
package webui

import (
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/psigate/psigate/appliance/alarm"
	"github.com/psigate/psigate/appliance/config"
	"github.com/psigate/psigate/appliance/store"
	"github.com/psigate/psigate/appliance/sysinfo"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// ConfigStore is the configuration store as the portal uses it.
type ConfigStore interface {
	Candidate() (config.Config, error)
	SetCandidate(config.Config) (config.Config, error)
	Running() (store.Revision, error)
	Apply(store.ApplyOptions) (store.Revision, error)
	Confirm() (store.Pending, error)
	Pending() (store.Pending, error)
	Rollback(n uint64, author, comment string) (store.Revision, error)
	Revisions() ([]store.RevisionInfo, error)
	Revision(n uint64) (store.Revision, error)
}

// AuthStore keeps accounts, sessions and the audit log.
type AuthStore interface {
	User(name string) (store.User, error)
	SetPassword(name, hash string, onlyIfUnset bool) error
	PutSession(key []byte, s store.Session) error
	Session(key []byte) (store.Session, error)
	DeleteSession(key []byte) error
	PruneSessions(now time.Time) error
	Audit(store.Event) error
	AuditLog(limit int) ([]store.Event, error)
}

// Component is the state of one part of the appliance on the dashboard.
type Component struct {
	Name   string `json:"name"`   // e.g. "sbc"
	State  string `json:"state"`  // "running", "stopped", "failed", "not built yet"
	Detail string `json:"detail"` // one line for the admin
}

// Status is what the dashboard and GET /api/v1/status show.
type Status struct {
	Version    string        `json:"version"`
	MachineID  string        `json:"machineID"`
	Hostname   string        `json:"hostname"`
	Started    time.Time     `json:"started"`
	UptimeS    float64       `json:"uptimeSeconds"`
	System     sysinfo.Info  `json:"system"`
	Alarms     []alarm.Alarm `json:"alarms"`
	Components []Component   `json:"components"`
	// Subscribers is the number of registered subscribers.
	Subscribers int `json:"registeredSubscribers"`
	// Calls is the number of calls in progress.
	Calls int `json:"activeCalls"`
	// Last24h counts the calls that ended in the last 24 hours.
	Last24h CallCounts `json:"callsLast24h"`
	// RecordsLost counts the call records not kept since the start (the
	// queue to the store was full, or the store failed).
	RecordsLost uint64 `json:"callRecordsLost"`
}

// Options configure a Server.
type Options struct {
	Config ConfigStore
	Auth   AuthStore
	// Status gathers the dashboard's figures.
	Status func(context.Context) Status
	// AdminUser is the account that logs in; e.g. "admin".
	AdminUser string
	// MachineID goes into exports.
	MachineID string
	Logger    *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// SessionTTL is how long a login lasts; default 8 hours.
	SessionTTL time.Duration
	// Hash are the password hashing costs; default DefaultHashParams().
	Hash HashParams
	// SIP reports registrations and PBX nodes; nil until the SBC runs.
	SIP SIPStatus
	// History lists the ended calls; nil when none are kept.
	History CallHistory
	// Firmware installs update bundles; nil when updates are not
	// available (the page says so).
	Firmware FirmwareService
}

// Server is the admin portal.
type Server struct {
	opts     Options
	log      *slog.Logger
	pages    map[string]*template.Template
	throttle *throttle
	setup    atomic.Bool // the admin password is set
	handler  http.Handler

	dummyOnce sync.Once
	dummy     string

	editMu sync.Mutex // serializes the portal's edits of the candidate
}

// New builds the portal. It fails only if its embedded templates are
// broken.
func New(o Options) (*Server, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 8 * time.Hour
	}
	if o.Hash == (HashParams{}) {
		o.Hash = DefaultHashParams()
	}
	if o.AdminUser == "" {
		o.AdminUser = "admin"
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	s := &Server{opts: o, log: o.Logger, pages: pages, throttle: newThrottle(o.Now)}
	s.handler = s.routes()
	return s, nil
}

// ServeHTTP serves the portal (for tests with httptest.NewTLSServer).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Serve serves HTTPS on ln with cert until ctx ends (pruning expired
// sessions every hour), then stops accepting
// and waits up to drain for running requests.
func (s *Server) Serve(ctx context.Context, ln net.Listener, cert tls.Certificate, drain time.Duration) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{cert},
		},
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	for done := false; !done; {
		select {
		case err := <-errc:
			return fmt.Errorf("webui: serve: %w", err)
		case <-prune.C:
			if err := s.opts.Auth.PruneSessions(s.opts.Now()); err != nil {
				s.log.Error("pruning expired sessions", "err", err)
			}
		case <-ctx.Done():
			done = true
		}
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("webui: drain: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("webui: serve: %w", err)
	}
	return nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /healthz", s.healthz)

	mux.HandleFunc("GET /setup", s.setupPage)
	mux.HandleFunc("POST /setup", s.setupForm)
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.loginForm)
	mux.HandleFunc("POST /logout", s.page(s.logoutForm))
	mux.HandleFunc("GET /{$}", s.page(s.dashboardPage))
	mux.HandleFunc("GET /config", s.page(s.configPage))
	mux.HandleFunc("POST /config/candidate", s.page(s.candidateForm))
	mux.HandleFunc("POST /config/apply", s.page(s.applyForm))
	mux.HandleFunc("POST /config/confirm", s.page(s.confirmForm))
	mux.HandleFunc("GET /media", s.page(s.mediaPage))
	mux.HandleFunc("GET /media/profiles/new", s.page(s.profileNewPage))
	mux.HandleFunc("GET /media/profiles/{name}", s.page(s.profileEditPage))
	mux.HandleFunc("POST /media/profiles", s.page(s.profileCreateForm))
	mux.HandleFunc("POST /media/profiles/{name}", s.page(s.profileUpdateForm))
	mux.HandleFunc("POST /media/profiles/{name}/delete", s.page(s.profileDeleteForm))
	mux.HandleFunc("POST /media/user-agents", s.page(s.userAgentsForm))
	mux.HandleFunc("POST /media/ports", s.page(s.portsForm))
	mux.HandleFunc("GET /sip/server", s.page(s.sipServerPage))
	mux.HandleFunc("POST /sip/server", s.page(s.sipServerForm))
	mux.HandleFunc("GET /sip/subscribers-settings", s.page(s.subscribersPage))
	mux.HandleFunc("POST /sip/subscribers-settings", s.page(s.subscribersForm))
	mux.HandleFunc("GET /sip/registrations", s.page(s.registrationsPage))
	mux.HandleFunc("GET /sip/calls", s.page(s.callsPage))
	mux.HandleFunc("GET /sip/calls/history", s.page(s.callHistoryPage))
	mux.HandleFunc("GET /history", s.page(s.historyPage))
	mux.HandleFunc("GET /history/diff", s.page(s.diffPage))
	mux.HandleFunc("POST /history/rollback", s.page(s.rollbackForm))
	mux.HandleFunc("GET /backup", s.page(s.backupPage))
	mux.HandleFunc("GET /backup/export", s.page(s.exportDownload))
	mux.HandleFunc("POST /backup/import", s.page(s.importForm))
	mux.HandleFunc("GET /audit", s.page(s.auditPage))
	mux.HandleFunc("GET /firmware", s.page(s.firmwarePage))
	mux.HandleFunc("POST /firmware", s.upload(s.firmwareForm, false))
	mux.HandleFunc("POST /firmware/rollback/dismiss", s.page(s.firmwareDismissForm))

	mux.HandleFunc("POST /api/v1/setup", s.apiSetup)
	mux.HandleFunc("POST /api/v1/session", s.apiLogin)
	mux.HandleFunc("DELETE /api/v1/session", s.api(s.apiLogout))
	mux.HandleFunc("GET /api/v1/status", s.api(s.apiStatus))
	mux.HandleFunc("GET /api/v1/config/running", s.api(s.apiRunning))
	mux.HandleFunc("GET /api/v1/config/candidate", s.api(s.apiCandidate))
	mux.HandleFunc("PUT /api/v1/config/candidate", s.api(s.apiPutCandidate))
	mux.HandleFunc("POST /api/v1/config/apply", s.api(s.apiApply))
	mux.HandleFunc("POST /api/v1/config/confirm", s.api(s.apiConfirm))
	mux.HandleFunc("GET /api/v1/config/revisions", s.api(s.apiRevisions))
	mux.HandleFunc("GET /api/v1/config/diff", s.api(s.apiDiff))
	mux.HandleFunc("POST /api/v1/config/rollback", s.api(s.apiRollback))
	mux.HandleFunc("GET /api/v1/config/export", s.api(s.apiExport))
	mux.HandleFunc("POST /api/v1/config/import", s.api(s.apiImport))
	mux.HandleFunc("GET /api/v1/audit", s.api(s.apiAudit))
	mux.HandleFunc("GET /api/v1/media", s.api(s.apiMedia))
	mux.HandleFunc("PUT /api/v1/media/profiles/{name}", s.api(s.apiPutProfile))
	mux.HandleFunc("DELETE /api/v1/media/profiles/{name}", s.api(s.apiDeleteProfile))
	mux.HandleFunc("PUT /api/v1/media/user-agents", s.api(apiMediaEdit(s, setUserAgents)))
	mux.HandleFunc("PUT /api/v1/media/core-profile", s.api(apiMediaEdit(s, setCoreProfile)))
	mux.HandleFunc("PUT /api/v1/media/ports", s.api(apiMediaEdit(s, setPorts)))
	mux.HandleFunc("GET /api/v1/sip/server", s.api(apiGetSection(s, sipServerOf)))
	mux.HandleFunc("PUT /api/v1/sip/server", s.api(apiPutSection(s, sipServerPath, sipServerOf, setSIPServer)))
	mux.HandleFunc("GET /api/v1/sip/remote-subscribers", s.api(apiGetSection(s, subscribersOf)))
	mux.HandleFunc("PUT /api/v1/sip/remote-subscribers", s.api(apiPutSection(s, subscribersPath, subscribersOf, setSubscribers)))
	mux.HandleFunc("GET /api/v1/sip/registrations", s.api(s.apiRegistrations))
	mux.HandleFunc("GET /api/v1/sip/nodes", s.api(s.apiNodes))
	mux.HandleFunc("GET /api/v1/sip/calls", s.api(s.apiCalls))
	mux.HandleFunc("GET /api/v1/sip/calls/history", s.api(s.apiCallHistory))
	mux.HandleFunc("GET /api/v1/firmware", s.api(s.apiFirmware))
	mux.HandleFunc("POST /api/v1/firmware", s.upload(s.apiFirmwareInstall, true))
	mux.HandleFunc("POST /api/v1/firmware/rollback/dismiss", s.api(s.apiFirmwareDismiss))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, errors.New("no such API endpoint"))
	})

	// Browsers label cross-site requests (Sec-Fetch-Site, Origin); a
	// state-changing one is refused before any handler runs. Forms and
	// cookie-authenticated API calls also carry the session's CSRF token.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn("cross-origin request refused", "method", r.Method, "path", r.URL.Path, "source", clientIP(r))
		if strings.HasPrefix(r.URL.Path, "/api/") {
			writeError(w, http.StatusForbidden, errors.New("cross-origin request refused"))
			return
		}
		http.Error(w, "Forbidden: cross-origin request refused", http.StatusForbidden)
	}))
	return securityHeaders(cop.Handler(mux))
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Strict-Transport-Security", "max-age=31536000")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// healthz is GET /healthz, unauthenticated, for load balancers and the
// on-box health check (bootguard keeps a new firmware only once it
// answers 200): 200 {"status":"ok","version":...} when every supervised
// service runs, else 503 naming the ones that do not. It shows nothing
// more than names and states.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	st := s.opts.Status(r.Context())
	type down struct {
		Name  string `json:"name"`
		State string `json:"state"`
	}
	var failing, degraded []down
	for _, c := range st.Components {
		switch c.State {
		case "running", "not built yet":
		case "degraded":
			degraded = append(degraded, down{c.Name, c.State})
		default:
			failing = append(failing, down{c.Name, c.State})
		}
	}
	if failing != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unhealthy", "version": st.Version, "failing": append(failing, degraded...)})
		return
	}
	// A service that runs but could not apply the configuration (a SIP
	// port taken, an address not there yet at boot) still serves: 200, so
	// that bootguard does not roll back a firmware for what the
	// configuration or the network caused; the answer names it.
	if degraded != nil {
		writeJSON(w, http.StatusOK, map[string]any{"status": "degraded", "version": st.Version, "degraded": degraded})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": st.Version})
}

// setupDone reports whether the admin password is set; once true it stays
// true without asking the store again.
func (s *Server) setupDone() (bool, error) {
	if s.setup.Load() {
		return true, nil
	}
	u, err := s.opts.Auth.User(s.opts.AdminUser)
	if err != nil {
		return false, fmt.Errorf("webui: admin account: %w", err)
	}
	if u.PasswordHash != "" {
		s.setup.Store(true)
		return true, nil
	}
	return false, nil
}
