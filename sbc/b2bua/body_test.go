package b2bua

import (
	"bytes"
	"errors"
	"testing"
)

const testSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"

func TestBodyOf(t *testing.T) {
	pidf := "--b1\r\nContent-Type: application/pidf+xml\r\n\r\n<presence/>\r\n"
	multi := "--b1\r\nContent-Type: application/sdp\r\n\r\n" + testSDP + "\r\n" + pidf + "--b1--\r\n"
	for _, tc := range []struct {
		name, body, ct string
		sdp            string
		err            error
	}{
		{"empty", "", "", "", nil},
		{"sdp", testSDP, "application/sdp", testSDP, nil},
		{"sdp with parameters", testSDP, "Application/SDP; charset=utf-8", testSDP, nil},
		{"multipart", multi, `multipart/mixed; boundary="b1"`, testSDP, nil},
		{"multipart, sdp second", pidf + "--b1\r\nContent-Type: application/sdp\r\n\r\n" + testSDP + "\r\n--b1--\r\n", "multipart/mixed;boundary=b1", testSDP, nil},
		{"multipart without sdp", pidf + "--b1--\r\n", "multipart/mixed;boundary=b1", "", errNoSDP},
		{"text", "hello", "text/plain", "", errNoSDP},
	} {
		b, err := bodyOf([]byte(tc.body), tc.ct)
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.err)
			continue
		}
		if tc.sdp == "" {
			if b != nil {
				t.Errorf("%s: found SDP %q", tc.name, b.sdp)
			}
			continue
		}
		if b == nil || string(b.sdp) != tc.sdp {
			t.Errorf("%s: SDP %+v", tc.name, b)
			continue
		}
		// Replacing the SDP keeps every other byte.
		if got := b.with([]byte("X")); !bytes.Equal(got, bytes.Replace([]byte(tc.body), []byte(tc.sdp), []byte("X"), 1)) {
			t.Errorf("%s: with: %q", tc.name, got)
		}
	}
}

// TestBodyOfMalformed: broken bodies are errors, never a panic or an SDP.
func TestBodyOfMalformed(t *testing.T) {
	for _, tc := range []struct{ body, ct string }{
		{testSDP, "application/"},
		{testSDP, ""},
		{"--b1\r\nContent-Type: application/sdp\r\n\r\n" + testSDP, "multipart/mixed;boundary=b1"},
		{testSDP, "multipart/mixed"},
		{testSDP, "multipart/mixed;boundary=zz"},
		{"--b1--", "multipart/mixed;boundary=b1"},
	} {
		if b, err := bodyOf([]byte(tc.body), tc.ct); err == nil {
			t.Errorf("%q (%s): no error, SDP %q", tc.body, tc.ct, b.sdp)
		}
	}
}

func FuzzBodyOf(f *testing.F) {
	f.Add([]byte(testSDP), "application/sdp")
	f.Add([]byte("--b1\r\nContent-Type: application/sdp\r\n\r\n"+testSDP+"\r\n--b1--\r\n"), "multipart/mixed;boundary=b1")
	f.Add([]byte("--b1\r\n\r\n\r\n--b1--"), "multipart/mixed;boundary=b1")
	f.Fuzz(func(t *testing.T, raw []byte, ct string) {
		b, err := bodyOf(raw, ct)
		if err != nil || b == nil {
			return
		}
		if !bytes.Contains(raw, b.sdp) {
			t.Fatalf("SDP %q not from the body", b.sdp)
		}
		if got := b.with(b.sdp); !bytes.Equal(got, raw) {
			t.Fatalf("with(sdp) changed the body: %q", got)
		}
	})
}
