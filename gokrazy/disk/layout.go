package disk

import (
	"fmt"
	"hash/fnv"
)

const sectorSize = 512

// Partition type GUIDs (UEFI 2.10 table 5.7 and the Discoverable Partitions
// Specification); the root type depends on the Arch.
const (
	typeEFISystem = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
	typeLinuxData = "0fc63daf-8483-4772-8e79-3d69d8477de4"
)

// bootLBA is where partition 1 starts: 4 MiB, as gok puts it for most
// devices (the Raspberry Pi among them).
const bootLBA = 8192

// partition is one GPT partition entry.
type partition struct {
	typ   string // type GUID, e.g. typeLinuxData
	guid  string // unique GUID, see partGUID
	name  string // e.g. "Linux filesystem"
	first uint64 // first LBA
	last  uint64 // last LBA, inclusive
}

// offset and size are the partition's place on disk in bytes.
func (p partition) offset() int64 { return int64(p.first) * sectorSize }
func (p partition) size() int64   { return int64(p.last-p.first+1) * sectorSize }

// layout returns gokrazy's four partitions for img (a valid Image): boot,
// root A, root B and /perm, which takes the rest up to the last usable LBA,
// before the 33 sectors of the backup GPT.
func layout(img Image) []partition {
	rootType, _ := img.Arch.rootType()
	const boot, root = uint64(BootSize / sectorSize), uint64(RootSize / sectorSize)
	lastUsable := uint64(img.Size/sectorSize) - 1 - gptSectors
	h := img.Hostname
	return []partition{
		{typeEFISystem, partGUID(h, 1), "Microsoft basic data", bootLBA, bootLBA + boot - 1},
		{rootType, partGUID(h, 2), "Linux filesystem", bootLBA + boot, bootLBA + boot + root - 1},
		{typeLinuxData, partGUID(h, 3), "Linux filesystem", bootLBA + boot + root, bootLBA + boot + 2*root - 1},
		{typeLinuxData, partGUID(h, 4), "Linux filesystem", bootLBA + boot + 2*root, lastUsable},
	}
}

// hostHash is FNV-1a-32 of the hostname: gokrazy's MBR disk signature and
// the hostname part of its GUIDs.
func hostHash(hostname string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(hostname))
	return h.Sum32()
}

// partGUID is gokrazy's GUID of partition n (1–4) on the disk of hostname;
// n = 0 gives the disk GUID. E.g. partGUID("hello", 1) =
// "60c24cc1-f3f9-427a-8199-4f9f2cab0001".
func partGUID(hostname string, n uint8) string {
	return fmt.Sprintf("60c24cc1-f3f9-427a-8199-%08x00%02x", hostHash(hostname), n)
}

func diskGUID(hostname string) string { return partGUID(hostname, 0) }

// PartUUID is the GUID of partition 1 on the disk of hostname, in lower
// case as gokrazy's init compares it, for the kernel argument
// root=PARTUUID=<PartUUID>/PARTNROFF=1 (root A; PARTNROFF=2 is root B).
func PartUUID(hostname string) string { return partGUID(hostname, 1) }
