package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

const (
	tarBlock = 512
	// maxTrailer bounds the zero padding accepted after the end-of-archive
	// marker (GNU tar pads archives to 10 KiB records).
	maxTrailer = 1 << 20
)

// Read reads a bundle from r as a box does before it installs it. In this
// order, it checks that manifest.json is signed by pub, that the bundle is
// for this product and format, and that it is for target (e.g. "amd64");
// only then does it stream each part, in manifest order, into the writer
// that stage returns for it, hashing it on the way. It closes each writer.
//
// Read returns an error unless every part arrived whole, matched its size
// and SHA-256, and nothing but tar padding followed the last part. When it
// returns an error, whatever was staged must be thrown away: a part may
// have been staged in full before a later part, or the end of the
// archive, turned out to be bad. Parts are never held in memory; a part is
// refused as soon as its tar header says it is larger than the manifest
// declares.
func Read(r io.Reader, pub ed25519.PublicKey, target string, stage func(p Part) (io.WriteCloser, error)) (Manifest, error) {
	if len(pub) != ed25519.PublicKeySize {
		return Manifest{}, fmt.Errorf("%w: this box has no valid update key (%d bytes)", ErrSignature, len(pub))
	}
	if target == "" {
		return Manifest{}, fmt.Errorf("%w: this box does not know its own target", ErrTarget)
	}
	return read(r, pub, target, stage)
}

// ReadOnHost is Read for host-side tools, which may not have the public key
// or know the box's target: it checks the signature only when pub is not
// nil and the target only when target is not empty. Sizes and hashes are
// always checked. A box must use Read.
func ReadOnHost(r io.Reader, pub ed25519.PublicKey, target string, stage func(p Part) (io.WriteCloser, error)) (Manifest, error) {
	if pub != nil && len(pub) != ed25519.PublicKeySize {
		return Manifest{}, fmt.Errorf("%w: the public key is %d bytes, not an ed25519 key", ErrSignature, len(pub))
	}
	return read(r, pub, target, stage)
}

func read(r io.Reader, pub ed25519.PublicKey, target string, stage func(p Part) (io.WriteCloser, error)) (Manifest, error) {
	cr := &countingReader{r: r}
	tr := tar.NewReader(cr)
	raw, sig, err := readHead(tr)
	if err != nil {
		return Manifest{}, err
	}
	if pub != nil {
		if err := verify(pub, raw, sig); err != nil {
			return Manifest{}, err
		}
	}
	m, err := parseManifest(raw)
	if err != nil {
		return Manifest{}, err
	}
	if pub != nil && m.KeyID != KeyID(pub) {
		return Manifest{}, fmt.Errorf("%w: the manifest names key %s, but was signed by %s", ErrSignature, m.KeyID, KeyID(pub))
	}
	if target != "" && m.Target != target {
		return Manifest{}, fmt.Errorf("%w: bundle is for %s, this box is %s", ErrTarget, m.Target, target)
	}
	for i, p := range m.Parts {
		if err := readPart(tr, p, i, len(m.Parts), stage); err != nil {
			return Manifest{}, err
		}
	}
	if err := readEnd(tr, cr); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// readHead reads manifest.json and manifest.sig.
func readHead(tr *tar.Reader) (manifest, sig []byte, _ error) {
	manifest, err := readEntry(tr, ManifestFile, MaxManifestSize)
	if err != nil {
		return nil, nil, err
	}
	sig, err = readEntry(tr, SignatureFile, ed25519.SignatureSize)
	if err != nil {
		return nil, nil, err
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, nil, fmt.Errorf("%w: %s is %d bytes, an ed25519 signature is %d", ErrSignature, SignatureFile, len(sig), ed25519.SignatureSize)
	}
	return manifest, sig, nil
}

// readEntry reads the next tar entry, which must be the small regular file
// name.
func readEntry(tr *tar.Reader, name string, limit int64) ([]byte, error) {
	h, err := next(tr, name)
	if err != nil {
		return nil, err
	}
	if h.Size > limit {
		return nil, fmt.Errorf("%w: %s is %d bytes, at most %d are allowed", ErrCorrupt, name, h.Size, limit)
	}
	b := make([]byte, h.Size)
	if _, err := io.ReadFull(tr, b); err != nil {
		return nil, entryError(err, name)
	}
	return b, nil
}

// next reads the header of the next entry, which must be the regular file
// name.
func next(tr *tar.Reader, name string) (*tar.Header, error) {
	h, err := tr.Next()
	if err == io.EOF {
		return nil, fmt.Errorf("%w: it ends before %s", ErrTruncated, name)
	}
	if err != nil {
		return nil, entryError(err, name)
	}
	if h.Name != name {
		return nil, fmt.Errorf("%w: found %q where %s should be", ErrCorrupt, h.Name, name)
	}
	if h.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("%w: %s is not a regular file (tar type %q)", ErrCorrupt, name, h.Typeflag)
	}
	return h, nil
}

