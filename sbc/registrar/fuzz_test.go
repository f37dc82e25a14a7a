package registrar

// Fuzz targets for the parsing the registrar owns: the checks of a client
// REGISTER (Relay.parse) and the helpers that read its headers
// (requestedExpiry, aor, the Contact URI echo, pushParams). Requests are
// built with sipgo's parser, as the SBC's listeners build them, from the
// fuzzer's bytes. The seeds are the RFC 4475 and RFC 5118 torture messages
// of the shared corpus, their header values, and a few REGISTERs.
//
//	go test -run '^$' -fuzz '^FuzzParseRegister$' -fuzztime 30s ./sbc/registrar/

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// fuzzTortureDir is the shared corpus, relative to this package.
const fuzzTortureDir = "../../../shared/testdata/sip-torture"

// fuzzTorture returns the corpus's messages; none when it is not there.
func fuzzTorture(f *testing.F) [][]byte {
	f.Helper()
	var out [][]byte
	for _, dir := range []string{"valid", "invalid", "rfc5118-archive"} {
		files, err := os.ReadDir(filepath.Join(fuzzTortureDir, dir))
		if errors.Is(err, os.ErrNotExist) {
			f.Logf("no SIP torture corpus at %s: seeding without it", fuzzTortureDir)
			return nil
		}
		if err != nil {
			f.Fatal(err)
		}
		for _, e := range files {
			b, err := os.ReadFile(filepath.Join(fuzzTortureDir, dir, e.Name()))
			if err != nil {
				f.Fatal(err)
			}
			out = append(out, b)
		}
	}
	return out
}

// fuzzRegisters are well-formed and nearly well-formed REGISTERs.
var fuzzRegisters = []string{
	fuzzRegister(`<sip:1001@192.168.1.23:5062;transport=udp>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";expires=3600`, "") +
		"User-Agent: ZoomPbxPhone 6.0\r\n",
	fuzzRegister(`"Desk" <sips:1001@[2001:db8::1]:5061;transport=tls;pn-provider=apns;pn-prid=00fc1358;pn-param=ABCD.com.zoom.voip>;reg-id=1`, "600"),
	fuzzRegister("*", "0"),
	fuzzRegister("*", "60"),
	fuzzRegister("<sip:1001@10.0.0.1>;expires=30", ""),
	fuzzRegister("<sip:1001@10.0.0.1>", "4294967296"),
	fuzzRegister("<sip:1001@10.0.0.1>;expires=", "abc"),
	fuzzRegister("sip:1001@10.0.0.1;expires=0", ""),
	fuzzRegister("<tel:+15551234567>", ""),
	fuzzRegister(`"a<b" <sip:1001@10.0.0.1>`, ""),
}

// fuzzRegister is a REGISTER with the given Contact value and, if not
// empty, Expires value; the other headers are well formed.
func fuzzRegister(contact, expires string) string {
	s := "REGISTER sip:pbx.example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.168.1.23:5062;rport;branch=z9hG4bK-fuzz\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:1001@pbx.example.com>;tag=fuzz\r\n" +
		"To: <sip:1001@pbx.example.com>\r\n" +
		"Call-ID: fuzz@192.168.1.23\r\n" +
		"CSeq: 1 REGISTER\r\n" +
		"Contact: " + contact + "\r\n"
	if expires != "" {
		s += "Expires: " + expires + "\r\n"
	}
	return s + "Content-Length: 0\r\n\r\n"
}

// fuzzRequest parses a request as the SBC's UDP listener does; nil when
// sipgo refuses it (the SBC then drops it) or it is a response.
func fuzzRequest(b []byte) *sip.Request {
	msg, err := sip.ParseMessage(b)
	if err != nil {
		return nil
	}
	req, _ := msg.(*sip.Request)
	return req
}

