// Package erofs writes uncompressed EROFS file systems (the read-only file system Linux has
// mounted since 5.4, and LinuxKit's kernel+erofs output), reproducibly and with flat memory.
//
// No well-kept Go library writes EROFS (erofs-utils' mkfs.erofs is C and builds from a folder
// on the host, which needs root to hold device nodes and owners). This one builds from a tree in
// memory (an fstree: metadata only) and file contents handed over as streams, in an order fixed
// up front, so the whole image is written front to back in one pass with nothing spooled:
//
//	block 0            superblock at byte 1024
//	blocks 1..M        metadata: 64-byte extended inodes (one per file, hard links share one),
//	                   each folder's and symlink's last partial block inline after its inode
//	                   when it fits in the same block ("flat inline"), else "flat plain"
//	blocks M+1..       full blocks of folders and symlinks, then the regular files' contents in
//	                   the order given to Plan, each from a block boundary ("flat plain")
//
// There is no compression, no extended attribute, no chunk index and no superblock checksum
// (all optional features). The block size is 4096. The volume UUID is derived from the tree's
// metadata, the build time is the one given: two builds of one tree give the same bytes.
package erofs

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/mobykit/mobykit/assembler/fstree"
)

// Limits of the format (and of what Linux accepts).
const (
	BlockSize  = 4096
	MaxName    = 255  // EROFS_NAME_LEN
	MaxSymlink = 4095 // PATH_MAX less the NUL
	maxBlocks  = 1<<32 - 1
)

const (
	magic        = 0xE0F5E1E2
	superOffset  = 1024
	blkBits      = 12
	inodeSize    = 64 // extended inode: 32-bit owners and a per-file mtime
	slotSize     = 32 // nids count 32-byte slots from the start of the metadata
	metaBlkAddr  = 1
	direntSize   = 12
	layoutPlain  = 0 // EROFS_INODE_FLAT_PLAIN
	layoutInline = 2 // EROFS_INODE_FLAT_INLINE
)

// node is what Plan works out about an inode of the tree.
type node struct {
	*fstree.Inode
	nid     uint64
	ino     uint32
	nlink   uint32
	layout  uint16
	blkaddr uint32
	size    uint64    // i_size
	tail    int       // bytes inline after the inode
	blocks  [][]entry // folders: the sorted listing cut into blocks
}

type entry struct {
	name string
	ino  *node
}

// Image is a planned file system: every address is known, nothing is written yet.
type Image struct {
	root   *node
	mtime  int64
	nodes  map[*fstree.Inode]*node
	inodes []*node // in metadata order, root first
	files  []*node // regular files with contents, in data order
	meta   int64   // bytes of metadata
	data   uint32  // first block after the metadata
	blocks uint32  // total
	uuid   [16]byte
}

// Plan lays out the tree under root. files lists every regular file with contents (Size > 0)
// exactly once, in the order Write will be given their contents; mtime is the superblock's
// build time. Bad trees (a name that is empty, too long or holds '/' or NUL, a name twice in a
// folder, a folder reached twice, a symlink target empty or too long) are refused with the
// path at fault. The tree is left as it is.
func Plan(root *fstree.Inode, files []*fstree.Inode, mtime int64) (*Image, error) {
	if root == nil || root.Mode&fstree.TypeMask != fstree.TypeDir {
		return nil, errors.New("erofs: the root is not a folder")
	}
	im := &Image{root: &node{Inode: root}, mtime: mtime}
	im.nodes = map[*fstree.Inode]*node{root: im.root}
	if err := im.collect(); err != nil {
		return nil, err
	}
	if err := im.checkFiles(files); err != nil {
		return nil, err
	}
	im.placeMeta()
	if err := im.placeData(); err != nil {
		return nil, err
	}
	return im, nil
}

// Size is the size in bytes of the image.
func (im *Image) Size() int64 { return int64(im.blocks) * BlockSize }

