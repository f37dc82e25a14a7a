package bundle

import (
	"archive/tar"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"
)

// Write writes a bundle of the given part files (part name → path) to w,
// signed with key. It fills in the manifest's Parts (in the order boot,
// root, mbr), KeyID, and, when zero, Format and Product. Every part must be
// given. Each file is read twice, to hash it and to copy it, and never held
// in memory; a file that changes in between is an error.
func Write(w io.Writer, key ed25519.PrivateKey, m Manifest, files map[string]string) error {
	if len(key) != ed25519.PrivateKeySize {
		return fmt.Errorf("writing bundle: signing key is %d bytes, not an ed25519 private key", len(key))
	}
	if m.Format == 0 {
		m.Format = Format
	}
	if m.Product == "" {
		m.Product = Product
	}
	m.KeyID = KeyID(key.Public().(ed25519.PublicKey))
	parts, err := describeParts(files)
	if err != nil {
		return err
	}
	m.Parts = parts
	if err := m.validate(); err != nil {
		return fmt.Errorf("writing bundle: %w", err)
	}
	manifest, err := json.MarshalIndent(m, "", "\t")
	if err != nil {
		return fmt.Errorf("writing bundle: %w", err)
	}
	manifest = append(manifest, '\n')

	tw := tar.NewWriter(w)
	if err := writeEntry(tw, ManifestFile, m.BuildTime, manifest); err != nil {
		return err
	}
	if err := writeEntry(tw, SignatureFile, m.BuildTime, ed25519.Sign(key, manifest)); err != nil {
		return err
	}
	for _, p := range m.Parts {
		if err := writePart(tw, p, files[p.Name], m.BuildTime); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("writing bundle: %w", err)
	}
	return nil
}

// describeParts hashes the part files.
func describeParts(files map[string]string) ([]Part, error) {
	for name := range files {
		if _, ok := maxPartSize(name); !ok {
			return nil, fmt.Errorf("writing bundle: unknown part %q (parts are boot, root and mbr)", name)
		}
	}
	var parts []Part
	for _, name := range partOrder {
		path, ok := files[name]
		if !ok {
			return nil, fmt.Errorf("writing bundle: no file given for part %s", name)
		}
		size, sum, err := hashFile(path)
		if err != nil {
			return nil, fmt.Errorf("writing bundle: part %s: %w", name, err)
		}
		parts = append(parts, Part{Name: name, File: name + ".img", Size: size, SHA256: sum})
	}
	return parts, nil
}

func hashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("reading %s: %w", path, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

func writeEntry(tw *tar.Writer, name string, mtime time.Time, data []byte) error {
	if err := tw.WriteHeader(header(name, mtime, int64(len(data)))); err != nil {
		return fmt.Errorf("writing bundle entry %s: %w", name, err)
	}
	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("writing bundle entry %s: %w", name, err)
	}
	return nil
}

// writePart copies a part's file into the archive, hashing it again.
func writePart(tw *tar.Writer, p Part, path string, mtime time.Time) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("writing bundle: part %s: %w", p.Name, err)
	}
	defer f.Close()
	if err := tw.WriteHeader(header(p.File, mtime, p.Size)); err != nil {
		return fmt.Errorf("writing bundle entry %s: %w", p.File, err)
	}
	h := sha256.New()
	if _, err := io.Copy(tw, io.TeeReader(f, h)); err != nil {
		return fmt.Errorf("writing bundle entry %s from %s: %w", p.File, path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != p.SHA256 {
		return fmt.Errorf("writing bundle: %s changed while the bundle was written", path)
	}
	return nil
}

// header is a plain USTAR header: the names are short and the sizes far
// below USTAR's 8 GiB. USTAR has no times before 1970.
func header(name string, mtime time.Time, size int64) *tar.Header {
	if mtime.Before(time.Unix(0, 0)) {
		mtime = time.Unix(0, 0)
	}
	return &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     size,
		Mode:     0o644,
		ModTime:  mtime.Truncate(time.Second),
		Format:   tar.FormatUSTAR,
	}
}
