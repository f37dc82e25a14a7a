package g711

import (
	"math"
	"testing"
)

// Reference values from ITU-T G.711 tables (decision values at segment
// ends) and the widely published decoder outputs.
func TestKnownCodes(t *testing.T) {
	for _, tc := range []struct {
		code byte
		u    int16
	}{{0xff, 0}, {0x7f, 0}, {0x80, 32124}, {0x00, -32124}, {0xf0, 120}, {0xef, 132}} {
		if got := ULawToLinear(tc.code); got != tc.u {
			t.Errorf("ULawToLinear(%#x) = %d, want %d", tc.code, got, tc.u)
		}
	}
	for _, tc := range []struct {
		code byte
		a    int16
	}{{0xd5, 8}, {0x55, -8}, {0xaa, 32256}, {0x2a, -32256}} {
		if got := ALawToLinear(tc.code); got != tc.a {
			t.Errorf("ALawToLinear(%#x) = %d, want %d", tc.code, got, tc.a)
		}
	}
}

// Every code decodes to a value that encodes back to the same code (for
// u-law, the two zeros 0x7f and 0xff both encode as 0xff).
func TestCodesRoundTrip(t *testing.T) {
	for i := range 256 {
		c := byte(i)
		if got := LinearToALaw(ALawToLinear(c)); got != c {
			t.Errorf("A-law %#x -> %d -> %#x", c, ALawToLinear(c), got)
		}
		if c == 0x7f {
			continue
		}
		if got := LinearToULaw(ULawToLinear(c)); got != c {
			t.Errorf("u-law %#x -> %d -> %#x", c, ULawToLinear(c), got)
		}
	}
}

// TestTranscodeToneWithinQuantisation sends a 1 kHz tone A -> u -> A and
// checks every sample against the original within G.711's quantisation:
// the step of the segment the sample is in.
func TestTranscodeToneWithinQuantisation(t *testing.T) {
	const n = 8000
	orig := make([]byte, n)
	for i := range orig {
		s := 12000 * math.Sin(2*math.Pi*1000*float64(i)/8000)
		orig[i] = LinearToALaw(int16(s))
	}
	buf := append([]byte(nil), orig...)
	ALawToULaw(buf)
	mid := append([]byte(nil), buf...)
	ULawToALaw(buf)
	var sumSq, errSq float64
	for i := range orig {
		a, b := float64(ALawToLinear(orig[i])), float64(ALawToLinear(buf[i]))
		u := float64(ULawToLinear(mid[i]))
		if step := quantStep(a); math.Abs(a-b) > 2*step || math.Abs(a-u) > 2*step {
			t.Fatalf("sample %d: A %v -> u %v -> A %v, beyond 2 steps of %v", i, a, u, b, step)
		}
		sumSq += a * a
		errSq += (a - b) * (a - b)
	}
	if snr := 10 * math.Log10(sumSq/errSq); snr < 30 {
		t.Errorf("round trip SNR %.1f dB, want at least 30", snr)
	}
}

// quantStep is the A-law step size at the magnitude of v.
func quantStep(v float64) float64 {
	m := math.Abs(v)
	step := 16.0
	for limit := 512.0; m >= limit && step < 1024; limit *= 2 {
		step *= 2
	}
	return step
}

func TestConvertAllocatesNothing(t *testing.T) {
	buf := make([]byte, 160)
	if n := testing.AllocsPerRun(100, func() { ALawToULaw(buf); ULawToALaw(buf) }); n != 0 {
		t.Errorf("%v allocations per packet", n)
	}
}

func BenchmarkALawToULaw160(b *testing.B) {
	buf := make([]byte, 160)
	b.SetBytes(160)
	for b.Loop() {
		ALawToULaw(buf)
	}
}
