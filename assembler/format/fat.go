package format

import (
	"encoding/binary"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"
)

// A FAT32 file system written front to back, for EFI system partitions: every file and
// directory in one contiguous run of clusters, the free space at the end. go-diskfs writes FAT32
// too, but through random access to a file and with the clock in every directory entry; this
// writer stamps entries with the build's time, derives the volume ID from the content and
// streams the files, so that the same inputs give the same bytes without a temporary copy.

// fatFile is a file of the volume; path is "DIR/NAME.EXT" in 8.3 upper-case names.
type fatFile struct {
	path  string
	size  int64
	write func(io.Writer) error // writes exactly size bytes
}

type fatNode struct {
	name     string // 8.3, upper case
	dir      bool
	children []*fatNode
	file     *fatFile
	cluster  uint32
	clusters uint32
	parent   *fatNode
}

// fatVolume is a laid out FAT32 volume.
type fatVolume struct {
	size, used  int64 // bytes of the volume; bytes up to the end of the last used cluster
	reserved    []byte
	fat         []byte
	clusterSize int64
	order       []*fatNode // directories then files, in cluster order
	mtime       time.Time
	label       [11]byte
}

const (
	fatSector   = 512
	fatReserved = 32
	// fat32MinClusters keeps the cluster count well above 65524, below which a volume is FAT16
	// whatever its boot sector says.
	fat32MinClusters = 66000
)

// fatName checks that n is an upper-case 8.3 name and returns its 11-byte directory form.
func fatName(n string) ([11]byte, error) {
	var out [11]byte
	for i := range out {
		out[i] = ' '
	}
	base, ext, _ := strings.Cut(n, ".")
	if base == "" || len(base) > 8 || len(ext) > 3 || strings.Contains(ext, ".") {
		return out, fmt.Errorf("FAT name %q: want an 8.3 name", n)
	}
	for _, c := range base + ext {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return out, fmt.Errorf("FAT name %q: want upper-case letters, digits, _ and -", n)
		}
	}
	copy(out[:], base)
	copy(out[8:], ext)
	return out, nil
}

// newFAT lays out a volume holding files; hidden is the partition's first sector on its disk.
func newFAT(files []fatFile, mtime time.Time, id uint32, label string, hidden int64) (*fatVolume, error) {
	root := &fatNode{dir: true}
	nodes := map[string]*fatNode{".": root}
	var mkdir func(p string) (*fatNode, error)
	mkdir = func(p string) (*fatNode, error) {
		if d, ok := nodes[p]; ok {
			if !d.dir {
				return nil, fmt.Errorf("FAT: %s is a file and a directory", p)
			}
			return d, nil
		}
		parent, err := mkdir(path.Dir(p))
		if err != nil {
			return nil, err
		}
		d := &fatNode{name: path.Base(p), dir: true, parent: parent}
		if _, err := fatName(d.name); err != nil {
			return nil, err
		}
		parent.children = append(parent.children, d)
		nodes[p] = d
		return d, nil
	}
	for i := range files {
		f := &files[i]
		if _, err := fatName(path.Base(f.path)); err != nil {
			return nil, err
		}
		if _, dup := nodes[f.path]; dup || f.path != path.Clean(f.path) || path.IsAbs(f.path) {
			return nil, fmt.Errorf("FAT: %s given twice or not a clean relative path", f.path)
		}
		if f.size > 1<<32-1 || f.size < 0 {
			return nil, fmt.Errorf("FAT: %s is %d bytes, more than FAT32 holds in a file (4 GiB - 1)", f.path, f.size)
		}
		d, err := mkdir(path.Dir(f.path))
		if err != nil {
			return nil, err
		}
		n := &fatNode{name: path.Base(f.path), file: f, parent: d}
		d.children = append(d.children, n)
		nodes[f.path] = n
	}
	// Cluster size: 512 bytes up to 200 MiB of content, 4 KiB above (fewer FAT entries).
	var content int64
	for _, f := range files {
		content += f.size
	}
	cs := int64(fatSector)
	if content > 200<<20 {
		cs = 4096
	}
	// Directories first (breadth first, children sorted), then files in the same order.
	var dirOrder, fileOrder []*fatNode
	queue := []*fatNode{root}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		dirOrder = append(dirOrder, d)
		sort.Slice(d.children, func(i, j int) bool { return d.children[i].name < d.children[j].name })
		for _, c := range d.children {
			if c.dir {
				queue = append(queue, c)
			} else {
				fileOrder = append(fileOrder, c)
			}
		}
	}
	next := uint32(2)
	for _, n := range append(append([]*fatNode(nil), dirOrder...), fileOrder...) {
		var bytes int64
		if n.dir {
			entries := len(n.children)
			if n != root {
				entries += 2 // . and ..
			} else {
				entries++ // the volume label
			}
			bytes = max(int64(entries)*32, 1)
		} else {
			bytes = n.file.size
		}
		n.clusters = uint32((bytes + cs - 1) / cs)
		if n.clusters > 0 {
			n.cluster = next
			next += n.clusters
		}
	}
	usedClusters := int64(next - 2)
	clusters := max(usedClusters, fat32MinClusters)
	fatSectors := ((clusters+2)*4 + fatSector - 1) / fatSector
	spc := cs / fatSector
	total := fatReserved + 2*fatSectors + clusters*spc
	if total > 1<<32-1 {
		return nil, fmt.Errorf("FAT: %d sectors are more than FAT32 addresses", total)
	}
	label11, err := fatName(label)
	if err != nil {
		return nil, fmt.Errorf("FAT label: %w", err)
	}
	v := &fatVolume{label: label11, size: total * fatSector, clusterSize: cs, order: append(dirOrder, fileOrder...), mtime: mtime}
	dataStart := (fatReserved + 2*fatSectors) * fatSector
	v.used = dataStart + usedClusters*cs

	le := binary.LittleEndian
	bs := make([]byte, fatSector)
	copy(bs, []byte{0xEB, 0x58, 0x90})
	copy(bs[3:], "MOBYKIT ")
	le.PutUint16(bs[11:], fatSector)
	bs[13] = byte(spc)
	le.PutUint16(bs[14:], fatReserved)
	bs[16] = 2 // FATs
	bs[21] = 0xF8
	le.PutUint16(bs[24:], 32) // sectors per track
	le.PutUint16(bs[26:], 64) // heads
	le.PutUint32(bs[28:], uint32(hidden))
	le.PutUint32(bs[32:], uint32(total))
	le.PutUint32(bs[36:], uint32(fatSectors))
	le.PutUint32(bs[44:], 2) // root cluster
	le.PutUint16(bs[48:], 1) // FSInfo sector
	le.PutUint16(bs[50:], 6) // backup boot sector
	bs[64] = 0x80
	bs[66] = 0x29
	le.PutUint32(bs[67:], id)
	copy(bs[71:82], label11[:])
	copy(bs[82:], "FAT32   ")
	bs[510], bs[511] = 0x55, 0xAA
	info := make([]byte, fatSector)
	le.PutUint32(info[0:], 0x41615252)
	le.PutUint32(info[484:], 0x61417272)
	le.PutUint32(info[488:], uint32(clusters-usedClusters))
	le.PutUint32(info[492:], next)
	le.PutUint32(info[508:], 0xAA550000)
	v.reserved = make([]byte, fatReserved*fatSector)
	copy(v.reserved, bs)
	copy(v.reserved[fatSector:], info)
	copy(v.reserved[6*fatSector:], bs)
	copy(v.reserved[7*fatSector:], info)

	v.fat = make([]byte, fatSectors*fatSector)
	le.PutUint32(v.fat[0:], 0x0FFFFFF8)
	le.PutUint32(v.fat[4:], 0x0FFFFFFF)
	for _, n := range v.order {
		for i := uint32(0); i < n.clusters; i++ {
			c := n.cluster + i
			link := c + 1
			if i == n.clusters-1 {
				link = 0x0FFFFFFF
			}
			le.PutUint32(v.fat[4*c:], link)
		}
	}
	return v, nil
}