// entryError classifies an error met while reading the entry name.
func entryError(err error, name string) error {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return fmt.Errorf("%w: it ends inside %s", ErrTruncated, name)
	case errors.Is(err, tar.ErrHeader), errors.Is(err, tar.ErrInsecurePath):
		return fmt.Errorf("%w: bad tar header at %s: %w", ErrCorrupt, name, err)
	}
	return fmt.Errorf("reading update bundle at %s: %w", name, err)
}

// verify checks the manifest's signature. Its errors say which key signed
// the manifest when that is not the trusted one; that ID comes from the
// unverified manifest, so it is only shown when it looks like a key ID.
func verify(pub ed25519.PublicKey, manifest, sig []byte) error {
	if ed25519.Verify(pub, manifest, sig) {
		return nil
	}
	var claimed struct {
		KeyID string `json:"keyID"`
	}
	_ = json.Unmarshal(manifest, &claimed) // only for the message
	if hexKeyID.MatchString(claimed.KeyID) && claimed.KeyID != KeyID(pub) {
		return fmt.Errorf("%w: signed by key %s, this box trusts %s", ErrSignature, claimed.KeyID, KeyID(pub))
	}
	return fmt.Errorf("%w: the signature does not match the manifest (it was changed after signing, or signed by a key other than %s)", ErrSignature, KeyID(pub))
}

func parseManifest(raw []byte) (Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return Manifest{}, fmt.Errorf("%w: %s is not valid: %w", ErrCorrupt, ManifestFile, err)
	}
	if err := m.validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// readPart streams part p, the i-th of n, into the writer stage returns.
func readPart(tr *tar.Reader, p Part, i, n int, stage func(p Part) (io.WriteCloser, error)) error {
	h, err := next(tr, p.File)
	if errors.Is(err, ErrTruncated) {
		return fmt.Errorf("%w: it ends before %s (part %d of %d)", ErrTruncated, p.File, i+1, n)
	}
	if err != nil {
		return err
	}
	if h.Size != p.Size {
		return fmt.Errorf("%w: %s is %d bytes, the manifest says %d", ErrCorrupt, p.File, h.Size, p.Size)
	}
	w, err := stage(p)
	if err != nil {
		return fmt.Errorf("staging %s: %w", p.File, err)
	}
	hash := sha256.New()
	src := &errReader{r: io.TeeReader(io.LimitReader(tr, p.Size), hash)}
	copied, err := io.Copy(w, src)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if src.err != nil {
		return entryError(src.err, p.File)
	}
	if err != nil {
		return fmt.Errorf("staging %s: %w", p.File, err)
	}
	if copied != p.Size {
		return fmt.Errorf("%w: it ends inside %s (after %d of %d bytes)", ErrTruncated, p.File, copied, p.Size)
	}
	if got := hex.EncodeToString(hash.Sum(nil)); got != p.SHA256 {
		return fmt.Errorf("%w: %s does not match its SHA-256 in the manifest", ErrCorrupt, p.File)
	}
	return nil
}

// readEnd checks that the archive ends after the last part: with the
// end-of-archive marker (two zero blocks), which archive/tar does not
// insist on, and nothing after it but zeros.
func readEnd(tr *tar.Reader, cr *countingReader) error {
	dataEnd := (cr.n + tarBlock - 1) / tarBlock * tarBlock
	h, err := tr.Next()
	switch {
	case err == nil:
		return fmt.Errorf("%w: unexpected entry %q after the last part", ErrCorrupt, h.Name)
	case err != io.EOF:
		return entryError(err, "the end of the archive")
	case cr.n < dataEnd+2*tarBlock:
		return fmt.Errorf("%w: it ends without the end-of-archive marker", ErrTruncated)
	}
	buf := make([]byte, 32<<10)
	var trailer int64
	for {
		n, err := cr.Read(buf)
		trailer += int64(n)
		if !allZero(buf[:n]) || trailer > maxTrailer {
			return fmt.Errorf("%w: unexpected data after the end of the archive", ErrCorrupt)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the end of the update bundle: %w", err)
		}
	}
}

func allZero(b []byte) bool {
	return len(bytes.Trim(b, "\x00")) == 0
}

// errReader remembers its reader's error, to tell a damaged bundle from a
// failing stage writer.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// countingReader counts what archive/tar has read, so readEnd can tell
// whether the end-of-archive marker was there.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
