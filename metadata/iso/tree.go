package iso

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Node is a file of a tree written by WriteTree. A regular file reached through several names
// is a hard link (one extent, its link count in Rock Ridge).
type Node struct {
	Mode               uint32 // st_mode: type and permission bits
	UID, GID           uint32
	Size               int64  // regular files
	Target             string // symlinks
	DevMajor, DevMinor uint32 // devices
	Children           []Child

	nlink    uint32
	parent   *Node
	lba      uint32 // extent (directories and files)
	dirSize  uint32 // directories
	records  []record
	ceLBA    uint32 // continuation area of this directory's records
	ceSize   uint32
	number   uint16 // path table number
	isoNames map[*Child]string
}

// Child is a name in a directory.
type Child struct {
	Name string
	Node *Node
}

type record struct {
	child *Child
	dot   int // 1 for ".", 2 for ".."
	id    []byte
	su    []byte // what fits in the record
	ce    []byte // the rest, in the continuation area
}

const (
	sIFMT  = 0o170000
	sIFDIR = 0o040000
	sIFREG = 0o100000
	sIFLNK = 0o120000
	sIFCHR = 0o020000
	sIFBLK = 0o060000
)

// maxSU is how much system use data a directory record keeps before continuing in a CE area.
const maxSU = 255 - 33 - 33 - 28 - 1 // room for a 33-byte identifier, a CE entry and the pad byte

