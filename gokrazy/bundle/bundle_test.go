package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testKey returns a fixed key, so that fuzz seeds stay valid.
func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// partData is small, distinct content for each part.
func partData(name string) []byte {
	size := map[string]int{PartBoot: 3000, PartRoot: 5121, PartMBR: MBRSize}[name]
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7) ^ name[0]
	}
	return b
}

func writeParts(t testing.TB) map[string]string {
	dir := t.TempDir()
	files := map[string]string{}
	for _, name := range partOrder {
		path := filepath.Join(dir, name+".img")
		if err := os.WriteFile(path, partData(name), 0o644); err != nil {
			t.Fatal(err)
		}
		files[name] = path
	}
	return files
}

func testManifest() Manifest {
	return Manifest{
		Version:        "1.4.0",
		Target:         "amd64",
		BuildTime:      time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC),
		BuildTimestamp: "2026-11-25T10:00:00Z",
	}
}

func makeBundle(t testing.TB, key ed25519.PrivateKey) []byte {
	var buf bytes.Buffer
	if err := Write(&buf, key, testManifest(), writeParts(t)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// stager records what Read stages.
type stager struct {
	calls []string
	data  map[string]*stagedPart
	fail  error // returned by Write, when set
}

type stagedPart struct {
	buf    bytes.Buffer // not embedded: its ReadFrom would bypass Write
	closed bool
	fail   error
}

func (s *stagedPart) Write(p []byte) (int, error) {
	if s.fail != nil {
		return 0, s.fail
	}
	return s.buf.Write(p)
}

func (s *stagedPart) Close() error { s.closed = true; return nil }

func (s *stager) stage(p Part) (io.WriteCloser, error) {
	if s.data == nil {
		s.data = map[string]*stagedPart{}
	}
	s.calls = append(s.calls, p.Name)
	sp := &stagedPart{fail: s.fail}
	s.data[p.Name] = sp
	return sp, nil
}

// entry is one tar entry, for taking bundles apart and putting them back
// together in the tests.
type entry struct {
	name string
	data []byte
}

func entries(t testing.TB, b []byte) []entry {
	var es []entry
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return es
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, entry{h.Name, data})
	}
}

