// Package squashfs writes squashfs 4.0 file systems (the format Linux mounts read-only, and
// LinuxKit's kernel+squashfs output), reproducibly and with flat memory.
//
// go-diskfs has a squashfs writer, but it stamps the superblock with the clock and builds from a
// folder on the host, which needs root to hold device nodes and owners; this one builds from a
// tree in memory (an fstree: metadata only) and file contents handed over as streams.
//
// Data blocks are zlib ("gzip" to squashfs) compressed, or stored when that does not make them
// smaller; there are no fragments, no extended attributes and no export table; metadata blocks
// are stored uncompressed. Writing goes in two steps: AddData compresses each file's contents
// into a spool file as they come (in any order), then Finish writes the superblock, the spooled
// data and the tables to any io.Writer, front to back.
package squashfs

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/mobykit/mobykit/assembler/fstree"
)

// BlockSize is the data block size (mksquashfs's default).
const BlockSize = 128 << 10

const (
	superSize    = 96
	metaSize     = 8192
	invalid      = ^uint64(0)
	noFragment   = ^uint32(0)
	uncompressed = 1 << 24
)

// node is what Finish works out about an inode of the tree.
type node struct {
	*fstree.Inode
	number  uint32
	nlink   uint32
	parent  *node
	ext     bool
	pos     int64   // in the uncompressed inode table
	dirPos  int64   // listing in the uncompressed directory table
	dirSize int64   // bytes of that listing
	entries []child // directories: the entries sorted by name
	data    spooled // regular files
}

// child is a name in a directory.
type child struct {
	name string
	n    *node
}

// spooled is where AddData put a regular file's compressed contents.
type spooled struct {
	start  int64 // offset of the first data block in the spool
	blocks []uint32
}

// Builder collects file contents, then writes the file system.
type Builder struct {
	spool *os.File
	bw    *bufio.Writer
	size  int64
	zbuf  bytes.Buffer
	zw    *zlib.Writer
	block []byte
	data  map[*fstree.Inode]*spooled // contents given, by file
}

// NewBuilder spools compressed data in a temporary file in dir.
func NewBuilder(dir string) (*Builder, error) {
	f, err := os.CreateTemp(dir, ".squashfs-data-*")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name()) // only the open file is needed
	zw, _ := zlib.NewWriterLevel(io.Discard, zlib.DefaultCompression)
	return &Builder{spool: f, bw: bufio.NewWriterSize(f, 256<<10), zw: zw, block: make([]byte, BlockSize), data: map[*fstree.Inode]*spooled{}}, nil
}

// Close releases the spool.
func (b *Builder) Close() error { return b.spool.Close() }

// AddData reads ino.Size bytes of a regular file's contents from r and compresses them.
func (b *Builder) AddData(ino *fstree.Inode, r io.Reader) error {
	if ino.Mode&fstree.TypeMask != fstree.TypeReg {
		return errors.New("contents for an inode that is not a regular file")
	}
	if b.data[ino] != nil {
		return errors.New("contents given twice")
	}
	sp := &spooled{start: b.size}
	b.data[ino] = sp
	for left := ino.Size; left > 0; {
		n := min(left, BlockSize)
		blk := b.block[:n]
		if _, err := io.ReadFull(r, blk); err != nil {
			return fmt.Errorf("read contents: %w", err)
		}
		left -= n
		b.zbuf.Reset()
		b.zw.Reset(&b.zbuf)
		b.zw.Write(blk)
		if err := b.zw.Close(); err != nil {
			return err
		}
		out, size := b.zbuf.Bytes(), uint32(b.zbuf.Len())
		if len(out) >= len(blk) {
			out, size = blk, uint32(len(blk))|uncompressed
		}
		if _, err := b.bw.Write(out); err != nil {
			return err
		}
		b.size += int64(len(out))
		sp.blocks = append(sp.blocks, size)
	}
	return nil
}

