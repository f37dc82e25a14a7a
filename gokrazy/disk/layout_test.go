package disk

import (
	"bytes"
	"encoding/hex"
	"regexp"
	"testing"
)

// fnv1a32 is FNV-1a written out (offset basis 2166136261, prime 16777619),
// to check hostHash against something other than hash/fnv.
func fnv1a32(s string) uint32 {
	h := uint32(2166136261)
	for i := range len(s) {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}

func TestPartUUID(t *testing.T) {
	for _, tc := range []struct{ hostname, want string }{
		// gokrazy's quickstart shows gok's log for the instance "hello":
		// "PARTUUID: 4f9f2cab" and mkfs.ext4 /dev/disk/by-partuuid/
		// 60c24cc1-f3f9-427a-8199-4f9f2cab0004.
		{"hello", "60c24cc1-f3f9-427a-8199-4f9f2cab0001"},
		{"gokrazy", "60c24cc1-f3f9-427a-8199-2e18c40c0001"},
		{"psigate", "60c24cc1-f3f9-427a-8199-3107e6400001"},
	} {
		if got := PartUUID(tc.hostname); got != tc.want {
			t.Errorf("PartUUID(%q) = %q, want %q", tc.hostname, got, tc.want)
		}
		if got, want := hostHash(tc.hostname), fnv1a32(tc.hostname); got != want {
			t.Errorf("hostHash(%q) = %08x, want %08x", tc.hostname, got, want)
		}
	}
	// gokrazy's init lower-cases the GUIDs it reads before comparing.
	format := regexp.MustCompile(`^60c24cc1-f3f9-427a-8199-[0-9a-f]{8}00[0-9a-f]{2}$`)
	for n := range uint8(5) {
		if g := partGUID("GoKrazy.example", n); !format.MatchString(g) || g[34:] != hex.EncodeToString([]byte{n}) {
			t.Errorf("partGUID(_, %d) = %q, want the form %s ending in %02x", n, g, format, n)
		}
	}
	if got, want := layout(testImage(t))[0].guid, PartUUID("gokrazy"); got != want {
		t.Errorf("partition 1 GUID = %q, want PartUUID = %q", got, want)
	}
}

func TestGUIDBytes(t *testing.T) {
	for _, tc := range []struct{ guid, disk string }{
		// On-disk bytes as UEFI 2.10 appendix A and every GPT tool have them.
		{typeEFISystem, "28732ac11ff8d211ba4b00a0c93ec93b"},
		{typeLinuxData, "af3dc60f838472478e793d69d8477de4"},
		{"60c24cc1-f3f9-427a-8199-2e18c40c0001", "c14cc260f9f37a4281992e18c40c0001"},
	} {
		g, err := guidBytes(tc.guid)
		if err != nil || hex.EncodeToString(g[:]) != tc.disk {
			t.Errorf("guidBytes(%q) = %x, %v, want %s", tc.guid, g, err, tc.disk)
		}
		if s := guidString(g[:]); s != tc.guid {
			t.Errorf("guidString(guidBytes(%q)) = %q", tc.guid, s)
		}
	}
	for _, bad := range []string{"", "c12a7328f81f11d2ba4b00a0c93ec93b", "c12a7328-f81f-11d2-ba4b-00a0c93ec93x", "c12a7328-f81f-11d2-ba4b_00a0c93ec93b"} {
		if g, err := guidBytes(bad); err == nil {
			t.Errorf("guidBytes(%q) = %x, want an error", bad, g)
		}
	}
}

func TestMBR(t *testing.T) {
	got := MBR("gokrazy")
	want := make([]byte, 446)
	copy(want[440:], []byte{0x0c, 0xc4, 0x18, 0x2e}) // FNV-1a-32 2e18c40c, little-endian
	if !bytes.Equal(got, want) {
		t.Errorf("MBR(gokrazy) = %x, want %x", got, want)
	}
}

func TestHybridMBR(t *testing.T) {
	b := hybridMBR("gokrazy")
	if !bytes.Equal(b[:446], MBR("gokrazy")) {
		t.Errorf("hybrid MBR bytes 0..445 = %x, want MBR()", b[:446])
	}
	want, _ := hex.DecodeString("" +
		"80" + "feffff" + "0c" + "feffff" + "00200000" + "00200300" + // active FAT at 8192, 204800 sectors
		"00" + "feffff" + "ee" + "feffff" + "01000000" + "ff1f0000" + // protective, LBA 1, 8191 sectors
		"00000000000000000000000000000000" +
		"00000000000000000000000000000000" +
		"55aa")
	if !bytes.Equal(b[446:], want) {
		t.Errorf("hybrid MBR bytes 446..511 = %x, want %x", b[446:], want)
	}
}

func TestLayout(t *testing.T) {
	img := testImage(t)
	img.Arch = ARM64
	type part struct {
		typ, name   string
		first, last uint64
	}
	var got []part
	for _, p := range layout(img) {
		got = append(got, part{p.typ, p.name, p.first, p.last})
	}
	// MinSize is 2465792 sectors: the last usable LBA is 2465791-33.
	want := []part{
		{"c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "Microsoft basic data", 8192, 212991},
		{"b921b045-1df0-41c3-af44-4c6f280d3fae", "Linux filesystem", 212992, 1236991},
		{"0fc63daf-8483-4772-8e79-3d69d8477de4", "Linux filesystem", 1236992, 2260991},
		{"0fc63daf-8483-4772-8e79-3d69d8477de4", "Linux filesystem", 2260992, 2465758},
	}
	if len(got) != len(want) {
		t.Fatalf("layout = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("partition %d = %+v, want %+v", i+1, got[i], want[i])
		}
	}
}
