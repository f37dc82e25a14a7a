// Package sdes reads and writes SDP Security Descriptions for media
// streams (RFC 4568): the a=crypto attribute that carries an SRTP master
// key and salt in the signalling, and makes fresh keys for the suites
// psigate offers.
package sdes

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/srtp/v3"
)

// Suites psigate understands, by their SDP names.
const (
	AES128SHA1_80 = "AES_CM_128_HMAC_SHA1_80" // RFC 4568 section 6.2.1
	AES128SHA1_32 = "AES_CM_128_HMAC_SHA1_32" // RFC 4568 section 6.2.2
	AEADAES128GCM = "AEAD_AES_128_GCM"        // RFC 7714 section 12
)

// Errors of the package.
var (
	ErrSyntax           = errors.New("sdes: malformed crypto attribute")
	ErrUnsupportedSuite = errors.New("sdes: unsupported crypto suite")
	ErrSessionParam     = errors.New("sdes: unsupported session parameter")
)

// suite is what a crypto suite needs.
type suite struct {
	profile srtp.ProtectionProfile
	keyLen  int
	saltLen int
}

var suites = map[string]suite{
	AES128SHA1_80: {srtp.ProtectionProfileAes128CmHmacSha1_80, 16, 14},
	AES128SHA1_32: {srtp.ProtectionProfileAes128CmHmacSha1_32, 16, 14},
	AEADAES128GCM: {srtp.ProtectionProfileAeadAes128Gcm, 16, 12},
}

// Supported reports whether psigate can key a stream with the suite.
func Supported(name string) bool {
	_, ok := suites[name]
	return ok
}

// Crypto is one a=crypto attribute with a single inline key.
type Crypto struct {
	// Tag identifies the line in an offer; the answer repeats it.
	Tag int
	// Suite is one of the suite constants.
	Suite string
	// Key and Salt form the master key; their lengths fit Suite.
	Key, Salt []byte
	// Lifetime is the key's lifetime as written ("2^31"), or "".
	Lifetime string
	// MKI is the master key identifier value and its length in bytes;
	// MKILen 0 means no MKI.
	MKI, MKILen int
	// Params are session parameters (RFC 4568 section 6.3) as written,
	// e.g. "UNENCRYPTED_SRTCP"; psigate keys nothing that has any.
	Params []string
}

// Profile is the pion SRTP protection profile of the suite.
func (c Crypto) Profile() srtp.ProtectionProfile { return suites[c.Suite].profile }

// MKIBytes is the MKI in the big-endian form SRTP packets carry, or nil.
func (c Crypto) MKIBytes() []byte {
	if c.MKILen == 0 {
		return nil
	}
	b := make([]byte, c.MKILen)
	v := c.MKI
	for i := c.MKILen - 1; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
	return b
}

// New makes a crypto attribute with a fresh random key for suite.
func New(tag int, suiteName string) (Crypto, error) {
	s, ok := suites[suiteName]
	if !ok {
		return Crypto{}, fmt.Errorf("%w: %q", ErrUnsupportedSuite, suiteName)
	}
	material := make([]byte, s.keyLen+s.saltLen)
	if _, err := rand.Read(material); err != nil {
		return Crypto{}, fmt.Errorf("sdes: key: %w", err)
	}
	return Crypto{Tag: tag, Suite: suiteName, Key: material[:s.keyLen], Salt: material[s.keyLen:]}, nil
}

// String is the attribute value, without "a=crypto:", e.g.
// "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR".
func (c Crypto) String() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(c.Tag))
	b.WriteByte(' ')
	b.WriteString(c.Suite)
	b.WriteString(" inline:")
	b.WriteString(base64.StdEncoding.EncodeToString(append(append([]byte{}, c.Key...), c.Salt...)))
	if c.Lifetime != "" {
		b.WriteString("|" + c.Lifetime)
	}
	if c.MKILen > 0 {
		b.WriteString("|" + strconv.Itoa(c.MKI) + ":" + strconv.Itoa(c.MKILen))
	}
	for _, p := range c.Params {
		b.WriteString(" " + p)
	}
	return b.String()
}