// Finish writes the file system whose root is root, with mtime in the superblock, to w. Every
// regular file of the tree with contents (Size > 0) must have been given to AddData. The tree
// is left as it is: each directory is listed sorted by name in the image.
func (b *Builder) Finish(w io.Writer, root *fstree.Inode, mtime uint32) error {
	if err := b.bw.Flush(); err != nil {
		return err
	}
	if root == nil || root.Mode&fstree.TypeMask != fstree.TypeDir {
		return errors.New("the root is not a directory")
	}
	var order []*node
	nodes := map[*fstree.Inode]*node{}
	newNode := func(n *fstree.Inode, path string) (*node, error) {
		if n.MTime < 0 || n.MTime > math.MaxUint32 {
			return nil, fmt.Errorf("%s: mtime %d is outside squashfs's unsigned 32 bits", path, n.MTime)
		}
		nd := &node{Inode: n}
		if sp := b.data[n]; sp != nil {
			nd.data = *sp
		}
		nodes[n] = nd
		return nd, nil
	}
	var walk func(d *node, path string) error
	walk = func(d *node, path string) error {
		es := slices.Clone(d.Entries)
		slices.SortFunc(es, func(a, b fstree.Entry) int { return strings.Compare(a.Name, b.Name) })
		d.entries = make([]child, 0, len(es))
		d.nlink = 2
		for i, e := range es {
			if e.Name == "" || e.Name == "." || e.Name == ".." || strings.ContainsAny(e.Name, "/\x00") || len(e.Name) > 256 {
				return fmt.Errorf("%s: bad name %q", path, e.Name)
			}
			if i > 0 && es[i-1].Name == e.Name {
				return fmt.Errorf("%s/%s: listed twice", path, e.Name)
			}
			if e.Inode == nil {
				return fmt.Errorf("%s/%s: no inode", path, e.Name)
			}
			c := nodes[e.Inode]
			if e.Inode.Mode&fstree.TypeMask == fstree.TypeDir {
				if c != nil {
					return fmt.Errorf("%s/%s: a directory with two names", path, e.Name)
				}
				c, err := newNode(e.Inode, path+"/"+e.Name)
				if err != nil {
					return err
				}
				d.nlink++
				c.parent = d
				d.entries = append(d.entries, child{e.Name, c})
				if err := walk(c, path+"/"+e.Name); err != nil {
					return err
				}
				continue
			}
			if e.Inode.Mode&fstree.TypeMask == fstree.TypeReg && e.Inode.Size > 0 && b.data[e.Inode] == nil {
				return fmt.Errorf("%s/%s: no contents were given", path, e.Name)
			}
			if c == nil {
				var err error
				if c, err = newNode(e.Inode, path+"/"+e.Name); err != nil {
					return err
				}
				order = append(order, c)
			}
			c.nlink++
			d.entries = append(d.entries, child{e.Name, c})
		}
		order = append(order, d)
		return nil
	}
	rootNode, err := newNode(root, "/")
	if err != nil {
		return err
	}
	if err := walk(rootNode, ""); err != nil {
		return err
	}
	if len(order) > 1<<31 {
		return errors.New("too many files")
	}
	for i, n := range order {
		n.number = uint32(i + 1)
	}

	// Uids and gids.
	var ids []uint32
	idIndex := map[uint32]uint16{}
	for _, n := range order {
		for _, id := range []uint32{n.UID, n.GID} {
			if _, ok := idIndex[id]; !ok {
				if len(ids) == 1<<16 {
					return errors.New("more than 65536 distinct owners")
				}
				idIndex[id] = uint16(len(ids))
				ids = append(ids, id)
			}
		}
	}

	// Positions: inode sizes depend on whether a directory needs the extended form, which
	// depends on its listing's size, which depends on where the inodes are: iterate until
	// nothing changes (directories only ever switch to the extended form).
	for {
		var pos int64
		for _, n := range order {
			n.pos = pos
			pos += inodeSize(n)
		}
		var dpos int64
		changed := false
		for _, n := range order {
			if n.Mode&fstree.TypeMask != fstree.TypeDir {
				continue
			}
			n.dirPos = dpos
			n.dirSize = int64(len(listing(n)))
			dpos += n.dirSize
			if !n.ext && n.dirSize+3 > 0xffff {
				n.ext, changed = true, true
			}
		}
		if !changed {
			break
		}
	}

	var itab, dtab bytes.Buffer
	for _, n := range order {
		if n.Mode&fstree.TypeMask == fstree.TypeDir {
			dtab.Write(listing(n))
		}
	}
	for _, n := range order {
		if int64(itab.Len()) != n.pos {
			return fmt.Errorf("internal error: inode %d at %d, planned %d", n.number, itab.Len(), n.pos)
		}
		writeInode(&itab, n, idIndex, uint32(len(order)))
	}

	dataStart := int64(superSize)
	inodeStart := dataStart + b.size
	inodeMeta := metaBlocks(itab.Bytes())
	dirStart := inodeStart + int64(len(inodeMeta))
	dirMeta := metaBlocks(dtab.Bytes())
	idMetaStart := dirStart + int64(len(dirMeta))
	idBytes := make([]byte, 4*len(ids))
	for i, id := range ids {
		binary.LittleEndian.PutUint32(idBytes[4*i:], id)
	}
	idMeta := metaBlocks(idBytes)
	idIndexStart := idMetaStart + int64(len(idMeta))
	var idIdx []byte
	for off := int64(0); off < int64(len(idMeta)); off += metaSize + 2 {
		idIdx = binary.LittleEndian.AppendUint64(idIdx, uint64(idMetaStart+off))
	}
	bytesUsed := idIndexStart + int64(len(idIdx))

	sb := make([]byte, superSize)
	le := binary.LittleEndian
	le.PutUint32(sb[0:], 0x73717368)
	le.PutUint32(sb[4:], uint32(len(order)))
	le.PutUint32(sb[8:], mtime)
	le.PutUint32(sb[12:], BlockSize)
	le.PutUint32(sb[16:], 0)  // fragments
	le.PutUint16(sb[20:], 1)  // gzip (zlib)
	le.PutUint16(sb[22:], 17) // log2(BlockSize)
	le.PutUint16(sb[24:], 0x1|0x8|0x10|0x200|0x800)
	le.PutUint16(sb[26:], uint16(len(ids)))
	le.PutUint16(sb[28:], 4)
	le.PutUint16(sb[30:], 0)
	le.PutUint64(sb[32:], inodeRef(rootNode))
	le.PutUint64(sb[40:], uint64(bytesUsed))
	le.PutUint64(sb[48:], uint64(idIndexStart))
	le.PutUint64(sb[56:], invalid) // xattrs
	le.PutUint64(sb[64:], uint64(inodeStart))
	le.PutUint64(sb[72:], uint64(dirStart))
	le.PutUint64(sb[80:], invalid) // fragments
	le.PutUint64(sb[88:], invalid) // export

	bw := bufio.NewWriterSize(w, 256<<10)
	bw.Write(sb)
	if _, err := b.spool.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if n, err := io.Copy(bw, b.spool); err != nil || n != b.size {
		return fmt.Errorf("copy data: %d of %d bytes: %v", n, b.size, err)
	}
	for _, part := range [][]byte{inodeMeta, dirMeta, idMeta, idIdx} {
		if _, err := bw.Write(part); err != nil {
			return err
		}
	}
	if pad := bytesUsed % 4096; pad != 0 {
		bw.Write(make([]byte, 4096-pad))
	}
	return bw.Flush()
}

