// Package g711 converts G.711 audio between its A-law and u-law forms
// (ITU-T G.711), so two sides that share no codec but each speak one
// flavour can talk. The conversion goes through 16-bit linear PCM with
// lookup tables built once; converting a packet allocates nothing.
//
// Other codecs are relayed, never transcoded.
package g711

// ULawToLinear decodes a u-law byte to 16-bit linear PCM (G.711 section 2).
func ULawToLinear(u byte) int16 {
	u = ^u
	sign := u & 0x80
	exp := (u >> 4) & 0x07
	mant := int16(u & 0x0f)
	v := ((mant << 3) + 0x84) << exp
	v -= 0x84
	if sign != 0 {
		return -v
	}
	return v
}

// ALawToLinear decodes an A-law byte to 16-bit linear PCM.
func ALawToLinear(a byte) int16 {
	a ^= 0x55
	sign := a & 0x80
	exp := (a >> 4) & 0x07
	mant := int16(a & 0x0f)
	var v int16
	if exp == 0 {
		v = (mant << 4) + 8
	} else {
		v = ((mant << 4) + 0x108) << (exp - 1)
	}
	if sign == 0 {
		return -v
	}
	return v
}

// LinearToULaw encodes a 16-bit linear sample as u-law.
func LinearToULaw(s int16) byte {
	const bias, clip = 0x84, 32635
	v := int(s)
	sign := 0
	if v < 0 {
		v, sign = -v, 0x80
	}
	v = min(v, clip) + bias
	exp := 7
	for mask := 0x4000; v&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (v >> (exp + 3)) & 0x0f
	return ^byte(sign | exp<<4 | mant)
}

// LinearToALaw encodes a 16-bit linear sample as A-law.
func LinearToALaw(s int16) byte {
	v := int(s) >> 3 // A-law works on 13 bits
	sign := 0x80
	if v < 0 {
		v, sign = -v-1, 0
	}
	v = min(v, 0xfff)
	var out int
	if v < 32 {
		out = v >> 1
	} else {
		exp := 1
		for x := v >> 5; x > 1; x >>= 1 {
			exp++
		}
		out = exp<<4 | (v>>exp)&0x0f
	}
	return byte(out|sign) ^ 0x55
}

var (
	alawToULaw [256]byte
	ulawToALaw [256]byte
)

func init() {
	for i := range 256 {
		alawToULaw[i] = LinearToULaw(ALawToLinear(byte(i)))
		ulawToALaw[i] = LinearToALaw(ULawToLinear(byte(i)))
	}
}

// ALawToULaw converts A-law samples to u-law in place.
func ALawToULaw(samples []byte) {
	for i, b := range samples {
		samples[i] = alawToULaw[b]
	}
}

// ULawToALaw converts u-law samples to A-law in place.
func ULawToALaw(samples []byte) {
	for i, b := range samples {
		samples[i] = ulawToALaw[b]
	}
}