// fuzzHeaderValues collects the values of the named headers (long and
// compact forms, case-insensitive, folded lines joined) in the messages.
func fuzzHeaderValues(msgs [][]byte, names ...string) []string {
	var out []string
	for _, m := range msgs {
		head, _, _ := bytes.Cut(m, []byte("\r\n\r\n"))
		var lines []string
		sc := bufio.NewScanner(bytes.NewReader(head))
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			if len(lines) > 0 && line != "" && (line[0] == ' ' || line[0] == '\t') {
				lines[len(lines)-1] += " " + strings.TrimSpace(line)
				continue
			}
			lines = append(lines, line)
		}
		for _, line := range lines {
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			for _, n := range names {
				if strings.EqualFold(strings.TrimSpace(name), n) {
					out = append(out, strings.TrimSpace(value))
				}
			}
		}
	}
	return out
}

// fuzzRelays are the limits parse is run with: none, and psigate's
// defaults (remote subscribers: 300 s minimum, 31 days maximum).
var fuzzRelays = []*Relay{
	{},
	{Limits: Limits{MinInterval: 300 * time.Second, MaxExpiry: 2678400 * time.Second}},
}

// FuzzParseRegister: whatever request arrives, parse never panics, and it
// either accepts a REGISTER the relay can use or refuses it with a
// *badRequest carrying a 4xx.
func FuzzParseRegister(f *testing.F) {
	for _, b := range fuzzTorture(f) {
		f.Add(b)
	}
	for _, s := range fuzzRegisters {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req := fuzzRequest(data)
		if req == nil {
			return
		}
		for _, r := range fuzzRelays {
			p, err := r.parse(req)
			if err != nil {
				var bad *badRequest
				if !errors.As(err, &bad) {
					t.Fatalf("parse refused with %T %v, want a *badRequest (HandleRegister would use a nil request)", err, err)
				}
				if bad.code < 400 || bad.code > 499 || bad.reason == "" {
					t.Fatalf("parse refused with %d %q, want a 4xx with a reason", bad.code, bad.reason)
				}
				if bad.code == 423 {
					want := strconv.Itoa(int(r.Limits.MinInterval / time.Second))
					if len(bad.hdrs) != 1 || bad.hdrs[0].Name() != "Min-Expires" || bad.hdrs[0].Value() != want {
						t.Fatalf("423 with %v, want Min-Expires: %s", bad.hdrs, want)
					}
				}
				if p != nil {
					t.Fatalf("parse returned a request and an error")
				}
				continue
			}
			if p == nil || p.req != req {
				t.Fatalf("parse accepted without the request: %+v", p)
			}
			// What the relay dereferences next.
			if req.To() == nil || req.From() == nil || req.CallID() == nil || req.CSeq() == nil {
				t.Fatalf("parse accepted a REGISTER without To, From, Call-ID or CSeq")
			}
			if !strings.HasPrefix(p.aor, "sip:") && !strings.HasPrefix(p.aor, "sips:") || p.aor != aor(req.To().Address) {
				t.Fatalf("aor %q of To %q", p.aor, req.To().Value())
			}
			if p.wildcard {
				if p.contact != nil || p.expires != 0 {
					t.Fatalf("wildcard with contact %v and expiry %s", p.contact, p.expires)
				}
				continue
			}
			c := p.contact
			if c == nil || c.Address.Scheme != "sip" && c.Address.Scheme != "sips" || c.Address.Host == "" {
				t.Fatalf("parse accepted the Contact %v", c)
			}
			if p.expires < 0 || p.expires%time.Second != 0 ||
				r.Limits.MaxExpiry > 0 && p.expires > r.Limits.MaxExpiry ||
				p.expires > 0 && p.expires < r.Limits.MinInterval {
				t.Fatalf("expiry %s outside [%s, %s]", p.expires, r.Limits.MinInterval, r.Limits.MaxExpiry)
			}
			_ = pushParams(c.Address)
		}
	})
}

