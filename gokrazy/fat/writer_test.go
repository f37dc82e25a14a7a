package fat

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAmd64(t *testing.T) {
	files := amd64Files()
	img := build(t, DefaultOptions(), files)
	checkPeers(t, img, tree(files), []string{"vmlinuz", "cmdline.txt", "loader/entries/gokrazy.conf", "EFI/BOOT/BOOTX64.EFI"})
	checkGokrazy(t, img, files)
}

func TestRaspberryPi(t *testing.T) {
	files := piFiles()
	img := build(t, DefaultOptions(), files)
	checkPeers(t, img, tree(files), []string{"vmlinuz", "start4.elf", "bcm2711-rpi-4-b.dtb",
		"overlays/vc4-kms-29-dac.dtbo", "overlays/overlay_map.dtb", "overlays/README"})
	checkGokrazy(t, img, files)
}

func TestSmallContentsArePadded(t *testing.T) {
	for _, files := range []map[string][]byte{
		{"cmdline.txt": cmdline(1), "loader/entries/gokrazy.conf": loaderEntry()},
		{},
	} {
		img := build(t, Options{}, files)
		v := parseVolume(t, img)
		if v.clusters != minClusters || v.spc != 1 || len(img) > 2200000 {
			t.Errorf("%d clusters of %d sectors, %d bytes; want the smallest FAT16: %d clusters of 1 sector",
				v.clusters, v.spc, len(img), minClusters)
		}
		checkPeers(t, img, tree(files), nil)
	}
}

func TestMinSize(t *testing.T) {
	files := amd64Files()
	img := build(t, Options{MinSize: 100 << 20}, files)
	if len(img) != 100<<20 {
		t.Errorf("image is %d bytes, want MinSize %d", len(img), 100<<20)
	}
	if v := parseVolume(t, img); v.spc != 4 {
		t.Errorf("%d sectors per cluster for 100 MiB, want 4 (as mkfs.fat)", v.spc)
	}
	checkPeers(t, img, tree(files), []string{"cmdline.txt"})

	if small, def := build(t, Options{MinSize: 3000001}, files), build(t, Options{}, files); !bytes.Equal(small, def) {
		t.Errorf("MinSize below the contents changes the image")
	}
	img = build(t, Options{MinSize: 20000001}, files)
	if len(img) != 20000256 {
		t.Errorf("image is %d bytes, want MinSize rounded up to a sector: 20000256", len(img))
	}
	checkPeers(t, img, tree(files), nil)
}

func TestTooLarge(t *testing.T) {
	w := New(Options{MaxSize: 10 << 20})
	for p, data := range amd64Files() {
		if err := w.Add(p, data); err != nil {
			t.Fatal(err)
		}
	}
	_, err := w.WriteTo(&bytes.Buffer{})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "MaxSize is 10485760") {
		t.Errorf("WriteTo with MaxSize 10 MiB: %v, want %v naming MaxSize", err, ErrTooLarge)
	}
	if _, _, err := w.Extent("vmlinuz"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Extent: %v, want %v", err, ErrTooLarge)
	}

	w = New(DefaultOptions())
	if err := w.Add("vmlinuz", make([]byte, 101<<20)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteTo(&bytes.Buffer{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("101 MiB into the 100 MiB default: %v, want %v", err, ErrTooLarge)
	}

	_, err = chooseGeometry(minRootEntries, func(int64) int64 { return 1 << 40 }, 0, 1<<40)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "FAT16 limit") {
		t.Errorf("contents beyond FAT16: %v, want %v naming the limit", err, ErrTooLarge)
	}
}

func TestReproducible(t *testing.T) {
	files := amd64Files()
	for p, data := range piFiles() {
		if strings.HasPrefix(p, "overlays/") {
			files[p] = data
		}
	}
	paths := slices.Sorted(maps.Keys(files))
	o := Options{Label: "GOKRAZY", Serial: 0x60c24cc1, Time: time.Date(2026, 11, 25, 13, 14, 15, 0, time.UTC)}
	write := func(o Options, order []string) []byte {
		w := New(o)
		for _, p := range order {
			if err := w.Add(p, files[p]); err != nil {
				t.Fatal(err)
			}
		}
		var a, b bytes.Buffer
		if _, err := w.WriteTo(&a); err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Fatal("two WriteTo calls on one Writer differ")
		}
		return a.Bytes()
	}
	first := write(o, paths)
	reversed := slices.Clone(paths)
	slices.Reverse(reversed)
	if !bytes.Equal(first, write(o, reversed)) {
		t.Error("adding the same files in another order changes the image")
	}
	o.Time = o.Time.Add(2 * time.Second)
	if bytes.Equal(first, write(o, paths)) {
		t.Error("a different Time gives the same image")
	}
}