// Parse reads the value of an a=crypto attribute (RFC 4568 section 9.1):
// "tag suite key-params [session-params]". It accepts one inline key
// (several keys per line are for re-keying psigate does not do) and
// refuses suites and session parameters it cannot honour, so the caller
// can skip the line and try the next.
func Parse(value string) (Crypto, error) {
	f := strings.Fields(value)
	if len(f) < 3 {
		return Crypto{}, fmt.Errorf("%w: %q: want tag, suite and key", ErrSyntax, value)
	}
	tag, err := strconv.Atoi(f[0])
	if err != nil || tag < 0 || tag > 999999999 || len(f[0]) > 9 {
		return Crypto{}, fmt.Errorf("%w: tag %q", ErrSyntax, f[0])
	}
	s, ok := suites[f[1]]
	if !ok {
		return Crypto{}, fmt.Errorf("%w: %q", ErrUnsupportedSuite, f[1])
	}
	c := Crypto{Tag: tag, Suite: f[1]}
	if err := c.parseKey(f[2], s); err != nil {
		return Crypto{}, err
	}
	if len(f) > 3 {
		c.Params = f[3:]
		return c, fmt.Errorf("%w: %q", ErrSessionParam, strings.Join(f[3:], " "))
	}
	return c, nil
}

// parseKey reads "inline:<key||salt>[|lifetime][|mki:len]".
func (c *Crypto) parseKey(kp string, s suite) error {
	if strings.Contains(kp, ";") {
		return fmt.Errorf("%w: several keys in one line", ErrSyntax)
	}
	rest, ok := strings.CutPrefix(kp, "inline:")
	if !ok {
		return fmt.Errorf("%w: key method in %q is not inline", ErrSyntax, kp)
	}
	parts := strings.Split(rest, "|")
	if len(parts) > 3 {
		return fmt.Errorf("%w: %q", ErrSyntax, kp)
	}
	material, err := decodeKey(parts[0])
	if err != nil || len(material) != s.keyLen+s.saltLen {
		return fmt.Errorf("%w: key of %s is not %d base64 bytes", ErrSyntax, c.Suite, s.keyLen+s.saltLen)
	}
	c.Key, c.Salt = material[:s.keyLen], material[s.keyLen:]
	for _, p := range parts[1:] {
		if mki, size, isMKI := strings.Cut(p, ":"); isMKI {
			if err := c.parseMKI(mki, size); err != nil {
				return err
			}
			continue
		}
		if c.Lifetime != "" || !validLifetime(p) {
			return fmt.Errorf("%w: lifetime %q", ErrSyntax, p)
		}
		c.Lifetime = p
	}
	return nil
}

// decodeKey accepts base64 with or without padding.
func decodeKey(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}

func (c *Crypto) parseMKI(value, size string) error {
	v, err1 := strconv.Atoi(value)
	n, err2 := strconv.Atoi(size)
	if err1 != nil || err2 != nil || n < 1 || n > 4 || v < 0 || (n < 4 && v >= 1<<(8*n)) {
		return fmt.Errorf("%w: MKI %s:%s", ErrSyntax, value, size)
	}
	c.MKI, c.MKILen = v, n
	return nil
}

// validLifetime is "2^N" or a decimal count of packets.
func validLifetime(s string) bool {
	if exp, ok := strings.CutPrefix(s, "2^"); ok {
		n, err := strconv.Atoi(exp)
		return err == nil && n > 0 && n <= 48
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return err == nil && n > 0
}

// Context makes a pion SRTP context keyed with c.
func (c Crypto) Context() (*srtp.Context, error) {
	var opts []srtp.ContextOption
	if mki := c.MKIBytes(); mki != nil {
		opts = append(opts, srtp.MasterKeyIndicator(mki))
	}
	ctx, err := srtp.CreateContext(c.Key, c.Salt, c.Profile(), opts...)
	if err != nil {
		return nil, fmt.Errorf("sdes: SRTP context for %s: %w", c.Suite, err)
	}
	return ctx, nil
}