// Size of an inode in the table.
func inodeSize(n *node) int64 {
	switch n.Mode & fstree.TypeMask {
	case fstree.TypeDir:
		if n.ext {
			return 40
		}
		return 32
	case fstree.TypeReg:
		if needsExtFile(n) {
			return 56 + 4*int64(len(n.data.blocks))
		}
		return 32 + 4*int64(len(n.data.blocks))
	case fstree.TypeSymlink:
		return 24 + int64(len(n.Target))
	case fstree.TypeChar, fstree.TypeBlock:
		return 24
	default:
		return 20
	}
}

func needsExtFile(n *node) bool {
	return n.nlink > 1 || n.Size >= 1<<32 || superSize+n.data.start >= 1<<32
}

// inodeRef is where an inode is: its metadata block's offset from the table start, and the
// offset in that block. Metadata blocks are stored uncompressed, metaSize+2 bytes each.
func inodeRef(n *node) uint64 {
	return uint64(n.pos/metaSize*(metaSize+2))<<16 | uint64(n.pos%metaSize)
}

func basicType(n *node) uint16 {
	switch n.Mode & fstree.TypeMask {
	case fstree.TypeDir:
		return 1
	case fstree.TypeReg:
		return 2
	case fstree.TypeSymlink:
		return 3
	case fstree.TypeBlock:
		return 4
	case fstree.TypeChar:
		return 5
	case fstree.TypeFifo:
		return 6
	default:
		return 7
	}
}