// FuzzRequestedExpiry: the requested expiry is the Contact's expires
// parameter, else the Expires header, else an hour; a number of seconds
// that fits 32 bits, or an error.
func FuzzRequestedExpiry(f *testing.F) {
	torture := fuzzTorture(f)
	contacts := fuzzHeaderValues(torture, "Contact", "m")
	expires := fuzzHeaderValues(torture, "Expires")
	for _, c := range contacts {
		f.Add(c, false, "")
	}
	for _, e := range expires {
		f.Add("<sip:1001@10.0.0.1>", true, e)
	}
	for _, s := range [][2]string{
		{"<sip:a@b>;expires=3600", ""}, {"<sip:a@b>;expires=0", "60"}, {"<sip:a@b>", " 120 "},
		{"<sip:a@b>;expires=4294967295", ""}, {"<sip:a@b>;expires=4294967296", ""}, {"<sip:a@b>;expires=-1", ""},
		{"<sip:a@b>;expires=\"60\"", ""}, {"<sip:a@b>", "+60"}, {"*", "0"}, {"<sip:a@b>;EXPIRES=60", ""},
	} {
		f.Add(s[0], s[1] != "", s[1])
	}
	f.Fuzz(func(t *testing.T, contact string, hasExpires bool, expiresValue string) {
		e := ""
		if hasExpires {
			e = expiresValue
			if e == "" {
				e = " " // an Expires header with an empty value
			}
		}
		req := fuzzRequest([]byte(fuzzRegister(contact, e)))
		if req == nil {
			return
		}
		c, ok := req.GetHeader("Contact").(*sip.ContactHeader)
		if !ok {
			return
		}
		d, err := requestedExpiry(req, c)
		if err != nil {
			if d != 0 {
				t.Fatalf("error %v with expiry %s", err, d)
			}
			return
		}
		if d < 0 || d%time.Second != 0 || d > (1<<32-1)*time.Second {
			t.Fatalf("expiry %s", d)
		}
		if _, param := c.Params.Get("expires"); !param && req.GetHeader("Expires") == nil && d != time.Hour {
			t.Fatalf("no expires parameter or header, expiry %s, want an hour", d)
		}
	})
}

// FuzzAOR: the address of record is the To URI's scheme, user and host,
// the host compared without case.
func FuzzAOR(f *testing.F) {
	for _, v := range fuzzHeaderValues(fuzzTorture(f), "To", "t") {
		f.Add(v)
	}
	for _, v := range []string{"<sip:1001@PBX.example.com>", "sips:alice@[2001:DB8::1]:5061;transport=tls", `"Bob" <sip:%62ob@Example.COM;user=phone>;tag=x`, "<tel:+1555>", "sip:example.com"} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, to string) {
		req := fuzzRequest([]byte(strings.Replace(fuzzRegister("<sip:1001@10.0.0.1>", ""), "To: <sip:1001@pbx.example.com>", "To: "+to, 1)))
		if req == nil || req.To() == nil {
			return
		}
		u := req.To().Address
		a := aor(u)
		if !strings.HasPrefix(a, u.Scheme+":") || !strings.HasSuffix(a, strings.ToLower(u.Host)) {
			t.Fatalf("aor(%q) = %q", u.String(), a)
		}
		// Host names are ASCII (RFC 3261 section 25.1) and compared
		// without case (section 19.1.4).
		upper := *u.Clone()
		upper.Host = strings.Map(func(r rune) rune {
			if 'a' <= r && r <= 'z' {
				return r - 'a' + 'A'
			}
			return r
		}, upper.Host)
		if aor(upper) != a {
			t.Fatalf("aor of %q is %q, of %q is %q: the host's case matters", u.Host, a, upper.Host, aor(upper))
		}
	})
}