// WriteTree writes an ISO 9660 image of the tree at root, with Rock Ridge (names, modes,
// owners, symbolic links, devices, hard links) so that Linux sees the tree as it is. order
// lists the regular files with contents (Size > 0), each once, in the order contents will give
// them: contents is called once and must pass each file's bytes to put, in that order. Nothing
// is held in memory but the tree: the file data goes straight through.
func WriteTree(w io.Writer, root *Node, order []*Node, opts Options, contents func(put func(*Node, io.Reader) error) error) error {
	if root.Mode&sIFMT != sIFDIR {
		return errors.New("the root is not a directory")
	}
	label := opts.Label
	if label == "" {
		label = LabelCIDATA
	}
	if len(label) > 32 {
		return fmt.Errorf("volume label %q is longer than 32 bytes", label)
	}
	mt := opts.ModTime
	if mt.IsZero() {
		mt = time.Unix(0, 0)
	}
	mt = mt.UTC()
	date := dirDate(mt)

	// Directories breadth first (the path table's order), checking names and counting links.
	dirs := []*Node{root}
	root.parent = root
	inTree := map[*Node]bool{root: true}
	for i := 0; i < len(dirs); i++ {
		d := dirs[i]
		d.nlink = 2
		slices.SortFunc(d.Children, func(a, b Child) int { return strings.Compare(a.Name, b.Name) })
		for j := range d.Children {
			c := &d.Children[j]
			if c.Name == "" || c.Name == "." || c.Name == ".." || strings.ContainsAny(c.Name, "/\x00") || len(c.Name) > 255 {
				return fmt.Errorf("%s: bad name %q", dirPath(d), c.Name)
			}
			if j > 0 && d.Children[j-1].Name == c.Name {
				return fmt.Errorf("%s/%s: listed twice", dirPath(d), c.Name)
			}
			n := c.Node
			if n.Mode&sIFMT == sIFDIR {
				if inTree[n] {
					return fmt.Errorf("%s/%s: a directory with two names", dirPath(d), c.Name)
				}
				inTree[n] = true
				n.parent = d
				d.nlink++
				dirs = append(dirs, n)
				continue
			}
			if !inTree[n] {
				inTree[n] = true
				n.nlink = 0
			}
			n.nlink++
			if n.Mode&sIFMT == sIFREG && n.Size > 1<<32-1 {
				return fmt.Errorf("%s/%s: %d bytes do not fit ISO 9660 (at most 4 GiB - 1)", dirPath(d), c.Name, n.Size)
			}
		}
	}
	if len(dirs) > 65535 {
		return fmt.Errorf("%d directories: the path table holds at most 65535", len(dirs))
	}
	for i, d := range dirs {
		d.number = uint16(i + 1)
	}
	inOrder := map[*Node]bool{}
	for _, n := range order {
		if !inTree[n] || n.Mode&sIFMT != sIFREG || n.Size <= 0 || inOrder[n] {
			return errors.New("order lists a file twice, or one that is not a regular file with contents in the tree")
		}
		inOrder[n] = true
	}
	for n := range inTree {
		if n.Mode&sIFMT == sIFREG && n.Size > 0 && !inOrder[n] {
			return errors.New("a regular file with contents is missing from order")
		}
	}
	boot := opts.Boot
	if boot != nil && (!boot.EFI || boot.Node == nil || !inOrder[boot.Node] || boot.HybridMBR != nil) {
		return errors.New("WriteTree boots only an EFI boot image (Boot.EFI, Boot.Node a file of the tree with contents, no hybrid MBR)")
	}

	// Records of each directory, with ISO names unique within it.
	for _, d := range dirs {
		d.records = nil
		d.isoNames = map[*Child]string{}
		used := map[string]bool{}
		dot := susp("SP", []byte{0xBE, 0xEF, 0})
		if d != root {
			dot = nil
		} else {
			dot = append(dot, erEntry()...)
		}
		d.records = append(d.records, record{dot: 1, id: []byte{0}, su: append(dot, pxFull(d.Mode, d.nlink, d.UID, d.GID)...)})
		p := d.parent
		d.records = append(d.records, record{dot: 2, id: []byte{1}, su: pxFull(p.Mode, p.nlink, p.UID, p.GID)})
		for j := range d.Children {
			c := &d.Children[j]
			id := uniqueName(c.Name, c.Node.Mode&sIFMT == sIFDIR, used)
			d.isoNames[c] = id
			n := c.Node
			su := pxFull(n.Mode, n.nlink, n.UID, n.GID)
			switch n.Mode & sIFMT {
			case sIFCHR, sIFBLK:
				su = append(su, pnEntry(n.DevMajor, n.DevMinor)...)
			case sIFLNK:
				su = append(su, slEntries(n.Target)...)
			}
			su = append(su, nmEntries(c.Name)...)
			r := record{child: c, id: []byte(id)}
			if len(su) > maxSU {
				// Split on entry boundaries: what fits stays, the rest continues.
				cut := 0
				for off := 0; off < len(su); off += int(su[off+2]) {
					if off+int(su[off+2]) > maxSU {
						break
					}
					cut = off + int(su[off+2])
				}
				r.su, r.ce = su[:cut], su[cut:]
			} else {
				r.su = su
			}
			d.records = append(d.records, r)
		}
		slices.SortStableFunc(d.records[2:], func(a, b record) int { return strings.Compare(string(a.id), string(b.id)) })
	}

	// Layout: descriptors, path tables, directories, continuation areas, file data.
	ptSize := 0
	for _, d := range dirs {
		ptSize += 8 + len(pathID(d)) + len(pathID(d))%2
	}
	ptSectors := uint32((ptSize + sector - 1) / sector)
	pathLBA := uint32(18)
	if boot != nil {
		pathLBA++ // the El Torito boot record
	}
	next := pathLBA + 2*ptSectors
	for _, d := range dirs {
		size := 0
		for _, r := range d.records {
			rl := recLen(r)
			if size%sector+rl > sector {
				size += sector - size%sector
			}
			size += rl
		}
		d.dirSize = uint32((size + sector - 1) / sector * sector)
		d.lba = next
		next += d.dirSize / sector
	}
	for _, d := range dirs {
		ce := 0
		for _, r := range d.records {
			ce += len(r.ce)
		}
		if ce > 0 {
			d.ceLBA, d.ceSize = next, uint32(ce)
			next += uint32((ce + sector - 1) / sector)
		}
	}
	var catalogLBA uint32
	if boot != nil {
		catalogLBA = next
		next++
	}
	for _, n := range order {
		n.lba = next
		next += uint32((n.Size + sector - 1) / sector)
	}
	total := next

	bw := bufio.NewWriterSize(w, 256<<10)
	bw.Write(make([]byte, 16*sector))
	bw.Write(pvd(label, total, pathLBA, uint32(ptSize), root.lba, root.dirSize, date, mt))
	if boot != nil {
		bw.Write(bootRecord(catalogLBA))
	}
	term := make([]byte, sector)
	term[0] = 255
	copy(term[1:], "CD001")
	term[6] = 1
	bw.Write(term)
	for _, bo := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		var pt []byte
		for _, d := range dirs {
			id := pathID(d)
			e := make([]byte, 8, 8+len(id)+1)
			e[0] = byte(len(id))
			bo.PutUint32(e[2:], d.lba)
			bo.PutUint16(e[6:], d.parent.number)
			e = append(e, id...)
			if len(id)%2 == 1 {
				e = append(e, 0)
			}
			pt = append(pt, e...)
		}
		bw.Write(pt)
		bw.Write(make([]byte, int(ptSectors)*sector-len(pt)))
	}
	for _, d := range dirs {
		var buf []byte
		ceOff := uint32(0)
		for _, r := range d.records {
			lba, size, isDir := uint32(0), uint32(0), false
			switch {
			case r.dot == 1:
				lba, size, isDir = d.lba, d.dirSize, true
			case r.dot == 2:
				lba, size, isDir = d.parent.lba, d.parent.dirSize, true
			default:
				n := r.child.Node
				switch n.Mode & sIFMT {
				case sIFDIR:
					lba, size, isDir = n.lba, n.dirSize, true
				case sIFREG:
					if n.Size > 0 {
						lba, size = n.lba, uint32(n.Size)
					}
				}
			}
			su := r.su
			if len(r.ce) > 0 {
				su = append(slices.Clone(su), ceEntry(d.ceLBA, ceOff, uint32(len(r.ce)))...)
				ceOff += uint32(len(r.ce))
			}
			rec := dirRecord(r.id, lba, size, isDir, date, su)
			if len(buf)%sector+len(rec) > sector {
				buf = append(buf, make([]byte, sector-len(buf)%sector)...)
			}
			buf = append(buf, rec...)
		}
		buf = append(buf, make([]byte, int(d.dirSize)-len(buf))...)
		bw.Write(buf)
	}
	for _, d := range dirs {
		if d.ceSize == 0 {
			continue
		}
		var ce []byte
		for _, r := range d.records {
			ce = append(ce, r.ce...)
		}
		if pad := len(ce) % sector; pad != 0 {
			ce = append(ce, make([]byte, sector-pad)...)
		}
		bw.Write(ce)
	}
	if boot != nil {
		load := uint16(0)
		if n := (boot.Node.Size + 511) / 512; n <= 0xFFFF {
			load = uint16(n)
		}
		bw.Write(bootCatalog(boot.Node.lba, load, true))
	}
	i := 0
	err := contents(func(n *Node, r io.Reader) error {
		if i >= len(order) || order[i] != n {
			return errors.New("contents out of order")
		}
		i++
		c, err := io.Copy(bw, io.LimitReader(r, n.Size))
		if err != nil {
			return err
		}
		if c != n.Size {
			return fmt.Errorf("read %d bytes, expected %d", c, n.Size)
		}
		return writeZeros(bw, (sector-n.Size%sector)%sector)
	})
	if err != nil {
		return err
	}
	if i != len(order) {
		return fmt.Errorf("contents of %d files of %d were given", i, len(order))
	}
	return bw.Flush()
}