// collect walks the tree root first, breadth first, numbering inodes and counting links, and
// lays out each folder's listing.
func (im *Image) collect() error {
	parent := map[*node]*node{im.root: im.root}
	paths := map[*node]string{im.root: "/"}
	h := sha256.New()
	queue := []*node{im.root}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		im.inodes = append(im.inodes, n)
		if len(im.inodes) > 1<<32-2 {
			return errors.New("erofs: more than 2^32 files")
		}
		n.ino = uint32(len(im.inodes))
		fmt.Fprintf(h, "%d %o %d %d %d %d %q %d %d\n", n.ino, n.Mode, n.UID, n.GID, n.MTime, n.Size, n.Target, n.DevMajor, n.DevMinor)
		p := paths[n]
		switch n.Mode & fstree.TypeMask {
		case fstree.TypeDir:
			n.nlink = 2
			names := make(map[string]bool, len(n.Entries))
			for _, e := range n.Entries {
				child := p + e.Name
				if err := checkName(e.Name); err != nil {
					return fmt.Errorf("erofs: %q: %w", child, err)
				}
				if names[e.Name] {
					return fmt.Errorf("erofs: %q: name twice in its folder", child)
				}
				names[e.Name] = true
				if e.Inode == nil {
					return fmt.Errorf("erofs: %q: no inode", child)
				}
				fmt.Fprintf(h, "%q\n", e.Name)
				c, seen := im.nodes[e.Inode]
				if e.Inode.Mode&fstree.TypeMask == fstree.TypeDir {
					if seen {
						return fmt.Errorf("erofs: %q: folder reached twice (a folder cannot be hard linked)", child)
					}
					c = &node{Inode: e.Inode}
					n.nlink++
					parent[c] = n
					paths[c] = child + "/"
				} else if seen {
					c.nlink++
					continue
				} else {
					c = &node{Inode: e.Inode, nlink: 1}
					paths[c] = child
				}
				im.nodes[e.Inode] = c
				queue = append(queue, c)
			}
			im.listing(n, parent[n])
		case fstree.TypeSymlink:
			if n.Target == "" || len(n.Target) > MaxSymlink || strings.IndexByte(n.Target, 0) >= 0 {
				return fmt.Errorf("erofs: %q: symlink target empty, longer than %d bytes or holding NUL", p, MaxSymlink)
			}
			n.size = uint64(len(n.Target))
		case fstree.TypeReg:
			if n.Size < 0 {
				return fmt.Errorf("erofs: %q: negative size", p)
			}
			n.size = uint64(n.Size)
		case fstree.TypeChar, fstree.TypeBlock, fstree.TypeFifo, fstree.TypeSocket:
		default:
			return fmt.Errorf("erofs: %q: unsupported mode %o", p, n.Mode)
		}
	}
	copy(im.uuid[:], h.Sum(nil))
	im.uuid[6] = im.uuid[6]&0x0f | 0x50 // name-based
	im.uuid[8] = im.uuid[8]&0x3f | 0x80
	return nil
}

func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return errors.New("empty, . or .. as a name")
	case len(name) > MaxName:
		return fmt.Errorf("name longer than %d bytes", MaxName)
	case strings.ContainsAny(name, "/\x00"):
		return errors.New("name holding / or NUL")
	}
	return nil
}