func archive(t testing.TB, es []entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		if err := tw.WriteHeader(header(e.name, time.Unix(0, 0), int64(len(e.data)))); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// signed replaces a bundle's manifest with m, signed by key, keeping the parts.
func signed(t testing.TB, key ed25519.PrivateKey, m Manifest, es []entry) []entry {
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out := []entry{{ManifestFile, raw}, {SignatureFile, ed25519.Sign(key, raw)}}
	return append(out, es[2:]...)
}

func manifestOf(t testing.TB, es []entry) Manifest {
	var m Manifest
	if err := json.Unmarshal(es[0].data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRoundTrip(t *testing.T) {
	key := testKey(1)
	b := makeBundle(t, key)
	var s stager
	m, err := Read(bytes.NewReader(b), pubOf(key), "amd64", s.stage)
	if err != nil {
		t.Fatal(err)
	}
	want := testManifest()
	if m.Version != want.Version || m.Target != want.Target || !m.BuildTime.Equal(want.BuildTime) ||
		m.BuildTimestamp != want.BuildTimestamp || m.Format != Format || m.Product != Product {
		t.Errorf("manifest = %+v, want the fields of %+v", m, want)
	}
	if m.KeyID != KeyID(pubOf(key)) {
		t.Errorf("KeyID = %q, want %q", m.KeyID, KeyID(pubOf(key)))
	}
	if got := strings.Join(s.calls, ","); got != "boot,root,mbr" {
		t.Errorf("staged %s, want boot,root,mbr", got)
	}
	for _, name := range partOrder {
		p, _ := m.Part(name)
		data := partData(name)
		sum := sha256.Sum256(data)
		if p.Size != int64(len(data)) || p.SHA256 != hex.EncodeToString(sum[:]) || p.File != name+".img" {
			t.Errorf("part %s = %+v", name, p)
		}
		if !bytes.Equal(s.data[name].buf.Bytes(), data) || !s.data[name].closed {
			t.Errorf("part %s: staged %d bytes (closed %v), want %d", name, s.data[name].buf.Len(), s.data[name].closed, len(data))
		}
	}
}

func TestReadOnHostWithoutKeyOrTarget(t *testing.T) {
	b := makeBundle(t, testKey(1))
	var s stager
	if _, err := ReadOnHost(bytes.NewReader(b), nil, "", s.stage); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadOnHost(bytes.NewReader(b), pubOf(testKey(2)), "", s.stage); !errors.Is(err, ErrSignature) {
		t.Errorf("ReadOnHost with another key = %v, want ErrSignature", err)
	}
	if _, err := Read(bytes.NewReader(b), nil, "amd64", s.stage); !errors.Is(err, ErrSignature) {
		t.Errorf("Read without a key = %v, want ErrSignature", err)
	}
	if _, err := Read(bytes.NewReader(b), pubOf(testKey(1)), "", s.stage); !errors.Is(err, ErrTarget) {
		t.Errorf("Read without a target = %v, want ErrTarget", err)
	}
}

// readRejects reads b with key 1 for amd64 and checks the error.
func readRejects(t *testing.T, b []byte, want error, msg string) *stager {
	t.Helper()
	var s stager
	m, err := Read(bytes.NewReader(b), pubOf(testKey(1)), "amd64", s.stage)
	if !errors.Is(err, want) {
		t.Fatalf("Read = %v, want %v", err, want)
	}
	if msg != "" && !strings.Contains(err.Error(), msg) {
		t.Errorf("error %q does not say %q", err, msg)
	}
	if m.Version != "" {
		t.Errorf("Read returned a manifest (%+v) with its error", m)
	}
	return &s
}

func TestReadBadSignature(t *testing.T) {
	es := entries(t, makeBundle(t, testKey(1)))
	es[1].data[10] ^= 1
	s := readRejects(t, archive(t, es), ErrSignature, "does not match the manifest")
	if len(s.calls) != 0 {
		t.Errorf("staged %v before checking the signature", s.calls)
	}
}

func TestReadSignedByAnotherKey(t *testing.T) {
	other := testKey(2)
	msg := "signed by key " + KeyID(pubOf(other)) + ", this box trusts " + KeyID(pubOf(testKey(1)))
	s := readRejects(t, makeBundle(t, other), ErrSignature, msg)
	if len(s.calls) != 0 {
		t.Errorf("staged %v before checking the signature", s.calls)
	}
}

func TestReadManifestEditedAfterSigning(t *testing.T) {
	es := entries(t, makeBundle(t, testKey(1)))
	es[0].data = bytes.Replace(es[0].data, []byte(`"1.4.0"`), []byte(`"9.9.9"`), 1)
	s := readRejects(t, archive(t, es), ErrSignature, "changed after signing")
	if len(s.calls) != 0 {
		t.Errorf("staged %v before checking the signature", s.calls)
	}
}

func TestReadWrongTarget(t *testing.T) {
	var s stager
	_, err := Read(bytes.NewReader(makeBundle(t, testKey(1))), pubOf(testKey(1)), "rpi", s.stage)
	if !errors.Is(err, ErrTarget) || !strings.Contains(err.Error(), "bundle is for amd64, this box is rpi") {
		t.Fatalf("Read = %v, want ErrTarget saying the targets", err)
	}
	if len(s.calls) != 0 {
		t.Errorf("staged %v for the wrong target", s.calls)
	}
}

func TestReadWrongProduct(t *testing.T) {
	key := testKey(1)
	es := entries(t, makeBundle(t, key))
	m := manifestOf(t, es)
	m.Product = "other"
	readRejects(t, archive(t, signed(t, key, m, es)), ErrTarget, `bundle is for "other"`)
}

// TestReadTruncated cuts a bundle at every offset: inside and between
// headers, inside every part, in the padding and the end marker.
func TestReadTruncated(t *testing.T) {
	b := makeBundle(t, testKey(1))
	for cut := 0; cut < len(b); cut++ {
		if testing.Short() && cut%61 != 0 && (cut+1)%tarBlock > 2 {
			continue // block boundaries, one byte either side, and a sample
		}
		var s stager
		m, err := Read(bytes.NewReader(b[:cut]), pubOf(testKey(1)), "amd64", s.stage)
		if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("cut at %d of %d: Read = %v, want ErrTruncated or ErrCorrupt", cut, len(b), err)
		}
		if m.Version != "" {
			t.Fatalf("cut at %d: Read returned a manifest with its error", cut)
		}
	}
}

func TestReadTrailingData(t *testing.T) {
	b := makeBundle(t, testKey(1))
	var s stager
	padded := append(bytes.Clone(b), make([]byte, 10240)...)
	if _, err := Read(bytes.NewReader(padded), pubOf(testKey(1)), "amd64", s.stage); err != nil {
		t.Errorf("zero padding after the archive: %v", err)
	}
	junk := append(bytes.Clone(b), []byte("#!/bin/sh\n")...)
	readRejects(t, junk, ErrCorrupt, "after the end of the archive")
}

func TestReadSwappedParts(t *testing.T) {
	es := entries(t, makeBundle(t, testKey(1)))
	es[2], es[3] = es[3], es[2] // root.img where boot.img should be
	readRejects(t, archive(t, es), ErrCorrupt, `found "root.img" where boot.img should be`)

	// The same names, with the contents swapped.
	es = entries(t, makeBundle(t, testKey(1)))
	es[2].data, es[3].data = es[3].data, es[2].data
	readRejects(t, archive(t, es), ErrCorrupt, "boot.img is 5121 bytes, the manifest says 3000")

	// Same size, other bytes.
	es = entries(t, makeBundle(t, testKey(1)))
	es[3].data[100] ^= 0xff
	readRejects(t, archive(t, es), ErrCorrupt, "root.img does not match its SHA-256")
}

func TestReadExtraEntry(t *testing.T) {
	es := entries(t, makeBundle(t, testKey(1)))
	extra := entry{"evil.sh", []byte("#!/bin/sh\n")}
	readRejects(t, archive(t, append(es, extra)), ErrCorrupt, `unexpected entry "evil.sh"`)

	es = entries(t, makeBundle(t, testKey(1)))
	es = append(es[:2], append([]entry{extra}, es[2:]...)...)
	readRejects(t, archive(t, es), ErrCorrupt, `found "evil.sh" where boot.img should be`)
}

func TestReadMissingPart(t *testing.T) {
	es := entries(t, makeBundle(t, testKey(1)))
	readRejects(t, archive(t, es[:4]), ErrTruncated, "ends before mbr.img (part 3 of 3)")

	es = entries(t, makeBundle(t, testKey(1)))
	es = append(es[:3], es[4])
	readRejects(t, archive(t, es), ErrCorrupt, `found "mbr.img" where root.img should be`)

	// A manifest without a part is refused even when signed.
	key := testKey(1)
	es = entries(t, makeBundle(t, key))
	m := manifestOf(t, es)
	m.Parts = m.Parts[:2]
	readRejects(t, archive(t, signed(t, key, m, es)[:4]), ErrCorrupt, `manifest lacks part "mbr"`)
}

func TestReadOversizePart(t *testing.T) {
	es := entries(t, makeBundle(t, testKey(1)))
	es[3].data = append(es[3].data, 0)
	s := readRejects(t, archive(t, es), ErrCorrupt, "root.img is 5122 bytes, the manifest says 5121")
	if strings.Join(s.calls, ",") != "boot" {
		t.Errorf("staged %v; root.img should be refused before it is staged", s.calls)
	}
}

// TestReadLimits checks the limits on signed manifests.
func TestReadLimits(t *testing.T) {
	key := testKey(1)
	for _, tc := range []struct {
		name string
		edit func(m *Manifest)
		msg  string
	}{
		{"root too large", func(m *Manifest) { m.Parts[1].Size = MaxRootSize + 1 }, "part root is 524288001 bytes"},
		{"boot too large", func(m *Manifest) { m.Parts[0].Size = MaxBootSize + 1 }, "part boot is 104857601 bytes"},
		{"mbr not 446", func(m *Manifest) { m.Parts[2].Size = 447 }, "part mbr is 447 bytes, must be exactly 446"},
		{"unknown part", func(m *Manifest) { m.Parts[2].Name, m.Parts[2].File = "kernel", "kernel.img" }, `unknown part "kernel"`},
		{"path in file", func(m *Manifest) { m.Parts[1].File = "../root.img" }, `part root is in "../root.img"`},
		{"duplicate part", func(m *Manifest) { m.Parts[2] = m.Parts[1] }, `manifest lists part "root" twice`},
		{"bad hash", func(m *Manifest) { m.Parts[0].SHA256 = "x" }, "malformed sha256"},
		{"format 2", func(m *Manifest) { m.Format = 2 }, "format 2 is not supported"},
		{"no version", func(m *Manifest) { m.Version = "" }, "lacks the version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			es := entries(t, makeBundle(t, key))
			m := manifestOf(t, es)
			tc.edit(&m)
			s := readRejects(t, archive(t, signed(t, key, m, es)), ErrCorrupt, tc.msg)
			if len(s.calls) != 0 {
				t.Errorf("staged %v", s.calls)
			}
		})
	}
}

func TestReadLargeManifest(t *testing.T) {
	key := testKey(1)
	es := entries(t, makeBundle(t, key))
	m := manifestOf(t, es)
	m.Version = strings.Repeat("x", MaxManifestSize)
	readRejects(t, archive(t, signed(t, key, m, es)), ErrCorrupt, "at most 65536 are allowed")
}

func TestReadNotJSON(t *testing.T) {
	key := testKey(1)
	es := entries(t, makeBundle(t, key))
	es[0].data = []byte("not json")
	es[1].data = ed25519.Sign(key, es[0].data)
	readRejects(t, archive(t, es), ErrCorrupt, "manifest.json is not valid")
}

func TestReadNotABundle(t *testing.T) {
	readRejects(t, bytes.Repeat([]byte("garbage!"), 200), ErrCorrupt, "bad tar header")
	readRejects(t, nil, ErrTruncated, "ends before manifest.json")
}

func TestReadStageFailure(t *testing.T) {
	diskFull := errors.New("no space left on device")
	s := stager{fail: diskFull}
	_, err := Read(bytes.NewReader(makeBundle(t, testKey(1))), pubOf(testKey(1)), "amd64", s.stage)
	if !errors.Is(err, diskFull) || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "staging boot.img") {
		t.Fatalf("Read = %v, want the staging error", err)
	}
	if !s.data[PartBoot].closed {
		t.Error("the failed stage writer was not closed")
	}
}

