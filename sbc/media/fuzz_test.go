package media

import (
	"errors"
	"os"
	"testing"

	"github.com/psigate/psigate/sbc/media/relay"
)

func seeds(f *testing.F) {
	for _, name := range []string{"zoom-offer.sdp", "openscape-offer.sdp", "webrtc-offer.sdp"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n"))
	f.Add([]byte("v=0\r\nm=audio 1 RTP/AVP 0 8 200\r\na=rtpmap:0\r\na=crypto:x\r\na=rtcp:\r\n"))
}

// FuzzOffer feeds arbitrary SDP to a session as an offer from either side
// and, when accepted, answers it with the same bytes: nothing may panic;
// a refusal must be ErrNotAcceptable or ErrNoOffer; what psigate writes
// must parse again.
func FuzzOffer(f *testing.F) {
	seeds(f)
	e := engine(f)
	zoom, def := profile(f, "Zoom"), profile(f, "default")
	def.Transcoding = true
	// One session serves every input, as a long call sees many
	// re-INVITEs.
	s, err := NewSession(e, Leg{Realm: "access", Advertise: accessAddr, Profile: zoom, NAT: true},
		Leg{Realm: "core", Advertise: coreAddr, Profile: def}, nil)
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, side := range []relay.Side{relay.A, relay.B} {
			out, err := s.Offer(side, raw)
			if err != nil {
				if !errors.Is(err, ErrNotAcceptable) {
					t.Fatalf("offer refused with %v, not ErrNotAcceptable", err)
				}
				continue
			}
			if _, err := parse(out); err != nil {
				t.Fatalf("psigate wrote an offer it cannot read: %v\n%s", err, out)
			}
			ans, err := s.Answer(side.Other(), out)
			if err != nil && !errors.Is(err, ErrNotAcceptable) {
				t.Fatalf("answer refused with %v", err)
			}
			if err == nil {
				if _, err := parse(ans); err != nil && !errors.Is(err, ErrNoAudio) {
					t.Fatalf("psigate wrote an answer it cannot read: %v\n%s", err, ans)
				}
			}
			s.Reject()
		}
	})
}

// FuzzParse checks the SDP reader alone.
func FuzzParse(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := parse(raw)
		if err != nil {
			if !errors.Is(err, ErrNotAcceptable) {
				t.Fatalf("parse error %v is not ErrNotAcceptable", err)
			}
			return
		}
		if p.audio.port < 1 || p.audio.port > 65535 {
			t.Fatalf("accepted port %d", p.audio.port)
		}
	})
}
