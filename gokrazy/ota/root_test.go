package ota

import (
	"strings"
	"testing"
)

// gokrazy's amd64 command line as gok writes it: padded with 64 spaces,
// no trailing newline.
const gokCmdline = "console=tty1 console=ttyS0,115200 root=PARTUUID=60c24cc1-f3f9-427a-8199-a1b2c3d40001/PARTNROFF=1 ro init=/gokrazy/init panic=10 oops=panic rootwait pci=nommconf" +
	"                                                                "

func TestRootPartition(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		want    int // 0: an error
	}{
		{gokCmdline, 2},
		{strings.Replace(gokCmdline, "PARTNROFF=1", "PARTNROFF=2", 1), 3},
		{"root=PARTUUID=A1B2C3D4-02 init=/gokrazy/init", 2},
		{"root=PARTUUID=a1b2c3d4-03", 3},
		{"root=/dev/mmcblk0p2 init=/gokrazy/init rootwait", 2},
		{"root=/dev/sda3", 3},
		{"root=/dev/nvme0n1p3", 3},
		{"root=PARTUUID=a1b2c3d4-03 root=PARTUUID=a1b2c3d4-03", 3}, // agreeing duplicates

		{"", 0},
		{"console=tty1 rootwait ro", 0},
		{"root=", 0},
		{"root=PARTUUID=", 0},
		{"root=PARTUUID=/PARTNROFF=1", 0},
		{"root=PARTUUID=60c24cc1-f3f9-427a-8199-a1b2c3d40001/PARTNROFF=0", 0},
		{"root=PARTUUID=60c24cc1-f3f9-427a-8199-a1b2c3d40001/PARTNROFF=3", 0}, // /perm
		{"root=PARTUUID=60c24cc1-f3f9-427a-8199-a1b2c3d40001/PARTNROFF=", 0},
		{"root=PARTUUID=60c24cc1-f3f9-427a-8199/PARTNROFF=1", 0},
		{"root=PARTUUID=zzzzzzzz-f3f9-427a-8199-a1b2c3d40001/PARTNROFF=1", 0},
		{"root=PARTUUID=a1b2c3d4-04", 0},
		{"root=PARTUUID=a1b2c3d4-2", 0},
		{"root=PARTUUID=a1b2c3d4-002", 0},
		{"root=PARTUUID=a1b2c3d4", 0},
		{"root=PARTUUID=a1b2c3-02", 0},
		{"root=PARTUUID=60c24cc1-f3f9-427a-8199-a1b2c3d40002", 0}, // a GUID without PARTNROFF
		{"root=/dev/sda4", 0},
		{"root=/dev/sda22", 0},
		{"root=/dev/vda2", 0},
		{"root=LABEL=gokrazy", 0},
		{"root=PARTUUID=a1b2c3d4-02 root=PARTUUID=a1b2c3d4-03", 0}, // disagreeing
		{"root=PARTUUID=a1b2c3d4-02 root=bogus", 0},
	} {
		got, err := RootPartition(tc.cmdline)
		if tc.want == 0 {
			if err == nil {
				t.Errorf("RootPartition(%q) = %d, want an error", tc.cmdline, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("RootPartition(%q) = %d, %v; want %d", tc.cmdline, got, err, tc.want)
		}
	}
}

func FuzzRootPartition(f *testing.F) {
	f.Add(gokCmdline)
	f.Add("root=PARTUUID=a1b2c3d4-03")
	f.Add("root=/dev/mmcblk0p2 root=/dev/mmcblk0p2")
	f.Add("root=PARTUUID=60c24cc1-f3f9-427a-8199-a1b2c3d40001/PARTNROFF=2\n")
	f.Fuzz(func(t *testing.T, cmdline string) {
		got, err := RootPartition(cmdline)
		if err != nil {
			return
		}
		if got != 2 && got != 3 {
			t.Fatalf("RootPartition(%q) = %d", cmdline, got)
		}
		if !strings.Contains(cmdline, "root=") {
			t.Fatalf("RootPartition(%q) = %d without root=", cmdline, got)
		}
	})
}