func TestLabelSerialTime(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	o := Options{Label: "gokrazy", Serial: 0x60c24cc1, Time: time.Date(2026, 11, 25, 14, 14, 15, 500e6, berlin)}
	img := build(t, o, map[string][]byte{"cmdline.txt": cmdline(1)})
	if got := string(img[43:54]); got != "GOKRAZY    " {
		t.Errorf("boot sector label %q, want upper case", got)
	}
	if got := le.Uint32(img[39:]); got != 0x60c24cc1 {
		t.Errorf("serial %#x", got)
	}
	v := parseVolume(t, img)
	root := img[v.rootOffset():]
	if string(root[:11]) != "GOKRAZY    " || root[11] != attrVolumeID {
		t.Errorf("first root entry %q attr %#x, want the volume label", root[:11], root[11])
	}
	e := root[dirEntrySize:]
	if string(e[:11]) != "cmdline txt" || e[12] != caseLowerBase|caseLowerExt {
		t.Errorf("entry %q case flags %#x, want lower-case cmdline.txt", e[:11], e[12])
	}
	// 2026-11-25 13:14:15.5 UTC: date (46<<9 | 11<<5 | 25), time (13<<11 | 14<<5 | 7), 150 hundredths.
	date, tm := uint16(46<<9|11<<5|25), uint16(13<<11|14<<5|7)
	if e[13] != 150 || le.Uint16(e[14:]) != tm || le.Uint16(e[16:]) != date || le.Uint16(e[18:]) != date ||
		le.Uint16(e[22:]) != tm || le.Uint16(e[24:]) != date {
		t.Errorf("timestamps % x, want time %#x date %#x", e[13:26], tm, date)
	}
	checkPeers(t, img, tree(map[string][]byte{"cmdline.txt": nil}), nil)
}

func TestAddErrors(t *testing.T) {
	w := New(Options{})
	for _, p := range []string{"cmdline.txt", "/loader/entries/gokrazy.conf"} {
		if err := w.Add(p, []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		path string
		want error
	}{
		{"", ErrInvalidPath},
		{"/", ErrInvalidPath},
		{"a//b", ErrInvalidPath},
		{"a/", ErrInvalidPath},
		{"..", ErrInvalidPath},
		{"a/../b", ErrInvalidPath},
		{"./a", ErrInvalidPath},
		{"a*b", ErrInvalidPath},
		{"a:b", ErrInvalidPath},
		{`a\b`, ErrInvalidPath},
		{"a?", ErrInvalidPath},
		{`a"b`, ErrInvalidPath},
		{"a|b<c>", ErrInvalidPath},
		{"tab\there", ErrInvalidPath},
		{"del\x7f", ErrInvalidPath},
		{"ends.", ErrInvalidPath},
		{"ends ", ErrInvalidPath},
		{"bad\xffutf8", ErrInvalidPath},
		{strings.Repeat("a", 256), ErrInvalidPath},
		{"cmdline.txt", ErrExists},
		{"/cmdline.txt", ErrExists},
		{"CMDLINE.TXT", ErrExists},
		{"loader", ErrExists},
		{"loader/entries", ErrExists},
		{"Loader/x", ErrExists},
		{"cmdline.txt/x", ErrExists},
		{"loader/entries/gokrazy.conf/x", ErrExists},
	} {
		err := w.Add(tc.path, []byte("x"))
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.path)) {
			t.Errorf("Add(%q) = %v, want %v naming the path", tc.path, err, tc.want)
		}
	}
	// The failed calls left nothing behind.
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	checkTree(t, buf.Bytes(), map[string][]byte{"cmdline.txt": []byte("cmdline.txt"),
		"loader/entries/gokrazy.conf": []byte("/loader/entries/gokrazy.conf")})
}

func TestExtentErrors(t *testing.T) {
	w := New(Options{})
	if err := w.Add("loader/entries/gokrazy.conf", loaderEntry()); err != nil {
		t.Fatal(err)
	}
	if err := w.Add("config.txt", nil); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]error{"cmdline.txt": ErrNotFound, "loader/entries": ErrNotFound, "a//b": ErrInvalidPath} {
		if _, _, err := w.Extent(p); !errors.Is(err, want) {
			t.Errorf("Extent(%q) = %v, want %v", p, err, want)
		}
	}
	if off, size, err := w.Extent("config.txt"); off != 0 || size != 0 || err != nil {
		t.Errorf("Extent of an empty file = %d, %d, %v; want 0, 0, nil", off, size, err)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{DefaultOptions(), {}, {Label: "gokrazy", MinSize: 100 << 20}, {Label: "BOOT 2 ~$%"}} {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	for field, o := range map[string]Options{
		"Label":    {Label: "TWELVE CHARS"},
		"Label ":   {Label: "A*B"},
		"Time":     {Time: time.Date(1979, 12, 31, 23, 59, 59, 0, time.UTC)},
		"Time ":    {Time: time.Date(2108, 1, 1, 0, 0, 0, 0, time.UTC)},
		"MinSize":  {MinSize: -1},
		"MaxSize":  {MaxSize: -1},
		"MinSize ": {MinSize: 200 << 20},
	} {
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), strings.TrimSpace(field)+":") {
			t.Errorf("%+v: %v, want an error naming %s", o, err, field)
		}
		if _, err2 := New(o).WriteTo(&bytes.Buffer{}); err2 == nil {
			t.Errorf("%+v: WriteTo accepted invalid options", o)
		}
	}
}