// listing sorts a folder's names with . and .. (byte order: Linux looks names up by binary
// search) and cuts them into blocks, each holding its dirents then its names.
func (im *Image) listing(d, parent *node) {
	es := make([]entry, 0, len(d.Entries)+2)
	es = append(es, entry{".", d}, entry{"..", parent})
	for _, e := range d.Entries {
		es = append(es, entry{e.Name, im.nodes[e.Inode]})
	}
	slices.SortFunc(es, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	d.blocks = d.blocks[:0]
	var cur []entry
	used := 0
	for _, e := range es {
		if used+direntSize+len(e.name) > BlockSize {
			d.blocks = append(d.blocks, cur)
			cur, used = nil, 0
		}
		cur = append(cur, e)
		used += direntSize + len(e.name)
	}
	d.blocks = append(d.blocks, cur)
	d.size = uint64(len(d.blocks)-1)*BlockSize + uint64(used)
}

func (im *Image) checkFiles(files []*fstree.Inode) error {
	want := 0
	for _, n := range im.inodes {
		if n.Mode&fstree.TypeMask == fstree.TypeReg && n.Size > 0 {
			want++
		}
	}
	in := map[*node]bool{}
	im.files = make([]*node, 0, len(files))
	for _, f := range files {
		n := im.nodes[f]
		if f == nil || n == nil || f.Mode&fstree.TypeMask != fstree.TypeReg || f.Size == 0 {
			return errors.New("erofs: the list of files holds one that is not a non-empty regular file of the tree")
		}
		if in[n] {
			return errors.New("erofs: the list of files holds one twice")
		}
		in[n] = true
		im.files = append(im.files, n)
	}
	if len(files) != want {
		return fmt.Errorf("erofs: the list of files has %d files, the tree %d with contents", len(files), want)
	}
	return nil
}

// placeMeta gives every inode its slot. An inode never straddles a block; a folder's or
// symlink's last partial block goes inline after it when it fits in the rest of the block.
func (im *Image) placeMeta() {
	var pos int64
	for _, n := range im.inodes {
		if pos%BlockSize+inodeSize > BlockSize {
			pos = roundUp(pos, BlockSize)
		}
		n.layout, n.tail = layoutPlain, 0
		if t := int(n.size % BlockSize); t > 0 && n.Mode&fstree.TypeMask != fstree.TypeReg && n.Mode&fstree.TypeMask != fstree.TypeChar && n.Mode&fstree.TypeMask != fstree.TypeBlock {
			if pos%BlockSize+inodeSize+int64(t) <= BlockSize {
				n.layout, n.tail = layoutInline, t
			}
		}
		n.nid = uint64(pos / slotSize)
		pos = roundUp(pos+inodeSize+int64(n.tail), slotSize)
	}
	im.meta = pos
}

// placeData gives folders, symlinks and regular files their first block.
func (im *Image) placeData() error {
	next := uint64(metaBlkAddr) + uint64(roundUp(im.meta, BlockSize)/BlockSize)
	im.data = uint32(next)
	take := func(n *node, bytes uint64) {
		n.blkaddr = 0
		if nb := (bytes + BlockSize - 1) / BlockSize; nb > 0 {
			n.blkaddr = uint32(min(next, maxBlocks))
			next += nb
		}
	}
	for _, n := range im.inodes {
		switch n.Mode & fstree.TypeMask {
		case fstree.TypeDir, fstree.TypeSymlink:
			take(n, n.size-uint64(n.tail))
		}
	}
	for _, f := range im.files {
		take(f, f.size)
	}
	if next > maxBlocks {
		return fmt.Errorf("erofs: the image needs %d blocks of %d bytes, more than the format's %d", next, BlockSize, uint64(maxBlocks))
	}
	im.blocks = uint32(next)
	return nil
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// Write writes the image to w front to back. contents is called once with add, which it must
// call for every file given to Plan, in that order, with a reader of its Size bytes.
func (im *Image) Write(w io.Writer, contents func(add func(*fstree.Inode, io.Reader) error) error) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	cw := &countWriter{w: bw}
	if err := im.writeMeta(cw); err != nil {
		return err
	}
	next := 0
	pad := make([]byte, BlockSize)
	err := contents(func(f *fstree.Inode, r io.Reader) error {
		if next >= len(im.files) || im.files[next].Inode != f {
			return errors.New("erofs: contents given out of the planned order")
		}
		n := im.files[next]
		next++
		if got := cw.n; got != int64(n.blkaddr)*BlockSize {
			return fmt.Errorf("erofs: internal: file at byte %d, planned at block %d", got, n.blkaddr)
		}
		c, err := io.CopyN(cw, r, n.Size)
		if err != nil {
			return fmt.Errorf("read contents (%d of %d bytes): %w", c, n.Size, err)
		}
		_, err = cw.Write(pad[:roundUp(n.Size, BlockSize)-n.Size])
		return err
	})
	if err != nil {
		return err
	}
	if next != len(im.files) {
		return fmt.Errorf("erofs: contents of %d of %d files given", next, len(im.files))
	}
	if cw.n != im.Size() {
		return fmt.Errorf("erofs: internal: wrote %d bytes, planned %d", cw.n, im.Size())
	}
	return bw.Flush()
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

func (im *Image) writeMeta(w *countWriter) error {
	sb := make([]byte, BlockSize)
	s := sb[superOffset:]
	le := binary.LittleEndian
	le.PutUint32(s[0:], magic)
	s[12] = blkBits
	le.PutUint16(s[14:], uint16(im.root.nid)) // root is nid 0
	le.PutUint64(s[16:], uint64(len(im.inodes)))
	le.PutUint64(s[24:], uint64(im.mtime))
	le.PutUint32(s[36:], im.blocks)
	le.PutUint32(s[40:], metaBlkAddr)
	copy(s[48:64], im.uuid[:])
	if _, err := w.Write(sb); err != nil {
		return err
	}
	var ib [inodeSize]byte
	var blk bytes.Buffer
	zero := make([]byte, BlockSize)
	start := int64(metaBlkAddr) * BlockSize
	for _, n := range im.inodes {
		if gap := start + int64(n.nid)*slotSize - w.n; gap > 0 {
			w.Write(zero[:gap])
		}
		im.encodeInode(ib[:], n)
		w.Write(ib[:])
		if n.tail > 0 {
			blk.Reset()
			im.tailBytes(&blk, n)
			if _, err := w.Write(blk.Bytes()); err != nil {
				return err
			}
		}
	}
	if gap := int64(im.data)*BlockSize - w.n; gap > 0 {
		w.Write(zero[:gap])
	}
	// full blocks of folders and symlinks, in inode order as placed
	for _, n := range im.inodes {
		switch n.Mode & fstree.TypeMask {
		case fstree.TypeDir:
			full := len(n.blocks)
			if n.tail > 0 {
				full--
			}
			for i := range full {
				blk.Reset()
				encodeDirBlock(&blk, n.blocks[i])
				blk.Write(zero[:roundUp(int64(blk.Len()), BlockSize)-int64(blk.Len())])
				w.Write(blk.Bytes())
			}
		case fstree.TypeSymlink:
			if n.tail == 0 {
				w.Write([]byte(n.Target))
				w.Write(zero[:roundUp(int64(len(n.Target)), BlockSize)-int64(len(n.Target))])
			}
		}
	}
	_, err := w.Write(nil)
	return err
}

// tailBytes writes the inline part of a folder or symlink.
func (im *Image) tailBytes(b *bytes.Buffer, n *node) {
	if n.Mode&fstree.TypeMask == fstree.TypeSymlink {
		b.WriteString(n.Target) // a symlink with a tail is shorter than a block
		return
	}
	encodeDirBlock(b, n.blocks[len(n.blocks)-1])
}

func encodeDirBlock(b *bytes.Buffer, es []entry) {
	var d [direntSize]byte
	off := direntSize * len(es)
	for _, e := range es {
		binary.LittleEndian.PutUint64(d[0:], e.ino.nid)
		binary.LittleEndian.PutUint16(d[8:], uint16(off))
		d[10] = fileType(e.ino.Mode)
		d[11] = 0
		b.Write(d[:])
		off += len(e.name)
	}
	for _, e := range es {
		b.WriteString(e.name)
	}
}

func fileType(mode uint32) byte {
	switch mode & fstree.TypeMask {
	case fstree.TypeReg:
		return 1
	case fstree.TypeDir:
		return 2
	case fstree.TypeChar:
		return 3
	case fstree.TypeBlock:
		return 4
	case fstree.TypeFifo:
		return 5
	case fstree.TypeSocket:
		return 6
	case fstree.TypeSymlink:
		return 7
	}
	return 0
}

func (im *Image) encodeInode(b []byte, n *node) {
	clear(b)
	le := binary.LittleEndian
	le.PutUint16(b[0:], 1|n.layout<<1) // extended inode
	le.PutUint16(b[4:], uint16(n.Mode))
	le.PutUint64(b[8:], n.size)
	switch n.Mode & fstree.TypeMask {
	case fstree.TypeChar, fstree.TypeBlock:
		le.PutUint32(b[16:], n.DevMinor&0xff|n.DevMajor<<8|(n.DevMinor&^0xff)<<12)
	case fstree.TypeDir, fstree.TypeSymlink, fstree.TypeReg:
		le.PutUint32(b[16:], n.blkaddr)
	}
	le.PutUint32(b[20:], n.ino)
	le.PutUint32(b[24:], n.UID)
	le.PutUint32(b[28:], n.GID)
	le.PutUint64(b[32:], uint64(n.MTime))
	le.PutUint32(b[44:], n.nlink)
}
