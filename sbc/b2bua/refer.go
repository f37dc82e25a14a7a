package b2bua

import (
	"errors"
	"net/url"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/psigate/psigate/sbc/media/relay"
)

// A transfer crosses psigate as a REFER on one leg and a REFER on the
// other (RFC 3515), and its NOTIFYs come back the same way. The Refer-To
// names a party in the referrer's terms; the transferee must reach it in
// its own: the host becomes the domain the transferee's leg already uses
// for its peer (so no address of one side reaches the other, and the
// transferee's INVITE goes where its calls go), and a Replaces (RFC 3891,
// attended transfer) names the dialog as the transferee's side knows it.

var errBadReferTo = errors.New("Refer-To is not a SIP URI")

// referTo writes the Refer-To of a REFER from leg from onto out, the
// REFER for leg to.
func (b *B2BUA) referTo(from, to *leg, req, out *sip.Request) error {
	h := header(req, "Refer-To")
	if h == nil {
		return errors.New("missing Refer-To")
	}
	var uri sip.Uri
	params := sip.NewParams()
	display, err := sip.ParseAddressValue(h.Value(), &uri, &params)
	if err != nil || (uri.Scheme != "sip" && uri.Scheme != "sips") {
		return errBadReferTo
	}
	uri.Host, uri.Port = to.peerDomain(), 0
	if uri.UriParams != nil {
		kept := sip.NewParams()
		if v, ok := uri.UriParams.Get("user"); ok {
			kept.Add("user", v)
		}
		uri.UriParams = kept
	}
	if uri.Headers != nil {
		kept := sip.NewParams()
		if v, ok := uri.Headers.Get("Replaces"); ok {
			raw, err := url.PathUnescape(v) // a + in a Call-ID stays a +
			if err != nil {
				return errBadReferTo
			}
			kept.Add("Replaces", url.QueryEscape(b.replaces(raw)))
		}
		uri.Headers = kept
	}
	value := "<" + uri.String() + ">"
	if display != "" {
		value = `"` + display + `" ` + value
	}
	out.AppendHeader(sip.NewHeader("Refer-To", value))
	return nil
}

// peerDomain is the host part of the peer's own URI on this leg: the To
// of the INVITE psigate sent, or the From of the one it received.
func (l *leg) peerDomain() string {
	inv := l.dialog().InviteRequest
	if l.uas != nil {
		return inv.From().Address.Host
	}
	return inv.To().Address.Host
}

// replaces maps a Replaces value naming a dialog of one side
// ("call-id;to-tag=..;from-tag=..") onto the dialog of the same call on
// the other side; a value naming no call of psigate's stays as it is.
//
// RFC 3891 section 3: the recipient of the INVITE matches to-tag against
// its own (local) tag and from-tag against its peer's. Its peer is
// psigate: on the other leg, to-tag is the peer's tag (psigate's remote
// tag) and from-tag is psigate's own.
func (b *B2BUA) replaces(v string) string {
	parts := strings.Split(v, ";")
	callID := strings.TrimSpace(parts[0])
	var toTag, fromTag string
	var rest []string
	for _, p := range parts[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch strings.ToLower(k) {
		case "to-tag":
			toTag = val
		case "from-tag":
			fromTag = val
		default:
			rest = append(rest, strings.TrimSpace(p))
		}
	}
	c, l := b.findDialog(callID, toTag, fromTag)
	if c == nil {
		return v
	}
	o := c.other(l)
	out := o.callID + ";to-tag=" + o.peerTag + ";from-tag=" + o.localTag
	for _, r := range rest {
		out += ";" + r
	}
	return out
}

// findDialog finds the call leg with a Call-ID and a pair of tags in
// either order.
func (b *B2BUA) findDialog(callID, tagA, tagB string) (*call, *leg) {
	for _, id := range []string{sip.DialogIDMake(callID, tagA, tagB), sip.DialogIDMake(callID, tagB, tagA)} {
		b.mu.Lock()
		c := b.calls[id]
		b.mu.Unlock()
		if c == nil {
			continue
		}
		for _, l := range c.legs {
			if l.id() == id {
				return c, l
			}
		}
	}
	return nil, nil
}

// referred notes a relayed REFER: the CSeq psigate gave it on leg to and
// the one it had on the other leg.
func (c *call) referred(to *leg, sent, received uint32) {
	c.referMu.Lock()
	defer c.referMu.Unlock()
	if c.referIDs == nil {
		c.referIDs = map[referKey]uint32{}
	}
	c.referIDs[referKey{to.side, sent}] = received
	c.referIDs[referKey{to.side.Other(), received}] = sent
}

// referKey is a REFER's CSeq on the leg of one side.
type referKey struct {
	side relay.Side
	cseq uint32
}

// referEvent rewrites the id of an "Event: refer" (a NOTIFY of a
// transfer's progress, or a SUBSCRIBE refreshing it) that came on leg
// from: the CSeq of the REFER as the other side sent it.
func (c *call) referEvent(from *leg, out *sip.Request) {
	h := out.GetHeader("Event")
	if h == nil {
		return
	}
	pkg, params, _ := strings.Cut(h.Value(), ";")
	if !strings.EqualFold(strings.TrimSpace(pkg), "refer") {
		return
	}
	var kept []string
	id := ""
	for _, p := range strings.Split(params, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, "id") {
			id = v
			continue
		}
		if p = strings.TrimSpace(p); p != "" {
			kept = append(kept, p)
		}
	}
	n, err := strconv.ParseUint(id, 10, 32)
	if err != nil {
		return
	}
	c.referMu.Lock()
	mapped, ok := c.referIDs[referKey{from.side, uint32(n)}]
	c.referMu.Unlock()
	if !ok {
		return
	}
	value := "refer;id=" + strconv.FormatUint(uint64(mapped), 10)
	for _, p := range kept {
		value += ";" + p
	}
	out.RemoveHeader("Event")
	out.AppendHeader(sip.NewHeader("Event", value))
}