func TestShortNames(t *testing.T) {
	want := map[string]struct {
		short string
		long  bool
	}{
		"cmdline.txt":         {"cmdline.txt", false},
		"loader":              {"loader", false},
		"EFI":                 {"efi", true},
		"BOOTX64.EFI":         {"bootx64.efi", true},
		"vmlinuz":             {"vmlinuz", false},
		"fixup4cd.dat":        {"fixup4cd.dat", false},
		"bcm2711-rpi-4-b.dtb": {"bcm271~1.dtb", true},
		"bcm2711-rpi-400.dtb": {"bcm271~2.dtb", true},
		".gitignore":          {"gitign~1", true},
		"a+b.txt":             {"a_b~1.txt", true},
		"Ärger.txt":           {"_rger~1.txt", true},
		"x.tar.gz":            {"xtar~1.gz", true},
		"README":              {"readme", true},
		"two words.txt":       {"twowor~1.txt", true},
		"overlay_map.dtb":     {"overla~1.dtb", true},
		"gokraz~1.con":        {"gokraz~1.con", false}, // takes ~1 from these two:
		"gokrazy.config":      {"gokraz~2.con", true},
		"gokrazy.configs":     {"gokraz~3.con", true},
	}
	d := newDir("")
	for name := range want {
		d.children[fold(name)] = &node{name: name}
	}
	for i := range 12 {
		name := fmt.Sprintf("longname-%02d.txt", i)
		short := fmt.Sprintf("longna~%d.txt", i+1)
		if i >= 9 {
			short = fmt.Sprintf("longn~%d.txt", i+1)
		}
		want[name] = struct {
			short string
			long  bool
		}{short, true}
		d.children[fold(name)] = &node{name: name}
	}
	if err := (&layout{}).walk(d, nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range d.sorted {
		if got := shortString(c.short); got != want[c.name].short || c.long != want[c.name].long {
			t.Errorf("%q: short %q long %v, want %q %v", c.name, got, c.long, want[c.name].short, want[c.name].long)
		}
	}

	// Alone in its directory, as in gokrazy images, gokrazy.conf gets the
	// ~1 the device looks for.
	entries := newDir("entries")
	entries.children["GOKRAZY.CONF"] = &node{name: "gokrazy.conf"}
	if err := (&layout{}).walk(entries, nil); err != nil {
		t.Fatal(err)
	}
	if got := shortString(entries.sorted[0].short); got != "gokraz~1.con" {
		t.Errorf("gokrazy.conf: short %q, want gokraz~1.con", got)
	}
}

func TestLongNames(t *testing.T) {
	files := map[string][]byte{}
	for _, n := range []int{1, 12, 13, 14, 26, 27, 255} {
		files["long/"+strings.Repeat("x", n-1)+"y"] = []byte{byte(n)}
	}
	files["unicode/Grüße – 日本 ÿ.txt"] = []byte("u")
	files["unicode/MixedCase.Txt"] = []byte("m")
	img := build(t, Options{}, files)
	checkPeers(t, img, tree(files), []string{"unicode/MixedCase.Txt"})
}

func TestManyRootEntries(t *testing.T) {
	files := map[string][]byte{}
	for i := range 700 {
		files[fmt.Sprintf("entry-number-%03d.bin", i)] = []byte{byte(i)}
	}
	img := build(t, Options{}, files)
	if v := parseVolume(t, img); v.rootEntries < 3*700 {
		t.Errorf("%d root entries for 700 names of 2 long entries each", v.rootEntries)
	}
	checkPeers(t, img, tree(files), nil)
}

// TestGeometry checks chosen geometries for many content and minimum
// sizes: consistent cluster count, a large enough FAT, aligned data,
// FAT16 range, room for the contents.
func TestGeometry(t *testing.T) {
	for _, contents := range []int64{0, 1 << 20, 3 << 20, 40 << 20, 70 << 20, 500 << 20, 1900 << 20} {
		for _, minSize := range []int64{0, 2 << 20, 33 << 20, 100 << 20, 1 << 30} {
			need := func(spc int64) int64 { return ceilDiv(contents, spc*sectorSize) }
			g, err := chooseGeometry(minRootEntries, need, minSize/sectorSize, 4<<30/sectorSize)
			if err != nil {
				t.Errorf("%d bytes, MinSize %d: %v", contents, minSize, err)
				continue
			}
			name := fmt.Sprintf("%d bytes, MinSize %d: %+v", contents, minSize, g)
			switch {
			case g.clusters != (g.totalSectors-g.dataSector())/g.sectorsPerCluster:
				t.Errorf("%s: cluster count disagrees with the total", name)
			case g.fatSectors*sectorSize < 2*(g.clusters+2):
				t.Errorf("%s: FAT too small", name)
			case g.dataSector()%g.sectorsPerCluster != 0:
				t.Errorf("%s: data not cluster-aligned", name)
			case g.clusters < minClusters || g.clusters > maxClusters:
				t.Errorf("%s: not FAT16", name)
			case g.clusters < need(g.sectorsPerCluster) || g.totalSectors*sectorSize < minSize:
				t.Errorf("%s: too small", name)
			}
		}
	}
}
