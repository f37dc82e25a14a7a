package webui

// Forms of the SIP pages. Each input is named by its configuration path
// (also its id), e.g. "sbc.sipServer.nodeGroups[0].nodes[1].port", so
// that the form is read back by path and an error lands next to its input.
// Rows left empty are dropped, and the rows after them move up, so a value
// is read at the path it was shown at and its errors use the path it will
// have in the saved configuration.

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/psigate/psigate/appliance/field"
	"github.com/psigate/psigate/sbc"
)

// emptyNodeRows is how many blank node rows each node group offers, and
// the blank group, for adding nodes; blank rows are ignored.
const emptyNodeRows = 2

// Choices of the seed (9.2) for the SIP server form.
var (
	commValues      = []string{string(sbc.CommStandalone), string(sbc.CommClustered)}
	commLabels      = []string{"Standalone", "Clustered"}
	transportValues = []string{string(sbc.TransportTLS), string(sbc.TransportTCP), string(sbc.TransportUDP)}
	transportLabels = []string{"TLS", "TCP", "UDP"}
)

// sipParser reads a form by path. raw keeps, by the path they will have,
// the inputs that are not numbers, so that the refused form shows them as
// typed rather than as 0.
type sipParser struct {
	f   url.Values
	l   field.List
	raw map[string]string
}

func newSIPParser(f url.Values) *sipParser {
	return &sipParser{f: f, raw: map[string]string{}}
}

// num reads the number at input from; errors and raw use path to.
func (p *sipParser) num(from, to string) int {
	s := strings.TrimSpace(p.f.Get(from))
	if s == "" {
		p.l.Addf(to, "required")
		p.raw[to] = s
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		p.l.Addf(to, "%q is not a number", s)
		p.raw[to] = s
	}
	return n
}

// number reads the number at path.
func (p *sipParser) number(path string) int { return p.num(path, path) }

// on reads a checkbox.
func (p *sipParser) on(path string) bool { return p.f.Get(path) == "1" }

func (p *sipParser) text(path string) string { return strings.TrimSpace(p.f.Get(path)) }

func groupPath(i int) string { return field.Index(sipServerPath+".nodeGroups", i) }

func nodePath(group string, j int) string { return field.Index(group+".nodes", j) }

// parseSIPServerForm reads the SIP server form. The group or node whose
// path the "delete" button names is left out, as are blank node rows and
// groups with neither a name nor a node.
func parseSIPServerForm(f url.Values) (sbc.SIPServer, map[string]string, error) {
	p := newSIPParser(f)
	K := sipServerPath + ".keepalive"
	s := sbc.SIPServer{
		CommSystemType: sbc.CommSystemType(f.Get(sipServerPath + ".commSystemType")),
		NodeGroups:     []sbc.NodeGroup{},
		Keepalive:      sbc.Keepalive{IntervalSeconds: p.number(K + ".intervalSeconds"), FailureThreshold: p.number(K + ".failureThreshold")},
	}
	del := f.Get("delete")
	for i := 0; f.Has(groupPath(i) + ".name"); i++ {
		if from := groupPath(i); from != del {
			if g, used := p.group(from, groupPath(len(s.NodeGroups)), del); used {
				s.NodeGroups = append(s.NodeGroups, g)
			}
		}
	}
	return s, p.raw, p.l.Err()
}

// group reads the group shown at from, which will be at to; used is false
// for a group with neither a name nor a node.
func (p *sipParser) group(from, to, del string) (g sbc.NodeGroup, used bool) {
	g = sbc.NodeGroup{Name: p.text(from + ".name"), StickWithNode: p.on(from + ".stickWithNode"), Nodes: []sbc.Node{}}
	for j := 0; p.f.Has(nodePath(from, j) + ".name"); j++ {
		if nf := nodePath(from, j); nf != del && !p.blankNode(nf) {
			g.Nodes = append(g.Nodes, p.node(nf, nodePath(to, len(g.Nodes))))
		}
	}
	return g, g.Name != "" || len(g.Nodes) > 0
}

// blankNode reports a node row without name, priority, address and port;
// its transport, which always has a value, does not count.
func (p *sipParser) blankNode(path string) bool {
	for _, m := range []string{".name", ".priority", ".address", ".port"} {
		if p.text(path+m) != "" {
			return false
		}
	}
	return true
}

// node reads the node row shown at from, which will be at to.
func (p *sipParser) node(from, to string) sbc.Node {
	return sbc.Node{
		Name:      p.text(from + ".name"),
		Priority:  p.num(from+".priority", to+".priority"),
		Address:   p.text(from + ".address"),
		Transport: sbc.Transport(p.f.Get(from + ".transport")),
		Port:      p.num(from+".port", to+".port"),
	}
}

// parseSubscribersForm reads the remote subscribers form.
func parseSubscribersForm(f url.Values) (sbc.RemoteSubscribers, map[string]string, error) {
	p := newSIPParser(f)
	R, T := subscribersPath, subscribersPath+".registerThrottling"
	r := sbc.RemoteSubscribers{
		Enabled: p.on(R + ".enabled"),
		RegisterThrottling: sbc.RegisterThrottling{
			Enabled:             p.on(T + ".enabled"),
			UDPSeconds:          p.number(T + ".udpSeconds"),
			StreamEnabled:       p.on(T + ".streamEnabled"),
			StreamSeconds:       p.number(T + ".streamSeconds"),
			MaxThresholdSeconds: p.number(T + ".maxThresholdSeconds"),
		},
		MaxExpirySeconds:        p.number(R + ".maxExpirySeconds"),
		MinIntervalSeconds:      p.number(R + ".minIntervalSeconds"),
		Quarantine:              sbc.Quarantine{Enabled: p.on(R + ".quarantine.enabled"), DurationSeconds: p.number(R + ".quarantine.durationSeconds")},
		InviteNoAnswerTimeoutMs: p.number(R + ".inviteNoAnswerTimeoutMs"),
		InviteNoReplyTimeoutMs:  p.number(R + ".inviteNoReplyTimeoutMs"),
	}
	return r, p.raw, p.l.Err()
}

// keep shows the inputs of raw as they were typed.
func (f *form) keep(raw map[string]string) {
	for path, v := range raw {
		if s, ok := f.slots[path]; ok {
			s.Value = v
		}
	}
}