// listing is a directory's entries: runs of at most 256 entries whose inodes share a metadata
// block and lie within ±32767 inode numbers of the run's header.
func listing(d *node) []byte {
	var out []byte
	le := binary.LittleEndian
	for i := 0; i < len(d.entries); {
		first := d.entries[i].n
		block := first.pos / metaSize
		j := i
		for j < len(d.entries) && j-i < 256 {
			c := d.entries[j].n
			diff := int64(c.number) - int64(first.number)
			if c.pos/metaSize != block || diff > 32767 || diff < -32768 {
				break
			}
			j++
		}
		out = le.AppendUint32(out, uint32(j-i-1))
		out = le.AppendUint32(out, uint32(block*(metaSize+2)))
		out = le.AppendUint32(out, first.number)
		for _, e := range d.entries[i:j] {
			c := e.n
			out = le.AppendUint16(out, uint16(c.pos%metaSize))
			out = le.AppendUint16(out, uint16(int16(int64(c.number)-int64(first.number))))
			out = le.AppendUint16(out, basicType(c))
			out = le.AppendUint16(out, uint16(len(e.name)-1))
			out = append(out, e.name...)
		}
		i = j
	}
	return out
}

func writeInode(buf *bytes.Buffer, n *node, ids map[uint32]uint16, count uint32) {
	le := binary.LittleEndian
	var b []byte
	typ := basicType(n)
	switch {
	case n.Mode&fstree.TypeMask == fstree.TypeDir && n.ext:
		typ = 8
	case n.Mode&fstree.TypeMask == fstree.TypeReg && needsExtFile(n):
		typ = 9
	}
	b = le.AppendUint16(b, typ)
	b = le.AppendUint16(b, uint16(n.Mode&0o7777))
	b = le.AppendUint16(b, ids[n.UID])
	b = le.AppendUint16(b, ids[n.GID])
	b = le.AppendUint32(b, uint32(n.MTime))
	b = le.AppendUint32(b, n.number)
	parent := count + 1 // the root's parent, as mksquashfs writes it
	if n.parent != nil {
		parent = n.parent.number
	}
	dirBlock := uint32(n.dirPos / metaSize * (metaSize + 2))
	dirOff := uint16(n.dirPos % metaSize)
	switch typ {
	case 1:
		b = le.AppendUint32(b, dirBlock)
		b = le.AppendUint32(b, n.nlink)
		b = le.AppendUint16(b, uint16(n.dirSize+3))
		b = le.AppendUint16(b, dirOff)
		b = le.AppendUint32(b, parent)
	case 8:
		b = le.AppendUint32(b, n.nlink)
		b = le.AppendUint32(b, uint32(n.dirSize+3))
		b = le.AppendUint32(b, dirBlock)
		b = le.AppendUint32(b, parent)
		b = le.AppendUint16(b, 0) // no index
		b = le.AppendUint16(b, dirOff)
		b = le.AppendUint32(b, noFragment) // no xattrs
	case 2:
		b = le.AppendUint32(b, uint32(superSize+n.data.start))
		b = le.AppendUint32(b, noFragment)
		b = le.AppendUint32(b, 0)
		b = le.AppendUint32(b, uint32(n.Size))
		for _, s := range n.data.blocks {
			b = le.AppendUint32(b, s)
		}
	case 9:
		b = le.AppendUint64(b, uint64(superSize+n.data.start))
		b = le.AppendUint64(b, uint64(n.Size))
		b = le.AppendUint64(b, 0) // sparse bytes
		b = le.AppendUint32(b, n.nlink)
		b = le.AppendUint32(b, noFragment)
		b = le.AppendUint32(b, 0)
		b = le.AppendUint32(b, noFragment) // no xattrs
		for _, s := range n.data.blocks {
			b = le.AppendUint32(b, s)
		}
	case 3:
		b = le.AppendUint32(b, n.nlink)
		b = le.AppendUint32(b, uint32(len(n.Target)))
		b = append(b, n.Target...)
	case 4, 5:
		b = le.AppendUint32(b, n.nlink)
		b = le.AppendUint32(b, encodeDev(n.DevMajor, n.DevMinor))
	default:
		b = le.AppendUint32(b, n.nlink)
	}
	buf.Write(b)
}

// encodeDev packs device numbers as mksquashfs does and Linux's new_decode_dev reads them.
func encodeDev(major, minor uint32) uint32 {
	return minor&0xff | (major&0xfff)<<8 | (minor&^0xff)<<12
}

// metaBlocks splits a table into stored (uncompressed) metadata blocks.
func metaBlocks(data []byte) []byte {
	var out []byte
	for len(data) > 0 {
		n := min(len(data), metaSize)
		out = binary.LittleEndian.AppendUint16(out, uint16(n)|0x8000)
		out = append(out, data[:n]...)
		data = data[n:]
	}
	return out
}
