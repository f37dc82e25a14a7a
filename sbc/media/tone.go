package media

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/pion/rtp"
	"github.com/psigate/psigate/sbc/media/g711"
	"github.com/psigate/psigate/sbc/media/relay"
	"github.com/psigate/psigate/sbc/media/sdes"
)

// Tone is a call-progress tone: the sum of its frequencies, on and off
// in a cadence.
type Tone struct {
	Freqs   []float64 // Hz
	On, Off time.Duration
}

// Busy tones (ITU-T E.180 and its supplement): most of Europe and much of
// the world use 425 Hz, North America 480 + 620 Hz; both 0.5 s on, 0.5 s
// off.
var (
	BusyCEPT         = Tone{Freqs: []float64{425}, On: 500 * time.Millisecond, Off: 500 * time.Millisecond}
	BusyNorthAmerica = Tone{Freqs: []float64{480, 620}, On: 500 * time.Millisecond, Off: 500 * time.Millisecond}
)

// The busy tone styles a profile may name.
const (
	BusyToneCEPT         = "cept"
	BusyToneNorthAmerica = "north-america"
)

// BusyTone is the tone a profile's style names; false for none.
func BusyTone(style string) (Tone, bool) {
	switch style {
	case BusyToneCEPT:
		return BusyCEPT, true
	case BusyToneNorthAmerica:
		return BusyNorthAmerica, true
	}
	return Tone{}, false
}

const (
	playRate      = 8000
	playFrame     = 20 * time.Millisecond
	playSamples   = playRate / 50 // one 20 ms frame
	playAmplitude = 0.2           // of full scale, split between the frequencies: about -17 dBm0
)

// frame writes the tone's 20 ms frame n (G.711 at 8 kHz).
func (t Tone) frame(n int, ulaw bool, out []byte) {
	period := t.On + t.Off
	for i := range out {
		k := n*playSamples + i
		at := time.Duration(k) * time.Second / playRate
		var v float64
		if period == 0 || at%period < t.On {
			for _, f := range t.Freqs {
				v += math.Sin(2 * math.Pi * f * float64(k) / playRate)
			}
			v *= playAmplitude / float64(max(len(t.Freqs), 1)) * math.MaxInt16
		}
		if ulaw {
			out[i] = g711.LinearToULaw(int16(v))
		} else {
			out[i] = g711.LinearToALaw(int16(v))
		}
	}
}

// ErrNoG711 is returned by AnswerLocally when the offer has neither
// PCMU nor PCMA to play a tone in.
var ErrNoG711 = fmt.Errorf("%w: no G.711 to play a tone in", ErrNotAcceptable)

// Player sends a tone psigate makes itself on one side of a session.
type Player struct {
	s    *Session
	side relay.Side
	pt   uint8
	ulaw bool
}

// AnswerLocally answers the pending offer from side offerer on behalf of
// the other side, which refused the call, so that psigate can play the
// offerer a tone as early media: it returns the answer for the offerer
// and the player. The other side is left sending nothing to psigate and
// receiving nothing from it.
func (s *Session) AnswerLocally(offerer relay.Side) ([]byte, *Player, error) {
	s.mu.Lock()
	pend := s.pending
	if pend == nil || pend.from != offerer {
		s.mu.Unlock()
		return nil, nil, ErrNoOffer
	}
	var f *format
	for i := range pend.sent {
		if c := pend.sent[i].codec; c == "G711U" || c == "G711A" {
			f = &pend.sent[i]
			break
		}
	}
	var crypto *sdes.Crypto
	if len(pend.cryptos) > 0 {
		c, err := sdes.New(pend.cryptos[0].Tag, pend.cryptos[0].Suite)
		if err != nil {
			s.mu.Unlock()
			return nil, nil, err
		}
		crypto = &c
	}
	s.mu.Unlock()
	if f == nil {
		return nil, nil, ErrNoG711
	}
	// The answer the other side would have given: the codec, sendonly
	// (it sends, psigate's tone, and wants nothing back), at the discard
	// port, where nothing is ever sent as it receives nothing.
	proto, line := "RTP/AVP", ""
	if crypto != nil {
		proto, line = "RTP/SAVP", "a=crypto:"+crypto.String()+"\r\n"
	}
	enc := "PCMU"
	if f.codec == "G711A" {
		enc = "PCMA"
	}
	local := fmt.Sprintf("v=0\r\no=psigate 0 0 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio 9 %s %d\r\na=rtpmap:%d %s/8000\r\n%sa=sendonly\r\n", proto, f.pt, f.pt, enc, line)
	ans, err := s.Answer(offerer.Other(), []byte(local))
	if err != nil {
		return nil, nil, err
	}
	return ans, &Player{s: s, side: offerer, pt: f.pt, ulaw: f.codec == "G711U"}, nil
}

// Play sends tone t to the player's side for d, or until ctx ends, in
// 20 ms RTP packets.
func (p *Player) Play(ctx context.Context, t Tone, d time.Duration) error {
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	hdr := rtp.Header{Version: 2, PayloadType: p.pt, SequenceNumber: binary.BigEndian.Uint16(id[:2]),
		Timestamp: binary.BigEndian.Uint32(id[2:6]), SSRC: binary.BigEndian.Uint32(id[4:8]), Marker: true}
	payload := make([]byte, playSamples)
	tick := time.NewTicker(playFrame)
	defer tick.Stop()
	end := time.After(d)
	for n := 0; ; n++ {
		t.frame(n, p.ulaw, payload)
		pkt, err := (&rtp.Packet{Header: hdr, Payload: payload}).Marshal()
		if err != nil {
			return err
		}
		if err := p.s.bridge.Inject(p.side, pkt); err != nil {
			return err
		}
		hdr.Marker = false
		hdr.SequenceNumber++
		hdr.Timestamp += playSamples
		select {
		case <-ctx.Done():
			return nil
		case <-end:
			return nil
		case <-tick.C:
		}
	}
}
