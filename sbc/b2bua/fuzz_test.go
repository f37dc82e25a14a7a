package b2bua

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// FuzzReplaces: any Replaces value maps to a value, never a panic; one
// that names no call stays as it is.
func FuzzReplaces(f *testing.F) {
	f.Add("abc@host;to-tag=1;from-tag=2")
	f.Add("abc;early-only;to-tag=;from-tag")
	f.Add(";;;=;")
	b := New(nil, nil, nil)
	f.Fuzz(func(t *testing.T, v string) {
		if got := b.replaces(v); got != v {
			t.Fatalf("%q mapped to %q with no calls", v, got)
		}
	})
}

// FuzzHeaderValues: Session-Expires, option tags and party URIs from any
// header value.
func FuzzHeaderValues(f *testing.F) {
	f.Add("1800;refresher=uac", "timer, 100rel", "sip:1001@pbx.example.com;transport=tls")
	f.Add("-1", ",,,", "sips:[::1]:5061;maddr=x;lr")
	f.Fuzz(func(t *testing.T, se, tags, uri string) {
		req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", Host: "h"})
		req.AppendHeader(sip.NewHeader("Session-Expires", se))
		if d := sessionExpires(req); d < 0 {
			t.Fatalf("Session-Expires %q: %v", se, d)
		}
		for _, tag := range strings.Split(filterTags(tags), ", ") {
			if tag != "" && !supported[strings.ToLower(tag)] {
				t.Fatalf("%q kept %q", tags, tag)
			}
		}
		var u sip.Uri
		if sip.ParseUri(uri, &u) == nil {
			p := partyURI(u)
			if p.UriParams.Has("transport") || p.UriParams.Has("maddr") {
				t.Fatalf("%q kept transport parameters: %s", uri, p.String())
			}
		}
	})
}