func TestWriteErrors(t *testing.T) {
	key := testKey(1)
	files := writeParts(t)
	for _, tc := range []struct {
		name string
		edit func(files map[string]string)
		msg  string
	}{
		{"missing mbr", func(f map[string]string) { delete(f, PartMBR) }, "no file given for part mbr"},
		{"unknown part", func(f map[string]string) { f["kernel"] = f[PartBoot] }, `unknown part "kernel"`},
		{"mbr too long", func(f map[string]string) { f[PartMBR] = f[PartBoot] }, "must be exactly 446"},
		{"no such file", func(f map[string]string) { f[PartRoot] = "/nonexistent" }, "part root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := map[string]string{}
			for k, v := range files {
				f[k] = v
			}
			tc.edit(f)
			err := Write(io.Discard, key, testManifest(), f)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Write = %v, want an error saying %q", err, tc.msg)
			}
		})
	}
	if err := Write(io.Discard, key[:10], testManifest(), files); err == nil {
		t.Error("Write with a short key succeeded")
	}
}

func TestKeys(t *testing.T) {
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "signing.key"), filepath.Join(dir, "signing.pub")
	if err := GenerateKey(priv, pub); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(priv); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("private key file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	if err := GenerateKey(priv, pub); err == nil {
		t.Error("GenerateKey overwrote an existing key")
	}
	sk, err := LoadPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := LoadPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if !pk.Equal(sk.Public()) {
		t.Error("public key does not belong to the private key")
	}
	if id := KeyID(pk); len(id) != 16 {
		t.Errorf("KeyID = %q, want 16 hex digits", id)
	}
	privPEM, _ := os.ReadFile(priv)
	if _, err := ParsePublicKey(privPEM); err == nil {
		t.Error("ParsePublicKey accepted a private key")
	}
	if _, err := ParsePublicKey([]byte("no pem")); err == nil {
		t.Error("ParsePublicKey accepted garbage")
	}
	var buf bytes.Buffer
	if err := Write(&buf, sk, testManifest(), writeParts(t)); err != nil {
		t.Fatal(err)
	}
	var s stager
	if _, err := Read(&buf, pk, "amd64", s.stage); err != nil {
		t.Errorf("bundle signed with a generated key: %v", err)
	}
}