func dirPath(d *Node) string {
	if d.parent == d || d.parent == nil {
		return ""
	}
	for _, c := range d.parent.Children {
		if c.Node == d {
			return dirPath(d.parent) + "/" + c.Name
		}
	}
	return "?"
}

func pathID(d *Node) string {
	if d.parent == d {
		return "\x00"
	}
	return d.parent.isoNames[childOf(d)]
}

func childOf(d *Node) *Child {
	for i := range d.parent.Children {
		if d.parent.Children[i].Node == d {
			return &d.parent.Children[i]
		}
	}
	return nil
}

func recLen(r record) int {
	n := 33 + len(r.id)
	if len(r.id)%2 == 0 {
		n++
	}
	n += len(r.su)
	if len(r.ce) > 0 {
		n += 28
	}
	return n + n%2
}

// uniqueName is an ISO 9660 identifier for name (a directory's has no version), unique among
// used: a clash gets a number in place of its last characters.
func uniqueName(name string, dir bool, used map[string]bool) string {
	id := isoName(name)
	if dir {
		id = strings.TrimSuffix(strings.TrimSuffix(id, ";1"), ".")
	}
	for k := 1; used[id]; k++ {
		suffix := "_" + strconv.Itoa(k)
		base, ext := id, ""
		if !dir {
			b := strings.TrimSuffix(id, ";1")
			if i := strings.LastIndexByte(b, '.'); i >= 0 {
				base, ext = b[:i], b[i:]+";1"
			}
		}
		if len(base)+len(suffix) > 30-len(ext) {
			base = base[:max(0, 30-len(ext)-len(suffix))]
		}
		id = base + suffix + ext
	}
	used[id] = true
	return id
}

