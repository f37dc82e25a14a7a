package media

import (
	"context"
	"errors"
	"math"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/psigate/psigate/sbc/media/g711"
	"github.com/psigate/psigate/sbc/media/relay"
	"github.com/psigate/psigate/sbc/media/sdes"
)

// TestToneFrames: the busy tones have their frequencies while on and
// are silent while off.
func TestToneFrames(t *testing.T) {
	for _, tc := range []struct {
		tone  Tone
		freqs []float64
	}{{BusyCEPT, []float64{425}}, {BusyNorthAmerica, []float64{480, 620}}} {
		on := make([]float64, 0, 25*playSamples)
		off := make([]float64, 0, 25*playSamples)
		frame := make([]byte, playSamples)
		for n := range 50 { // one second: 0.5 s on, 0.5 s off
			tc.tone.frame(n, true, frame)
			for _, u := range frame {
				v := float64(g711.ULawToLinear(u))
				if n < 25 {
					on = append(on, v)
				} else {
					off = append(off, v)
				}
			}
		}
		for _, f := range tc.freqs {
			if p := goertzel(on, f, playRate); p < 1e12 {
				t.Errorf("%v Hz: power %g while on", f, p)
			}
		}
		if p := goertzel(on, 1000, playRate); p > 1e9 {
			t.Errorf("1000 Hz: power %g while on", p)
		}
		var peak float64
		for _, v := range off {
			peak = math.Max(peak, math.Abs(v))
		}
		if peak > 8 { // G.711's smallest steps around zero
			t.Errorf("%v: peak %v while off", tc.freqs, peak)
		}
	}
	if _, ok := BusyTone("klingon"); ok {
		t.Error("an unknown style names a tone")
	}
}

// TestBusyToneAsEarlyMedia: psigate answers a Zoom client's SRTP offer
// itself (the PBX refused the call) with G.711 and plays it the busy
// tone, SRTP-protected under the key of that answer.
func TestBusyToneAsEarlyMedia(t *testing.T) {
	s := zoomCall(t, profile(t, "Zoom"), profile(t, "default"))
	if _, _, err := s.AnswerLocally(relay.A); !errors.Is(err, ErrNoOffer) {
		t.Fatalf("without an offer: %v, want ErrNoOffer", err)
	}
	client := listen(t)
	key, _ := sdes.New(1, sdes.AES128SHA1_80)
	offer := "v=0\r\no=zoom 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio " + strconv.Itoa(client.LocalAddr().(*net.UDPAddr).Port) + " RTP/SAVP 9 8 0 101\r\n" +
		"a=rtpmap:9 G722/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n" +
		"a=crypto:" + key.String() + "\r\na=sendrecv\r\n"
	if _, err := s.Offer(relay.A, []byte(offer)); err != nil {
		t.Fatal(err)
	}
	ans, player, err := s.AnswerLocally(relay.A)
	if err != nil {
		t.Fatal(err)
	}
	m := mustParse(t, ans).MediaDescriptions[0]
	if len(m.MediaName.Formats) < 1 || m.MediaName.Formats[0] != "8" || len(attrs(m, "crypto")) != 1 || has(m, "recvonly") || has(m, "inactive") {
		t.Fatalf("answer:\n%s", ans)
	}
	relayKey, err := sdes.Parse(attrs(m, "crypto")[0])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- player.Play(ctx, BusyCEPT, 600*time.Millisecond) }()
	dec, err := relayKey.Context()
	if err != nil {
		t.Fatal(err)
	}
	var samples []float64
	buf := make([]byte, 1500)
	deadline := time.Now().Add(5 * time.Second)
	for len(samples) < 25*playSamples && time.Now().Before(deadline) {
		_ = client.SetReadDeadline(deadline)
		n, err := client.Read(buf)
		if err != nil {
			break
		}
		var hdr rtp.Header
		plain, err := dec.DecryptRTP(nil, buf[:n], &hdr)
		if err != nil {
			t.Fatalf("packet %d does not decrypt under the answer's key: %v", len(samples)/playSamples, err)
		}
		if hdr.PayloadType != 8 {
			t.Fatalf("payload type %d, want PCMA 8", hdr.PayloadType)
		}
		for _, a := range plain[hdr.MarshalSize():] {
			samples = append(samples, float64(g711.ALawToLinear(a)))
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(samples) < 20*playSamples {
		t.Fatalf("%d samples of busy tone", len(samples))
	}
	// The first 400 ms are all tone: its power is at 425 Hz.
	x := samples[:20*playSamples]
	var sum float64
	for _, v := range x {
		sum += v * v
	}
	n := float64(len(x))
	if share := goertzel(x, 425, playRate) * 2 / (n * n) / (sum / n); share < 0.9 {
		t.Errorf("%.2f of the power at 425 Hz", share)
	}
	if _, freq, _ := analyse(x, playRate); math.Abs(freq-425) > 10 {
		t.Errorf("strongest at %v Hz, want 425 Hz", freq)
	}
}

// TestBusyToneNeedsG711: an offer without G.711 gets no local answer.
func TestBusyToneNeedsG711(t *testing.T) {
	s := zoomCall(t, profile(t, "Zoom"), profile(t, "default"))
	key, _ := sdes.New(1, sdes.AES128SHA1_80)
	offer := "v=0\r\no=zoom 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio 40000 RTP/SAVP 9\r\na=rtpmap:9 G722/8000\r\na=crypto:" + key.String() + "\r\n"
	if _, err := s.Offer(relay.A, []byte(offer)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AnswerLocally(relay.A); !errors.Is(err, ErrNoG711) || !errors.Is(err, ErrNotAcceptable) {
		t.Errorf("G.722 only: %v, want ErrNoG711", err)
	}
}