// FuzzContactURI: the URI part of a Contact value, as the bindings
// compare and echo it, is the Contact's URI. Bindings keep the Contact
// as sipgo writes it (ContactHeader.Value), so that is the input that
// matters; arbitrary strings must not panic either.
func FuzzContactURI(f *testing.F) {
	for _, v := range fuzzHeaderValues(fuzzTorture(f), "Contact", "m") {
		f.Add(v)
	}
	for _, v := range []string{
		"<sip:1001@192.168.1.23:5062;transport=udp>;expires=60",
		`"Desk" <sips:1001@[2001:db8::1]:5061;transport=tls>;+sip.instance="<urn:uuid:1>"`,
		"sip:1001@10.0.0.1;expires=0",
		"<sip:1001@10.0.0.1?Route=%3Csip:x%3E>",
		"*",
		"",
		"<",
		"><;",
		// Found by this target: re-reading the URI out of a rendered
		// Contact took a '<' inside the quoted display name, so these
		// matched another device's binding and the 200 echoed a broken
		// Contact. The registrar now keeps the parsed URI instead.
		`"a<b" <sip:1001@10.0.0.1>;expires=600`,
		`"x\" <sip:victim@10.0.0.2>" <sip:1001@10.0.0.1>`,
		// sipgo takes the invalid unquoted display name \ and writes
		// it back as "\", which no reader of the rendered value gets
		// right.
		`\ <sip:1001@10.0.0.1>`,
	} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, contact string) {
		// The registrar keeps a Contact's URI as sipgo writes it and
		// echoes it in angle brackets: that must read back as the same
		// URI, whatever the display name held.
		req := fuzzRequest([]byte(fuzzRegister(contact, "")))
		if req == nil {
			return
		}
		for _, h := range req.GetHeaders("Contact") {
			c, ok := h.(*sip.ContactHeader)
			if !ok || c.Address.Wildcard {
				continue
			}
			want := c.Address.String()
			if strings.ContainsAny(want, "<>") {
				// Not a SIP URI (RFC 3261 section 25.1: '<' and '>'
				// are escaped), which sipgo's parser let through.
				continue
			}
			echo := fuzzRequest([]byte(fuzzRegister("<"+want+">;expires=60", "")))
			if echo == nil {
				t.Fatalf("the echoed Contact <%s> does not parse", want)
			}
			if got := echo.Contact(); got == nil || got.Address.String() != want {
				t.Fatalf("the echoed Contact <%s> reads back as %v", want, got)
			}
		}
	})
}

// FuzzPushParams: the RFC 8599 parameters of a Contact URI are exactly its
// pn- URI parameters.
func FuzzPushParams(f *testing.F) {
	for _, v := range fuzzHeaderValues(fuzzTorture(f), "Contact", "m") {
		f.Add(v)
	}
	for _, v := range []string{
		"<sip:1001@10.0.0.1;pn-provider=apns;pn-prid=00fc13adff78512;pn-param=ABCD1234.com.example.voip>",
		"<sip:1001@10.0.0.1;pn-provider=fcm;pn-prid=x;transport=tcp;pn-param>;pn-ignored=1",
		"<sip:1001@10.0.0.1;PN-PROVIDER=apns;pn-provider=fcm>",
	} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, contact string) {
		req := fuzzRequest([]byte(fuzzRegister(contact, "")))
		if req == nil {
			return
		}
		c, ok := req.GetHeader("Contact").(*sip.ContactHeader)
		if !ok {
			return
		}
		got := pushParams(c.Address)
		want := map[string]bool{}
		for _, k := range c.Address.UriParams.Keys() {
			if strings.HasPrefix(k, "pn-") {
				want[k] = true
			}
		}
		if len(got) != len(want) {
			t.Fatalf("pushParams(%q) = %v, want the parameters %v", c.Address.String(), got, want)
		}
		for k, v := range got {
			if pv, _ := c.Address.UriParams.Get(k); !want[k] || pv != v {
				t.Fatalf("pushParams(%q)[%q] = %q, the URI has %q", c.Address.String(), k, v, pv)
			}
		}
	})
}
