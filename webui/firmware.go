package webui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/psigate/psigate/appliance/firmware"
	"github.com/psigate/psigate/gokrazy/bundle"
)

// FirmwareService installs signed update bundles and reports the running
// release; *firmware.Updater is one.
type FirmwareService interface {
	Status() firmware.Status
	// Install verifies and installs a bundle, then reboots the appliance
	// shortly after returning; errors match firmware.ErrBusy,
	// ErrUnavailable, ErrOnTrial or ErrRefused, and their text is fit for
	// the admin.
	Install(ctx context.Context, r io.Reader, o firmware.InstallOptions) (bundle.Manifest, error)
	DismissRollback() error
}

// maxBundleSize bounds a firmware upload: a bundle holds at most 100 MiB
// of boot and 500 MiB of root partition.
const maxBundleSize = 700 << 20

// uploadTime is how long reading a bundle and writing it may take: 700
// MiB at 10 Mbit/s, then the partitions.
const uploadTime = 30 * time.Minute

var (
	// errNoFirmware: the portal was built without a firmware service.
	errNoFirmware = errors.New("firmware updates are not available on this appliance")
	// errNoBundle: a multipart upload without the "bundle" field.
	errNoBundle = errors.New(`the form has no "bundle" file`)
	// errBadForm: a multipart upload that does not parse.
	errBadForm = errors.New("reading the form")
)

// firmwareStatus is the firmware service's status, or one that says
// there is none.
func (s *Server) firmwareStatus() firmware.Status {
	if s.opts.Firmware == nil {
		return firmware.Status{Unavailable: errNoFirmware.Error()}
	}
	return s.opts.Firmware.Status()
}

// installFirmware streams the request's bundle into the firmware service
// and audits the attempt.
func (s *Server) installFirmware(w http.ResponseWriter, r *http.Request) (bundle.Manifest, error) {
	if s.opts.Firmware == nil {
		return bundle.Manifest{}, errNoFirmware
	}
	// An upload may take longer than the server's timeouts allow.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(uploadTime))
	_ = rc.SetWriteDeadline(time.Now().Add(uploadTime + time.Minute))
	body := &countingReader{r: http.MaxBytesReader(w, r.Body, maxBundleSize)}
	r.Body = struct {
		io.Reader
		io.Closer
	}{body, r.Body}
	defer drainStarted(body)

	src, o, err := bundleStream(r)
	if errors.Is(err, errCSRF) {
		return bundle.Manifest{}, err // csrfRefused audits it
	}
	user := sessionFrom(r.Context()).User
	if err != nil {
		s.audit(r, user, "firmware-install", "refused: "+err.Error(), false)
		return bundle.Manifest{}, err
	}
	m, err := s.opts.Firmware.Install(r.Context(), src, o)
	if err != nil {
		s.log.Warn("firmware install failed", "err", err)
		s.audit(r, user, "firmware-install", firstLine(err.Error()), false)
		return m, err
	}
	s.audit(r, user, "firmware-install", fmt.Sprintf("version %s for %s installed (%d bytes uploaded); rebooting", m.Version, m.Target, body.n), true)
	return m, nil
}

// bundleStream finds the bundle in a request without buffering it: the
// multipart field "bundle", or else the raw body. When the session's CSRF
// token is still to be checked, it must be the form's first field, "csrf"
// (browsers send fields in document order). The admin's options come from
// the query (allowOlder=true) or, in a form, the field "allowOlder"
// before the file.
func bundleStream(r *http.Request) (io.Reader, firmware.InstallOptions, error) {
	var o firmware.InstallOptions
	o.AllowOlder = r.URL.Query().Get("allowOlder") == "true"
	sess := sessionFrom(r.Context())
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "multipart/form-data" {
		if sess.csrfInBody {
			return nil, o, errCSRF
		}
		return r.Body, o, nil
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, o, fmt.Errorf("%w: %w", errBadForm, err)
	}
	for needCSRF := sess.csrfInBody; ; needCSRF = false {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil, o, errNoBundle
		}
		if err != nil {
			return nil, o, fmt.Errorf("%w: %w", errBadForm, err)
		}
		switch {
		case needCSRF:
			if p.FormName() != "csrf" {
				return nil, o, errCSRF
			}
			token, err := io.ReadAll(io.LimitReader(p, 256))
			if err != nil {
				return nil, o, fmt.Errorf("%w: %w", errBadForm, err)
			}
			if err := sess.checkCSRFToken(string(token)); err != nil {
				return nil, o, err
			}
		case p.FormName() == "allowOlder":
			v, err := io.ReadAll(io.LimitReader(p, 16))
			if err != nil {
				return nil, o, fmt.Errorf("%w: %w", errBadForm, err)
			}
			o.AllowOlder = string(v) == "true"
		case p.FormName() == "bundle":
			return p, o, nil
		}
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// drainStarted reads the rest of an upload that was started, so that the
// client, still sending, gets to read the answer (a server that closes
// the connection on unread data may lose it). An upload that was not
// started is left alone: a client that waits for 100 Continue never
// sends it.
func drainStarted(body *countingReader) {
	if body.n > 0 {
		_, _ = io.Copy(io.Discard, body)
	}
}

// firmwareErrorStatus maps an install error to an HTTP status.
func firmwareErrorStatus(err error) int {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errCSRF):
		return http.StatusForbidden
	case errors.Is(err, firmware.ErrBusy), errors.Is(err, firmware.ErrOnTrial):
		return http.StatusConflict
	case errors.Is(err, errNoFirmware), errors.Is(err, firmware.ErrUnavailable):
		return http.StatusNotImplemented
	case errors.Is(err, firmware.ErrRefused):
		return http.StatusUnprocessableEntity
	case errors.Is(err, errNoBundle), errors.Is(err, errBadForm):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// firmwareErrorText is what the admin reads about a failed install.
func firmwareErrorText(err error) string {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return fmt.Sprintf("the upload is larger than %d MiB; it is not a psigate update bundle", maxBundleSize>>20)
	}
	return err.Error()
}

