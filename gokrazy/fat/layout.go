package fat

import (
	"fmt"
	"slices"
	"strings"
)

// layout is where everything goes. Short names, entry counts and clusters
// are set in the nodes themselves.
type layout struct {
	geometry
	dirs  []*node // subdirectories, depth first in name order
	files []*node // files, same order
}

// geometry is the shape of the volume in sectors (fatgen103, "Boot Sector
// and BPB"): reserved sectors (boot sector first), one FAT, the fixed root
// directory, then the data clusters numbered from 2.
type geometry struct {
	sectorsPerCluster int64
	reservedSectors   int64
	fatSectors        int64
	rootEntries       int64
	clusters          int64
	totalSectors      int64
}

func (g geometry) rootSectors() int64 { return g.rootEntries * dirEntrySize / sectorSize }

func (g geometry) dataSector() int64 { return g.reservedSectors + g.fatSectors + g.rootSectors() }

func (g geometry) clusterSize() int64 { return g.sectorsPerCluster * sectorSize }

// offset is the byte offset of a data cluster.
func (g geometry) offset(cluster uint16) int64 {
	return (g.dataSector() + (int64(cluster)-2)*g.sectorsPerCluster) * sectorSize
}

// layout validates the options, names every entry and places it.
func (w *Writer) layout() (*layout, error) {
	if w.laid != nil {
		return w.laid, nil
	}
	if err := w.opts.Validate(); err != nil {
		return nil, err
	}
	l := &layout{}
	if err := l.walk(w.root, nil); err != nil {
		return nil, err
	}
	if w.opts.Label != "" {
		w.root.entries++ // the volume label entry
	}
	root := max(minRootEntries, (int64(w.root.entries)+15)/16*16)
	if root > 0xfff0 {
		return nil, fmt.Errorf("fat: %w: the root directory needs %d entries, at most %d are possible",
			ErrTooLarge, w.root.entries, 0xfff0)
	}
	g, err := chooseGeometry(root, l.need, w.opts.minSectors(), w.opts.maxSectors())
	if err != nil {
		return nil, err
	}
	l.geometry = g
	l.place()
	w.laid = l
	return l, nil
}

// walk sorts and names the children of d, counts its entries and collects
// subdirectories and files in depth-first name order.
func (l *layout) walk(d, parent *node) error {
	d.parent, d.sorted = parent, d.sorted[:0]
	for _, c := range d.children {
		d.sorted = append(d.sorted, c)
	}
	slices.SortFunc(d.sorted, func(a, b *node) int { return strings.Compare(a.name, b.name) })
	if err := nameChildren(d.sorted); err != nil {
		return fmt.Errorf("fat: naming the entries of %q: %w", d.name, err)
	}
	d.entries = 0
	if parent != nil {
		d.entries = 2 // "." and ".."
	}
	for _, c := range d.sorted {
		d.entries++
		if c.long {
			d.entries += longCount(c.name)
		}
		if !c.isDir() {
			l.files = append(l.files, c)
			continue
		}
		l.dirs = append(l.dirs, c)
		if err := l.walk(c, d); err != nil {
			return err
		}
	}
	return nil
}

// nameChildren gives each entry of one directory a unique short name.
// Names that map to 8.3 without loss keep their basis; the others get
// numeric tails in name order, ~1 first: gokrazy's reader looks for
// gokrazy.conf as GOKRAZ~1.CON.
func nameChildren(children []*node) error {
	used := map[[11]byte]bool{}
	var lossy []*node
	for _, c := range children {
		base, ext, l := shortBasis(c.name)
		if l {
			lossy = append(lossy, c)
			continue
		}
		c.short = shortBytes(base, ext)
		used[c.short] = true
		c.long = shortString(c.short) != c.name
		c.caseFlag = 0
		if !c.long {
			c.caseFlag = caseLowerBase | caseLowerExt
		}
	}
	tried := map[string]int{} // basis → the highest tail number taken
	for _, c := range lossy {
		base, ext, _ := shortBasis(c.name)
		n := tried[base+"."+ext] + 1
		for ; used[shortBytes(withTail(base, n), ext)]; n++ {
			if n == 999999 {
				return fmt.Errorf("no free short name for %q", c.name)
			}
		}
		tried[base+"."+ext] = n
		c.short = shortBytes(withTail(base, n), ext)
		used[c.short] = true
		c.long, c.caseFlag = true, 0
	}
	return nil
}

