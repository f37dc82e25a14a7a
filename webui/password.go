package webui

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// HashParams are argon2id's cost parameters (RFC 9106).
type HashParams struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
}

// DefaultHashParams are OWASP's argon2id setting (19 MiB, 2 passes, 1
// lane): every login costs that much memory while it is checked, which a
// 1 GB Raspberry Pi serving thousands of subscribers can spare; RFC 9106's
// 64 MiB would be a spike worth avoiding there.
func DefaultHashParams() HashParams { return HashParams{MemoryKiB: 19 * 1024, Time: 2, Threads: 1} }

// MinPasswordLength is the shortest admin password accepted.
const MinPasswordLength = 10

// maxPasswordLength bounds the work an attacker can make us do.
const maxPasswordLength = 256

// wellKnown are default passwords of SBCs and appliances that a scanner
// tries first; the first is the documented default of the system psigate
// replaces.
var wellKnown = []string{
	"Asd123!.", "admin", "administrator", "password", "Password1", "Passw0rd!", "changeme",
	"12345678", "123456789", "1234567890", "psigate", "psigate123", "admin1234", "root",
}

// ErrWeakPassword is wrapped by every refusal of CheckPolicy.
var ErrWeakPassword = errors.New("password refused")

// CheckPolicy refuses well-known defaults and passwords that are too short
// or too long.
func CheckPolicy(pw string) error {
	for _, w := range wellKnown {
		if strings.EqualFold(pw, w) {
			return fmt.Errorf("%w: it is a well-known default password", ErrWeakPassword)
		}
	}
	n := utf8.RuneCountInString(pw)
	if n < MinPasswordLength {
		return fmt.Errorf("%w: use at least %d characters", ErrWeakPassword, MinPasswordLength)
	}
	if len(pw) > maxPasswordLength {
		return fmt.Errorf("%w: use at most %d bytes", ErrWeakPassword, maxPasswordLength)
	}
	if strings.Count(pw, string([]rune(pw)[0])) == n {
		return fmt.Errorf("%w: it repeats one character", ErrWeakPassword)
	}
	return nil
}

// HashPassword hashes pw with argon2id and a random salt, encoded in the
// PHC string format: $argon2id$v=19$m=65536,t=3,p=2$salt$hash.
func HashPassword(pw string, p HashParams) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.MemoryKiB, p.Threads, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.MemoryKiB, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// CheckPassword reports whether pw matches an encoded hash, in constant
// time for a given hash.
func CheckPassword(encoded, pw string) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errors.New("password hash: not an argon2id PHC string")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, fmt.Errorf("password hash: unsupported version %q", parts[2])
	}
	var p HashParams
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil {
		return false, fmt.Errorf("password hash: parameters %q: %w", parts[3], err)
	}
	if p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > 1<<21 || p.Time == 0 || p.Time > 64 || p.Threads == 0 {
		return false, fmt.Errorf("password hash: parameters %q out of bounds", parts[3])
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false, fmt.Errorf("password hash: salt: %w", err)
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) == 0 {
		return false, fmt.Errorf("password hash: key: %v", err)
	}
	if len(pw) > maxPasswordLength {
		return false, nil
	}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
