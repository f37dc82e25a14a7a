package b2bua

import (
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestCheckInvite(t *testing.T) {
	const sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	invite := func(ruri string, headers ...string) string {
		return "INVITE " + ruri + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-check\r\n" +
			"From: <sip:1001@127.0.0.1>;tag=a\r\nTo: <sip:2001@127.0.0.1>\r\n" +
			"Call-ID: check@127.0.0.1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n" +
			strings.Join(headers, "") +
			"Content-Length: " + strconv.Itoa(len(sdp)) + "\r\n\r\n" + sdp
	}
	const contact, ctype = "Contact: <sip:1001@127.0.0.1:5070>\r\n", "Content-Type: application/sdp\r\n"
	for _, tc := range []struct {
		name   string
		raw    string
		code   int
		header string // a header the refusal must carry
	}{
		{"good", invite("sip:2001@127.0.0.1", contact, ctype), 0, ""},
		{"good, Accept any", invite("sip:2001@127.0.0.1", contact, ctype, "Accept: text/plain, */*\r\n"), 0, ""},
		{"good, content type with parameters", invite("sip:2001@127.0.0.1", contact, "Content-Type: Application/SDP; charset=utf-8\r\n"), 0, ""},
		{"headers in Request-URI", invite("sip:2001@127.0.0.1?Route=%3Csip:evil%3E", contact, ctype), 400, ""},
		{"no Contact", invite("sip:2001@127.0.0.1", ctype), 400, ""},
		{"body not SDP", invite("sip:2001@127.0.0.1", contact, "Content-Type: text/plain\r\n"), 415, "Accept"},
		{"body without Content-Type", invite("sip:2001@127.0.0.1", contact), 415, "Accept"},
		{"Accept without SDP", invite("sip:2001@127.0.0.1", contact, ctype, "Accept: text/plain\r\n"), 406, "Warning"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := sip.ParseMessage([]byte(tc.raw))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			code, reason, hdrs := checkInvite(msg.(*sip.Request))
			if code != tc.code {
				t.Fatalf("checkInvite = %d %s, want %d", code, reason, tc.code)
			}
			if code != 0 && reason == "" {
				t.Error("refusal without a reason phrase")
			}
			if tc.header != "" && !hasHeader(hdrs, tc.header) {
				t.Errorf("%d %s without %s: %v", code, reason, tc.header, hdrs)
			}
		})
	}
}

func hasHeader(hdrs []sip.Header, name string) bool {
	for _, h := range hdrs {
		if strings.EqualFold(h.Name(), name) {
			return true
		}
	}
	return false
}

// TestPartyURI: From and To cross without one side's transport
// parameters.
func TestPartyURI(t *testing.T) {
	for in, want := range map[string]string{
		"sip:3002@psigate.test;transport=tls":         "sip:3002@psigate.test",
		"sip:+4930123@pbx.example.com;user=phone;ob":  "sip:+4930123@pbx.example.com;user=phone",
		"sips:1001@pbx.example.com;maddr=10.0.0.1;lr": "sips:1001@pbx.example.com",
		"sip:1001@pbx.example.com":                    "sip:1001@pbx.example.com",
		"sip:1001@pbx.example.com;TRANSPORT=udp;x=1":  "sip:1001@pbx.example.com;x=1",
	} {
		var u sip.Uri
		if err := sip.ParseUri(in, &u); err != nil {
			t.Fatal(err)
		}
		got := partyURI(u)
		if got.String() != want {
			t.Errorf("%s: %s, want %s", in, got.String(), want)
		}
		if in == "sip:3002@psigate.test;transport=tls" && !u.UriParams.Has("transport") {
			t.Error("partyURI changed its argument")
		}
	}
}

// TestCompactHeaders: compact forms cross under their full names and are
// found by their full names.
func TestCompactHeaders(t *testing.T) {
	in := sip.NewRequest(sip.REFER, sip.Uri{Scheme: "sip", Host: "h"})
	in.AppendHeader(sip.NewHeader("r", "<sip:2003@pbx.example.com>"))
	in.AppendHeader(sip.NewHeader("x", "1800;refresher=uac"))
	in.AppendHeader(sip.NewHeader("o", "refer"))
	in.AppendHeader(sip.NewHeader("s", "hi"))
	if h := header(in, "Refer-To"); h == nil || h.Value() != "<sip:2003@pbx.example.com>" {
		t.Errorf("Refer-To by its compact form: %v", h)
	}
	if d := sessionExpires(in); d.Seconds() != 1800 {
		t.Errorf("Session-Expires by its compact form: %v", d)
	}
	out := sip.NewRequest(sip.REFER, sip.Uri{Scheme: "sip", Host: "h"})
	copyHeaders(out, in, newHeaderSet([]string{"Session-Expires", "Event", "Subject"}))
	for _, name := range []string{"Session-Expires", "Event", "Subject"} {
		if out.GetHeader(name) == nil {
			t.Errorf("%s did not cross under its full name:\n%s", name, out)
		}
	}
}