// need is the number of clusters of spc sectors the contents take.
func (l *layout) need(spc int64) int64 {
	size := spc * sectorSize
	var n int64
	for _, d := range l.dirs {
		n += ceilDiv(int64(d.entries)*dirEntrySize, size)
	}
	for _, f := range l.files {
		n += ceilDiv(int64(len(f.data)), size)
	}
	return n
}

// place gives every directory, then every file, its contiguous clusters.
func (l *layout) place() {
	next := int64(2)
	size := l.clusterSize()
	for _, d := range l.dirs {
		d.cluster, d.clusters = uint16(next), ceilDiv(int64(d.entries)*dirEntrySize, size)
		next += d.clusters
	}
	for _, f := range l.files {
		f.cluster, f.clusters = 0, ceilDiv(int64(len(f.data)), size)
		if f.clusters > 0 {
			f.cluster = uint16(next)
		}
		next += f.clusters
	}
}

// chooseGeometry picks the smallest volume of at least minSectors that
// holds need(spc) clusters with a FAT16 cluster count; on a tie the
// smaller cluster size wins.
func chooseGeometry(rootEntries int64, need func(spc int64) int64, minSectors, maxSectors int64) (geometry, error) {
	var best geometry
	for spc := int64(1); spc <= maxSectorsPerCluster; spc *= 2 {
		n := max(need(spc), minClusters)
		if n > maxClusters {
			continue
		}
		g := smallestGeometry(spc, rootEntries, n)
		if g.totalSectors < minSectors {
			g = filledGeometry(spc, rootEntries, minSectors)
			if g.clusters < n || g.clusters > maxClusters {
				continue
			}
		}
		if best.totalSectors == 0 || g.totalSectors < best.totalSectors {
			best = g
		}
	}
	switch {
	case best.totalSectors == 0:
		return best, fmt.Errorf("fat: %w: the contents need more than %d clusters of %d KiB, the FAT16 limit",
			ErrTooLarge, maxClusters, maxSectorsPerCluster*sectorSize/1024)
	case best.totalSectors > maxSectors:
		return best, fmt.Errorf("fat: %w: the file system needs %d bytes, MaxSize is %d",
			ErrTooLarge, best.totalSectors*sectorSize, maxSectors*sectorSize)
	}
	return best, nil
}

// smallestGeometry is the volume with exactly the given clusters.
func smallestGeometry(spc, rootEntries, clusters int64) geometry {
	g := geometry{sectorsPerCluster: spc, rootEntries: rootEntries, clusters: clusters}
	g.fatSectors = ceilDiv((clusters+2)*2, sectorSize)
	g.alignData()
	g.totalSectors = g.dataSector() + clusters*spc
	return g
}

// filledGeometry is the volume of totalSectors with as many clusters as
// fit. Everyone derives the cluster count from the total and the data
// start, so the FAT is sized for an upper bound of it.
func filledGeometry(spc, rootEntries, totalSectors int64) geometry {
	g := geometry{sectorsPerCluster: spc, rootEntries: rootEntries, totalSectors: totalSectors}
	upper := (totalSectors - 1 - g.rootSectors()) / spc
	g.fatSectors = ceilDiv((upper+2)*2, sectorSize)
	g.alignData()
	g.clusters = (totalSectors - g.dataSector()) / spc
	return g
}

// alignData adds reserved sectors after the boot sector until the data
// area starts on a cluster boundary, so that clusters stay aligned on
// flash whose partition starts aligned (gokrazy's starts at 4 MiB).
func (g *geometry) alignData() {
	g.reservedSectors = 1
	for (g.reservedSectors+g.fatSectors+g.rootSectors())%g.sectorsPerCluster != 0 {
		g.reservedSectors++
	}
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }
