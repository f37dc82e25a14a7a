package webui

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/psigate/psigate/appliance/config"
	"github.com/psigate/psigate/sbc"
)

// sipPage is one of the SIP pages: its template, title and URL, the
// message after a save, how it lays out the candidate and how its form
// is read into the candidate.
type sipPage struct {
	tmpl, title, url, saved string
	must                    string // an input every such form has
	build                   func(f *form, c config.Config, changes int) any
	read                    func(f url.Values, c *config.Config) (raw map[string]string, err error)
}

var (
	pageSIPServer = sipPage{
		tmpl: "sip_server", title: "SIP server", url: "/sip/server",
		saved: "SIP server settings saved in the candidate.", must: sipServerPath + ".commSystemType",
		build: func(f *form, c config.Config, n int) any { return buildSIPServer(f, c.SBC.SIPServer, n) },
		read:  readSIPServerForm,
	}
	pageSubscribers = sipPage{
		tmpl: "sip_subscribers", title: "Remote subscribers", url: "/sip/subscribers-settings",
		saved: "Remote subscriber settings saved in the candidate.", must: subscribersPath + ".maxExpirySeconds",
		build: func(f *form, c config.Config, n int) any { return buildSubscribers(f, c.SBC.RemoteSubscribers, n) },
		read:  readSubscribersForm,
	}
)

// sipServerData is the SIP server page.
type sipServerData struct {
	Changes                   int
	Type, Interval, Threshold *slot
	Groups                    *slot // the node groups as a whole
	Rows                      []groupRow
}

// groupRow is a node group, or the blank one for adding a group.
type groupRow struct {
	Path        string // its configuration path, also its delete button's value
	Pos         int    // as shown, from 1
	New         bool
	Name, Stick *slot
	Nodes       *slot // the group's nodes as a whole
	NodeRows    []nodeRow
}

// nodeRow is a node, or a blank row for adding one.
type nodeRow struct {
	Path                                     string
	New                                      bool
	Name, Priority, Address, Transport, Port *slot
}

// buildSIPServer lays out the SIP server page for s: its groups, each
// with emptyNodeRows blank node rows, then a blank group.
func buildSIPServer(f *form, s sbc.SIPServer, changes int) sipServerData {
	K := sipServerPath + ".keepalive"
	d := sipServerData{
		Changes:   changes,
		Type:      f.choice(sipServerPath+".commSystemType", string(s.CommSystemType), commValues, commLabels),
		Interval:  f.input(K+".intervalSeconds", strconv.Itoa(s.Keepalive.IntervalSeconds)),
		Threshold: f.input(K+".failureThreshold", strconv.Itoa(s.Keepalive.FailureThreshold)),
		Groups:    f.input(sipServerPath+".nodeGroups", ""),
	}
	for i, g := range s.NodeGroups {
		d.Rows = append(d.Rows, groupRowOf(f, i, g, false))
	}
	// The seed enables "Stick with CommServer" for a new group.
	d.Rows = append(d.Rows, groupRowOf(f, len(s.NodeGroups), sbc.NodeGroup{StickWithNode: true}, true))
	return d
}

func groupRowOf(f *form, i int, g sbc.NodeGroup, blank bool) groupRow {
	P := groupPath(i)
	row := groupRow{
		Path: P, Pos: i + 1, New: blank,
		Name: f.input(P+".name", g.Name), Stick: f.check(P+".stickWithNode", g.StickWithNode),
		Nodes: f.input(P+".nodes", ""),
	}
	for j, n := range g.Nodes {
		row.NodeRows = append(row.NodeRows, nodeRowOf(f, nodePath(P, j), n, false))
	}
	for j := range emptyNodeRows {
		row.NodeRows = append(row.NodeRows, nodeRowOf(f, nodePath(P, len(g.Nodes)+j), sbc.Node{Transport: sbc.TransportTLS}, true))
	}
	return row
}

func nodeRowOf(f *form, P string, n sbc.Node, blank bool) nodeRow {
	num := func(v int) string {
		if blank {
			return ""
		}
		return strconv.Itoa(v)
	}
	return nodeRow{
		Path: P, New: blank,
		Name:      f.input(P+".name", n.Name),
		Priority:  f.input(P+".priority", num(n.Priority)),
		Address:   f.input(P+".address", n.Address),
		Transport: f.choice(P+".transport", string(n.Transport), transportValues, transportLabels),
		Port:      f.input(P+".port", num(n.Port)),
	}
}

func readSIPServerForm(f url.Values, c *config.Config) (map[string]string, error) {
	s, raw, err := parseSIPServerForm(f)
	setSIPServer(c, s)
	return raw, err
}

// showSIP renders a SIP page for c (the candidate when nil), with the
// inputs of raw as typed and err's field errors at their inputs.
func (s *Server) showSIP(w http.ResponseWriter, r *http.Request, status int, pg sipPage, c *config.Config, raw map[string]string, err error) {
	if c == nil {
		cand, cerr := s.opts.Config.Candidate()
		if cerr != nil {
			s.fail(w, r, cerr)
			return
		}
		c = &cand
	}
	n, cerr := s.changes()
	if cerr != nil {
		s.fail(w, r, cerr)
		return
	}
	var f form
	d := pg.build(&f, *c, n)
	f.keep(raw)
	f.place(err)
	v := view{Title: pg.title, Nav: "sip", Fields: f.Top, Data: d}
	if err != nil {
		v.Error = notSaved
	}
	s.render(w, r, status, pg.tmpl, v)
}

// saveSIP reads pg's form into the candidate: a redirect when saved,
// else the page again with the refused values and the errors.
func (s *Server) saveSIP(w http.ResponseWriter, r *http.Request, pg sipPage) {
	if !parsedForm(w, r, pg.must) {
		return
	}
	var raw map[string]string
	c, err := s.editCandidate(r, func(c *config.Config) (err error) {
		raw, err = pg.read(r.PostForm, c)
		return err
	})
	switch {
	case err == nil:
		redirect(w, r, pg.url, pg.saved+applyHint)
	case fieldErrors(err) != nil:
		s.showSIP(w, r, http.StatusUnprocessableEntity, pg, &c, raw, err)
	default:
		s.fail(w, r, err)
	}
}

func (s *Server) sipServerPage(w http.ResponseWriter, r *http.Request) {
	s.showSIP(w, r, http.StatusOK, pageSIPServer, nil, nil, nil)
}

func (s *Server) sipServerForm(w http.ResponseWriter, r *http.Request) {
	s.saveSIP(w, r, pageSIPServer)
}

func (s *Server) subscribersPage(w http.ResponseWriter, r *http.Request) {
	s.showSIP(w, r, http.StatusOK, pageSubscribers, nil, nil, nil)
}

func (s *Server) subscribersForm(w http.ResponseWriter, r *http.Request) {
	s.saveSIP(w, r, pageSubscribers)
}