// FuzzRead feeds arbitrary bytes to Read. It must not panic, and it may
// only succeed for a bundle whose manifest carries a valid signature by the
// trusted key, and whose staged parts match the manifest.
func FuzzRead(f *testing.F) {
	key := testKey(1)
	valid := makeBundle(f, key)
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add(makeBundle(f, testKey(2)))
	es := entries(f, valid)
	f.Add(archive(f, append(es, entry{"x", []byte("y")})))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Without a key, the fuzzer gets past the signature to the
		// manifest and the parts.
		var unsigned stager
		if m, err := ReadOnHost(bytes.NewReader(data), nil, "", unsigned.stage); err == nil {
			checkStaged(t, m, &unsigned)
		}
		var s stager
		m, err := Read(bytes.NewReader(data), pubOf(key), "amd64", s.stage)
		if err != nil {
			return
		}
		es := entries(t, data)
		if len(es) < 2 || es[0].name != ManifestFile || !ed25519.Verify(pubOf(key), es[0].data, es[1].data) {
			t.Fatal("Read succeeded without a valid signature")
		}
		checkStaged(t, m, &s)
	})
}

func checkStaged(t *testing.T, m Manifest, s *stager) {
	if len(m.Parts) != len(partOrder) || len(s.data) != len(partOrder) {
		t.Fatalf("%d parts in the manifest, %d staged", len(m.Parts), len(s.data))
	}
	for _, p := range m.Parts {
		sum := sha256.Sum256(s.data[p.Name].buf.Bytes())
		if hex.EncodeToString(sum[:]) != p.SHA256 || !s.data[p.Name].closed {
			t.Fatalf("part %s staged with the wrong hash or left open", p.Name)
		}
	}
}
