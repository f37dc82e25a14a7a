package sbc

// Test tones: WAV files for baresip to play, and the Goertzel analysis
// that tells which tone a recording or an RTP stream holds.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/psigate/psigate/sbc/media/g711"
)

const (
	toneRate      = 8000 // Hz, G.711's
	toneAmplitude = 8000 // about -12 dBFS
)

// toneWAV is a 16-bit mono WAV file at toneRate of a sine of freq Hz
// lasting d.
func toneWAV(freq float64, d time.Duration) []byte {
	n := int(d.Seconds() * toneRate)
	var b bytes.Buffer
	le := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	b.WriteString("RIFF")
	le(uint32(36 + 2*n))
	b.WriteString("WAVEfmt ")
	le(uint32(16))
	le(uint16(1)) // PCM
	le(uint16(1)) // mono
	le(uint32(toneRate))
	le(uint32(2 * toneRate)) // bytes per second
	le(uint16(2))            // block align
	le(uint16(16))           // bits per sample
	b.WriteString("data")
	le(uint32(2 * n))
	for i := range n {
		le(int16(math.Round(toneAmplitude * math.Sin(2*math.Pi*freq*float64(i)/toneRate))))
	}
	return b.Bytes()
}

// readWAV returns the samples and the sample rate of a 16-bit mono PCM
// WAV file. A file still being written (its data chunk's size not yet
// filled in) gives the samples it has.
func readWAV(path string) ([]float64, int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	if len(data) < 12 || string(data[:4]) != "RIFF" || string(data[8:12]) != "WAVE" {
		return nil, 0, fmt.Errorf("%s: not a WAV file", path)
	}
	rate := 0
	for p := 12; p+8 <= len(data); {
		id, size := string(data[p:p+4]), int(binary.LittleEndian.Uint32(data[p+4:p+8]))
		body := data[p+8:]
		if size > len(body) || (id == "data" && size == 0) {
			size = len(body)
		}
		body = body[:size]
		switch id {
		case "fmt ":
			if len(body) < 16 {
				return nil, 0, fmt.Errorf("%s: short fmt chunk", path)
			}
			format, channels := binary.LittleEndian.Uint16(body[0:]), binary.LittleEndian.Uint16(body[2:])
			bits := binary.LittleEndian.Uint16(body[14:])
			if format != 1 || channels != 1 || bits != 16 {
				return nil, 0, fmt.Errorf("%s: format %d, %d channels, %d bits; want 16-bit mono PCM", path, format, channels, bits)
			}
			rate = int(binary.LittleEndian.Uint32(body[4:]))
		case "data":
			if rate == 0 {
				return nil, 0, fmt.Errorf("%s: data before fmt", path)
			}
			x := make([]float64, len(body)/2)
			for i := range x {
				x[i] = float64(int16(binary.LittleEndian.Uint16(body[2*i:])))
			}
			return x, rate, nil
		}
		p += 8 + size + size%2 // chunks are padded to even sizes
	}
	return nil, 0, fmt.Errorf("%s: no data chunk", path)
}

// alaw decodes G.711 A-law.
func alaw(payload []byte) []float64 {
	x := make([]float64, len(payload))
	for i, b := range payload {
		x[i] = float64(g711.ALawToLinear(b))
	}
	return x
}

// toneReport is what a stretch of audio holds.
type toneReport struct {
	// Heard is how much of it is sound: the 100 ms blocks whose RMS is
	// over 300 (the test tones have about 5600).
	Heard time.Duration
	// RMS is the RMS of the blocks heard.
	RMS float64
	// Freq is the dominant frequency in the blocks heard: the strongest
	// of 5 Hz steps from 100 to 3900 Hz (call-progress tones such as
	// 425 Hz fall between steps of 10 Hz, which the 100 ms blocks would
	// resolve).
	Freq float64
	// Purity is the share of the blocks' power at Freq; a clean tone
	// has nearly all of it, noise (such as ciphertext played as audio)
	// a few percent at most.
	Purity float64
}

func (r toneReport) String() string {
	return fmt.Sprintf("%v of sound, RMS %.0f, dominant %.0f Hz with %.0f%% of the power", r.Heard, r.RMS, r.Freq, 100*r.Purity)
}

// hasTone says why the report does not show a clean tone of freq Hz
// (within 3%) heard for at least minHeard; nil if it does.
func (r toneReport) hasTone(freq float64, minHeard time.Duration) error {
	switch {
	case r.Heard < minHeard:
		return fmt.Errorf("only %v of sound, want %v of the %.0f Hz tone (%v)", r.Heard, minHeard, freq, r)
	case math.Abs(r.Freq-freq) > 0.03*freq:
		return fmt.Errorf("dominant frequency %.0f Hz, want %.0f Hz ± 3%% (%v)", r.Freq, freq, r)
	case r.Purity < 0.5:
		return fmt.Errorf("only %.0f%% of the power at %.0f Hz, want > 50%% (%v)", 100*r.Purity, r.Freq, r)
	}
	return nil
}

// analyseTone reports on the audio x sampled at rate: Goertzel over
// 100 ms blocks, silent blocks left out.
func analyseTone(x []float64, rate int) toneReport {
	block := rate / 10
	var heard [][]float64
	var sum float64
	for i := 0; i+block <= len(x); i += block {
		b := x[i : i+block]
		var s float64
		for _, v := range b {
			s += v * v
		}
		if math.Sqrt(s/float64(block)) > 300 {
			heard = append(heard, b)
			sum += s
		}
	}
	r := toneReport{Heard: time.Duration(len(heard)) * 100 * time.Millisecond}
	if len(heard) == 0 {
		return r
	}
	meanSquare := sum / float64(len(heard)*block)
	r.RMS = math.Sqrt(meanSquare)
	best := 0.0
	for f := 100; f <= 3900; f += 5 {
		var p float64
		for _, b := range heard {
			p += goertzel(b, float64(f), float64(rate))
		}
		if p > best {
			best, r.Freq = p, float64(f)
		}
	}
	// A sine of amplitude A gives |X|² = (A·N/2)², its mean square is A²/2.
	tone := best / float64(len(heard)) * 2 / float64(block*block)
	r.Purity = tone / meanSquare
	return r
}

// goertzel is |X(f)|² of the block.
func goertzel(x []float64, f, rate float64) float64 {
	c := 2 * math.Cos(2*math.Pi*f/rate)
	var s1, s2 float64
	for _, v := range x {
		s1, s2 = v+c*s1-s2, s1
	}
	return s1*s1 + s2*s2 - c*s1*s2
}