// installAnswer is the answer of POST /api/v1/firmware.
type installAnswer struct {
	bundle.Manifest
	Status string `json:"status"` // "rebooting"
}

// apiFirmware is GET /api/v1/firmware.
func (s *Server) apiFirmware(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.firmwareStatus())
}

// apiFirmwareInstall is POST /api/v1/firmware: the bundle as the raw body
// or the multipart field "bundle". 202 once it is written and the reboot
// is scheduled.
func (s *Server) apiFirmwareInstall(w http.ResponseWriter, r *http.Request) {
	m, err := s.installFirmware(w, r)
	switch {
	case errors.Is(err, errCSRF):
		s.csrfRefused(w, r, sessionFrom(r.Context()), true, err)
	case err != nil:
		writeError(w, firmwareErrorStatus(err), errors.New(firmwareErrorText(err)))
	default:
		writeJSON(w, http.StatusAccepted, installAnswer{Manifest: m, Status: "rebooting"})
	}
}

// doDismissRollback acknowledges bootguard's rollback event.
func (s *Server) doDismissRollback(r *http.Request) error {
	if s.opts.Firmware == nil {
		return errNoFirmware
	}
	err := s.opts.Firmware.DismissRollback()
	s.audit(r, sessionFrom(r.Context()).User, "firmware-dismiss-rollback", "", err == nil)
	return err
}

// apiFirmwareDismiss is POST /api/v1/firmware/rollback/dismiss.
func (s *Server) apiFirmwareDismiss(w http.ResponseWriter, r *http.Request) {
	switch err := s.doDismissRollback(r); {
	case errors.Is(err, errNoFirmware):
		writeError(w, http.StatusNotImplemented, err)
	case err != nil:
		s.fail(w, r, err)
	default:
		writeJSON(w, http.StatusOK, s.firmwareStatus())
	}
}

// firmwareView is the firmware page.
type firmwareView struct {
	firmware.Status
	MaxMiB int
}

func (s *Server) firmwareViewOf() view {
	return view{Title: "Firmware", Nav: "firmware", Data: firmwareView{Status: s.firmwareStatus(), MaxMiB: maxBundleSize >> 20}}
}

func (s *Server) firmwarePage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "firmware", s.firmwareViewOf())
}

// firmwareForm is POST /firmware: the upload form.
func (s *Server) firmwareForm(w http.ResponseWriter, r *http.Request) {
	m, err := s.installFirmware(w, r)
	switch {
	case errors.Is(err, errCSRF):
		s.csrfRefused(w, r, sessionFrom(r.Context()), false, err)
	case err != nil:
		v := s.firmwareViewOf()
		s.formError(w, r, "firmware", firmwareErrorStatus(err), errors.New(firmwareErrorText(err)), v)
	default:
		redirect(w, r, "/firmware", fmt.Sprintf("Version %s is installed. The appliance restarts now; log in again in a few minutes.", m.Version))
	}
}

func (s *Server) firmwareDismissForm(w http.ResponseWriter, r *http.Request) {
	switch err := s.doDismissRollback(r); {
	case errors.Is(err, errNoFirmware):
		s.formError(w, r, "firmware", http.StatusNotImplemented, err, s.firmwareViewOf())
		return
	case err != nil:
		s.fail(w, r, err)
		return
	}
	redirect(w, r, "/firmware", "Rollback dismissed.")
}
