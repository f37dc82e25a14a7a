package fat

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"path"
	"strings"
	"testing"
	"time"
)

// content makes size bytes that differ per seed and have no short period,
// so a file at the wrong offset shows.
func content(seed uint64, size int) []byte {
	b := make([]byte, size)
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	rand.NewChaCha8(key).Read(b)
	return b
}

// cmdline is shaped like gok's: 64 spaces of room, no final newline.
func cmdline(partnroff int) []byte {
	return fmt.Appendf(nil, "console=tty1 console=ttyS0,115200 root=PARTUUID=60c24cc1-f3f9-427a-8199-3f2a91c000/PARTNROFF=%d "+
		"ro init=/gokrazy/init panic=10 oops=panic rootwait pci=nommconf%s", partnroff, strings.Repeat(" ", 64))
}

func loaderEntry() []byte {
	return append([]byte("title gokrazy\nlinux /vmlinuz\noptions "), cmdline(1)...)
}

// amd64Files is a gokrazy amd64 boot partition, sizes as in the notes.
func amd64Files() map[string][]byte {
	return map[string][]byte{
		"vmlinuz":                      content(1, 16548864),
		"cmdline.txt":                  cmdline(1),
		"config.txt":                   {},
		"loader/entries/gokrazy.conf":  loaderEntry(),
		"EFI/BOOT/BOOTX64.EFI":         content(2, 140891),
		"EFI/BOOT/BOOTAA64.EFI":        content(3, 129024),
		"EFI/systemd/systemd-boot.efi": content(4, 140891),
	}
}

// piFiles is a Raspberry Pi boot partition like gok writes: a 46 MB
// kernel, 22 MB of GPU firmware, device trees with long names and 360
// overlays, sizes as in kernel.rpi and firmware.
func piFiles() map[string][]byte {
	f := map[string][]byte{
		"vmlinuz":                     content(10, 46051840),
		"cmdline.txt":                 cmdline(1),
		"config.txt":                  []byte("arm_control=0x200\nenable_uart=1\nkernel=vmlinuz\n"),
		"loader/entries/gokrazy.conf": loaderEntry(),
		"bootcode.bin":                content(11, 52624),
		"pieeprom.upd":                content(12, 2097152),
		"pieeprom.sig":                []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\nts: 1764000000\n"),
		"overlays/overlay_map.dtb":    content(13, 8900),
		"overlays/README":             content(14, 90000),
	}
	elfs := map[string]int{"start.elf": 3029888, "start4.elf": 2305632, "start4cd.elf": 851740, "start4db.elf": 3804392,
		"start4x.elf": 3053352, "start_cd.elf": 851740, "start_db.elf": 4876232, "start_x.elf": 3777000}
	seed := uint64(100)
	for name, size := range elfs {
		f[name] = content(seed, size)
		f[strings.Replace(strings.Replace(name, "start", "fixup", 1), ".elf", ".dat", 1)] = content(seed+1, 7000+int(seed))
		seed += 2
	}
	for i, board := range []string{"bcm2710-rpi-2-b", "bcm2710-rpi-3-b", "bcm2710-rpi-3-b-plus", "bcm2710-rpi-cm3",
		"bcm2710-rpi-zero-2-w", "bcm2711-rpi-4-b", "bcm2711-rpi-400", "bcm2711-rpi-cm4", "bcm2711-rpi-cm4s",
		"bcm2712-rpi-5-b", "bcm2712-rpi-500", "bcm2712-rpi-cm5-cm5io", "bcm2712d0-rpi-5-b", "bcm2837-rpi-3-b"} {
		f[board+".dtb"] = content(uint64(200+i), 30000+1000*i)
	}
	vendors := []string{"adafruit", "allo", "audioinjector", "hifiberry", "i2c-sensor", "iqaudio", "justboom",
		"pisound", "rpi", "spi", "vc4-kms", "w1-gpio"}
	for i := range 360 {
		name := fmt.Sprintf("overlays/%s-%d-dac.dtbo", vendors[i%len(vendors)], i/len(vendors))
		f[name] = content(uint64(300+i), 600+37*i)
	}
	return f
}

// build writes files with o and checks the image with the Go walker.
func build(t *testing.T, o Options, files map[string][]byte) []byte {
	t.Helper()
	w := New(o)
	for p, data := range files {
		if err := w.Add(p, data); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	start := time.Now()
	n, err := w.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d files, %d bytes of contents: image of %d bytes in %v", len(files), contentSize(files), n, time.Since(start))
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo returned %d, wrote %d", n, buf.Len())
	}
	img := buf.Bytes()
	checkTree(t, img, files)
	for p, data := range files {
		off, size, err := w.Extent(p)
		if err != nil {
			t.Fatal(err)
		}
		if size != int64(len(data)) || !bytes.Equal(img[off:off+size], data) {
			t.Fatalf("Extent(%q) = %d+%d: not the file's bytes", p, off, size)
		}
	}
	return img
}

// checkTree walks the image and compares it with files.
func checkTree(t *testing.T, img []byte, files map[string][]byte) {
	t.Helper()
	got := parseVolume(t, img).walk(t)
	want := tree(files)
	for p, data := range want {
		g, ok := got[p]
		switch {
		case !ok:
			t.Errorf("%q missing from the image", p)
		case (data == nil) != (g == nil) || !bytes.Equal(g, data):
			t.Errorf("%q: %d bytes in the image, want %d", p, len(g), len(data))
		}
		delete(got, p)
	}
	for p := range got {
		t.Errorf("%q in the image was not added", p)
	}
}

// tree is files plus their directories (nil contents).
func tree(files map[string][]byte) map[string][]byte {
	t := map[string][]byte{}
	for p, data := range files {
		if data == nil {
			data = []byte{}
		}
		t[p] = data
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			t[d] = nil
		}
	}
	return t
}

func contentSize(files map[string][]byte) (n int) {
	for _, d := range files {
		n += len(d)
	}
	return n
}

// checkGokrazy finds /cmdline.txt and /loader/entries/gokrazy.conf the way
// the device does, rewrites cmdline.txt in place as an update would, and
// checks the image is still clean.
func checkGokrazy(t *testing.T, img []byte, files map[string][]byte) {
	t.Helper()
	for _, p := range []string{"/cmdline.txt", "/loader/entries/gokrazy.conf"} {
		off, size, err := gokrazyExtent(img, p)
		if err != nil {
			t.Fatalf("gokrazy reader: %v", err)
		}
		if want := files[p[1:]]; !bytes.Equal(img[off:off+size], want) {
			t.Fatalf("gokrazy reader finds %s at %d+%d, not its contents", p, off, size)
		}
	}
	t.Run("in-place update", func(t *testing.T) {
		off, size, _ := gokrazyExtent(img, "/cmdline.txt")
		updated := maps.Clone(files)
		updated["cmdline.txt"] = cmdline(2)
		if int64(len(updated["cmdline.txt"])) != size {
			t.Fatalf("updated cmdline.txt is %d bytes, want %d", len(updated["cmdline.txt"]), size)
		}
		img := bytes.Clone(img)
		copy(img[off:], updated["cmdline.txt"])
		checkTree(t, img, updated)
		checkPeers(t, img, tree(updated), []string{"cmdline.txt", "loader/entries/gokrazy.conf"})
	})
}