func pxFull(mode, nlink, uid, gid uint32) []byte {
	var p []byte
	p = append(p, both32(mode)...)
	p = append(p, both32(nlink)...)
	p = append(p, both32(uid)...)
	p = append(p, both32(gid)...)
	return susp("PX", p)
}

// pnEntry holds device numbers as mkisofs writes them (high 0, low major<<8|minor) when they
// fit, which Linux and libisofs both read; otherwise high major and low minor, which Linux reads.
func pnEntry(major, minor uint32) []byte {
	if minor < 256 && major < 1<<12 {
		return susp("PN", append(both32(0), both32(major<<8|minor)...))
	}
	return susp("PN", append(both32(major), both32(minor)...))
}

func ceEntry(lba, off, size uint32) []byte {
	p := append(both32(lba), both32(off)...)
	return susp("CE", append(p, both32(size)...))
}

// nmEntries is the name in NM entries of at most 250 bytes each, all but the last flagged
// CONTINUE.
func nmEntries(name string) []byte {
	var out []byte
	for len(name) > 250 {
		out = append(out, susp("NM", append([]byte{1}, name[:250]...))...)
		name = name[250:]
	}
	return append(out, nmEntry(name)...)
}

// slEntries is a symbolic link's target as SL component records, split over several SL
// entries (CONTINUE flagged) when long.
func slEntries(target string) []byte {
	var comps [][]byte
	if strings.HasPrefix(target, "/") {
		comps = append(comps, []byte{8, 0}) // ROOT
		target = strings.TrimLeft(target, "/")
	}
	for _, part := range strings.Split(target, "/") {
		switch part {
		case "":
			continue
		case ".":
			comps = append(comps, []byte{2, 0})
		case "..":
			comps = append(comps, []byte{4, 0})
		default:
			for len(part) > 200 {
				comps = append(comps, append([]byte{1, 200}, part[:200]...)) // component continues
				part = part[200:]
			}
			comps = append(comps, append([]byte{0, byte(len(part))}, part...))
		}
	}
	var out []byte
	var cur []byte
	flush := func(more bool) {
		flag := byte(0)
		if more {
			flag = 1
		}
		out = append(out, susp("SL", append([]byte{flag}, cur...))...)
		cur = nil
	}
	for _, c := range comps {
		if len(cur)+len(c) > 240 {
			flush(true)
		}
		cur = append(cur, c...)
	}
	flush(false)
	return out
}