// dosTime is t in a directory entry's date and time fields (1980 at the earliest).
func dosTime(t time.Time) (date, tm uint16) {
	t = t.UTC()
	if t.Year() < 1980 {
		return 1<<5 | 1, 0
	}
	if t.Year() > 2107 {
		t = time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)
	}
	return uint16(t.Year()-1980)<<9 | uint16(t.Month())<<5 | uint16(t.Day()),
		uint16(t.Hour())<<11 | uint16(t.Minute())<<5 | uint16(t.Second()/2)
}

func (v *fatVolume) entry(name [11]byte, n *fatNode, cluster uint32) []byte {
	e := make([]byte, 32)
	copy(e, name[:])
	if n.dir {
		e[11] = 0x10
	} else {
		e[11] = 0x20
		binary.LittleEndian.PutUint32(e[28:], uint32(n.file.size))
	}
	d, t := dosTime(v.mtime)
	le := binary.LittleEndian
	le.PutUint16(e[14:], t)
	le.PutUint16(e[16:], d)
	le.PutUint16(e[18:], d)
	le.PutUint16(e[20:], uint16(cluster>>16))
	le.PutUint16(e[22:], t)
	le.PutUint16(e[24:], d)
	le.PutUint16(e[26:], uint16(cluster))
	return e
}

// write writes the volume's first used bytes (v.used); the rest of it is zeros.
func (v *fatVolume) write(w io.Writer) error {
	if _, err := w.Write(v.reserved); err != nil {
		return err
	}
	for range 2 {
		if _, err := w.Write(v.fat); err != nil {
			return err
		}
	}
	for _, n := range v.order {
		want := int64(n.clusters) * v.clusterSize
		var got int64
		if n.dir {
			var b []byte
			if n.parent == nil {
				e := v.entry(v.label, n, 0)
				e[11] = 0x08 // volume label
				b = append(b, e...)
			} else {
				dot, _ := fatName("X")
				copy(dot[:], ".          ")
				b = append(b, v.entry(dot, n, n.cluster)...)
				copy(dot[:], "..         ")
				parent := n.parent.cluster
				if n.parent.parent == nil {
					parent = 0 // the root is cluster 0 in ..
				}
				b = append(b, v.entry(dot, n.parent, parent)...)
			}
			for _, c := range n.children {
				name, err := fatName(c.name)
				if err != nil {
					return err
				}
				b = append(b, v.entry(name, c, c.cluster)...)
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
			got = int64(len(b))
		} else {
			cw := &countWriter{w: w}
			if err := n.file.write(cw); err != nil {
				return fmt.Errorf("%s: %w", n.file.path, err)
			}
			if cw.n != n.file.size {
				return fmt.Errorf("%s: wrote %d bytes, want %d", n.file.path, cw.n, n.file.size)
			}
			got = cw.n
		}
		if err := writeZeroBytes(w, want-got); err != nil {
			return err
		}
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
