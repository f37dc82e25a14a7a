package sdes

import (
	"bytes"
	"errors"
	"testing"

	"github.com/pion/rtp"
)

func TestParseRFCExamples(t *testing.T) {
	tests := []struct {
		in       string
		tag      int
		suite    string
		lifetime string
		mki, len int
	}{
		// RFC 4568 section 4.
		{"1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4", 1, AES128SHA1_80, "2^20", 1, 4},
		{"2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj", 2, AES128SHA1_32, "", 0, 0},
		// Unpadded base64 as some phones send it.
		{"3 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz", 3, AES128SHA1_80, "", 0, 0},
		// RFC 7714 AEAD: 28 bytes of key and salt.
		{"4 AEAD_AES_128_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==", 4, AEADAES128GCM, "", 0, 0},
	}
	for _, tc := range tests {
		c, err := Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if c.Tag != tc.tag || c.Suite != tc.suite || c.Lifetime != tc.lifetime || c.MKI != tc.mki || c.MKILen != tc.len {
			t.Errorf("Parse(%q) = %+v", tc.in, c)
		}
		if _, err := c.Context(); err != nil {
			t.Errorf("Context for %q: %v", tc.in, err)
		}
		again, err := Parse(c.String())
		if err != nil || !bytes.Equal(again.Key, c.Key) || !bytes.Equal(again.Salt, c.Salt) || again.MKI != c.MKI {
			t.Errorf("round trip of %q: %q, %v", tc.in, c.String(), err)
		}
	}
}

func TestParseRefusals(t *testing.T) {
	tests := map[string]error{
		"":                          ErrSyntax,
		"1 AES_CM_128_HMAC_SHA1_80": ErrSyntax,
		"x AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR":                                                 ErrSyntax,
		"1 F8_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR":                                                     ErrUnsupportedSuite,
		"1 AES_256_CM_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR":                                                 ErrUnsupportedSuite,
		"1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=":                                                                                 ErrSyntax,
		"1 AES_CM_128_HMAC_SHA1_80 uri:https://example.com/key":                                                                     ErrSyntax,
		"1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^99":                                            ErrSyntax,
		"1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1:9":                                             ErrSyntax,
		"1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|300:1":                                           ErrSyntax,
		"1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR;inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR": ErrSyntax,
		"1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR UNENCRYPTED_SRTP":                                ErrSessionParam,
		"1 AEAD_AES_128_GCM inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR":                                                        ErrSyntax, // 30 bytes, GCM wants 28
	}
	for in, want := range tests {
		if _, err := Parse(in); !errors.Is(err, want) {
			t.Errorf("Parse(%q) = %v, want %v", in, err, want)
		}
	}
}

// TestNewKeysWork encrypts with a context from a fresh attribute and
// decrypts with one from its parsed text, as the two ends of a call do.
func TestNewKeysWork(t *testing.T) {
	for _, s := range []string{AES128SHA1_80, AES128SHA1_32, AEADAES128GCM} {
		c, err := New(7, s)
		if err != nil {
			t.Fatal(err)
		}
		peer, err := Parse(c.String())
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		enc, _ := c.Context()
		dec, _ := peer.Context()
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 1, Timestamp: 160, SSRC: 42}, Payload: bytes.Repeat([]byte{0xd5}, 160)}
		raw, _ := pkt.Marshal()
		sealed, err := enc.EncryptRTP(nil, raw, nil)
		if err != nil {
			t.Fatal(err)
		}
		opened, err := dec.DecryptRTP(nil, sealed, nil)
		if err != nil || !bytes.Equal(opened, raw) {
			t.Fatalf("%s: decrypt: %v", s, err)
		}
		other, _ := New(7, s)
		wrong, _ := other.Context()
		if _, err := wrong.DecryptRTP(nil, sealed, nil); err == nil {
			t.Fatalf("%s: another key authenticated the packet", s)
		}
	}
	a, _ := New(1, AES128SHA1_80)
	b, _ := New(1, AES128SHA1_80)
	if bytes.Equal(a.Key, b.Key) {
		t.Fatal("two fresh keys are equal")
	}
	if _, err := New(1, "NULL"); !errors.Is(err, ErrUnsupportedSuite) {
		t.Errorf("New with unknown suite: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4")
	f.Add("4 AEAD_AES_128_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==")
	f.Add("1 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj KDR=1")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(c.String())
		if err != nil {
			t.Fatalf("Parse(%q) ok but its String %q does not parse: %v", s, c.String(), err)
		}
		if !bytes.Equal(again.Key, c.Key) || !bytes.Equal(again.Salt, c.Salt) || again.Tag != c.Tag || again.MKI != c.MKI || again.MKILen != c.MKILen {
			t.Fatalf("round trip changed %+v to %+v", c, again)
		}
		if _, err := c.Context(); err != nil {
			t.Fatalf("parsed %q but cannot key it: %v", s, err)
		}
	})
}
