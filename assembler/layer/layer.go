package layer

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/mobykit/mobykit/assembler/fstree"
)

// ErrUnsafe is wrapped by every error about an entry that would land
// outside the root.
var ErrUnsafe = errors.New("entry would escape the root")

// ErrLimit is wrapped by every error about a layer that exceeds Limits.
var ErrLimit = errors.New("layer exceeds a limit")

// MaxNameLen is the longest entry name or symlink target accepted: the
// kernel's PATH_MAX (4096) less the terminating NUL. The initramfs
// unpacker silently skips longer names.
const MaxNameLen = 4095

// Default limits (see Limits).
const (
	DefaultMaxEntries   = 1 << 20
	DefaultMaxNameBytes = 128 << 20
)

// Limits bound the memory and time a hostile image can cost. They count
// over every layer applied to one FS; zero fields take the defaults.
type Limits struct {
	// MaxEntries bounds the tar entries read (whiteouts, replaced and
	// ignored entries included); default DefaultMaxEntries.
	MaxEntries int
	// MaxNameBytes bounds the sum of the lengths of the entry names and
	// symlink targets read; default DefaultMaxNameBytes.
	MaxNameBytes int64
}

func (l Limits) withDefaults() Limits {
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	if l.MaxNameBytes <= 0 {
		l.MaxNameBytes = DefaultMaxNameBytes
	}
	return l
}

const (
	whPrefix = ".wh."
	whOpaque = ".wh..wh..opq"
)

// Data says where a regular file's content lives.
type Data struct {
	R    io.ReaderAt
	Off  int64
	Size int64
}

// Reader returns a reader of the content.
func (d Data) Reader() io.Reader { return io.NewSectionReader(d.R, d.Off, d.Size) }

// Object is the inode of a regular file; hard links share one Object.
type Object struct {
	Data Data
}

// Node is one entry of the flattened tree.
type Node struct {
	// Name is the cleaned path relative to the root, never "" or ".".
	Name string
	// Mode is the st_mode: type bits and permission bits.
	Mode     uint32
	UID, GID uint32
	// Linkname is a symlink's target.
	Linkname           string
	DevMajor, DevMinor uint32
	// Obj is set for regular files; hard links share it.
	Obj *Object
}

// IsDir reports whether n is a directory.
func (n *Node) IsDir() bool { return n.Mode&fstree.TypeMask == fstree.TypeDir }

// Size is the content size of a regular file.
func (n *Node) Size() int64 {
	if n.Obj == nil {
		return 0
	}
	return n.Obj.Data.Size
}

// dirent is one path of the tree. node is nil for a directory that exists
// only because something below it does (its entry comes from
// AddMissingParents). Only a directory (or such an implied one) has kids:
// nothing is ever recorded below a symlink or any other non-directory.
type dirent struct {
	node *Node
	kids map[string]*dirent
}

// FS is a file tree built by applying layers.
type FS struct {
	root    dirent
	count   int // nodes
	limits  Limits
	entries int   // tar entries read, for limits.MaxEntries
	names   int64 // name bytes read, for limits.MaxNameBytes
}

// New returns an empty tree with the default Limits.
func New() *FS { return NewWithLimits(Limits{}) }

// NewWithLimits returns an empty tree that refuses layers beyond l.
func NewWithLimits(l Limits) *FS { return &FS{limits: l.withDefaults()} }

// components calls fn for each component of a cleaned relative name, with
// last set for the final one.
func components(name string, fn func(c string, last bool) bool) {
	for {
		i := strings.IndexByte(name, '/')
		if i < 0 {
			fn(name, true)
			return
		}
		if !fn(name[:i], false) {
			return
		}
		name = name[i+1:]
	}
}

// lookup returns the dirent at name, or nil.
func (f *FS) lookup(name string) *dirent {
	if name == "" {
		return &f.root
	}
	d := &f.root
	components(name, func(c string, _ bool) bool {
		d = d.kids[c]
		return d != nil
	})
	return d
}

// Get returns the node at name (cleaned, relative), or nil.
func (f *FS) Get(name string) *Node {
	if d := f.lookup(name); d != nil {
		return d.node
	}
	return nil
}

// Len is the number of nodes.
func (f *FS) Len() int { return f.count }

// parentsErr is the error for a name one of whose parents is not a
// directory; nil when every existing parent is one.
func (f *FS) parentsErr(name string) error {
	d := &f.root
	var err error
	at := 0
	components(name, func(c string, last bool) bool {
		if last {
			return false
		}
		at += len(c) + 1
		if d = d.kids[c]; d == nil {
			return false
		}
		err = notDir(name[:at-1], d.node)
		return err == nil
	})
	return err
}

func notDir(name string, n *Node) error {
	switch {
	case n == nil || n.IsDir():
		return nil
	case n.Mode&fstree.TypeMask == fstree.TypeSymlink:
		return fmt.Errorf("parent %q is a symlink: %w", name, ErrUnsafe)
	default:
		return fmt.Errorf("parent %q is not a directory", name)
	}
}

// put records n at n.Name. A later entry replaces an earlier one at the
// same path; a non-directory replacing a directory drops everything below
// it. It refuses a name with a symlink or other non-directory among its
// parents (the kernel would follow the symlink when unpacking).
func (f *FS) put(n *Node) error {
	d := &f.root
	var err error
	at := 0
	components(n.Name, func(c string, last bool) bool {
		at += len(c) + 1
		k := d.kids[c]
		if k == nil {
			k = &dirent{}
			if d.kids == nil {
				d.kids = map[string]*dirent{}
			}
			d.kids[c] = k
		} else if !last {
			if err = notDir(n.Name[:at-1], k.node); err != nil {
				return false
			}
		}
		d = k
		return true
	})
	if err != nil {
		return err
	}
	if !n.IsDir() {
		f.count -= countNodes(d.kids)
		d.kids = nil
	}
	if d.node == nil {
		f.count++
	}
	d.node = n
	return nil
}

// Put adds or replaces a node (used for generated entries), with the
// same rules as a layer's entries: a non-directory replaces the whole
// subtree at its path, and a name below a symlink or another
// non-directory is refused.
func (f *FS) Put(n *Node) error {
	name, err := CleanName(n.Name)
	if err != nil || name == "" || name != n.Name {
		return fmt.Errorf("put %q: not a clean relative name: %w", n.Name, ErrUnsafe)
	}
	if err := f.put(n); err != nil {
		return fmt.Errorf("put %q: %w", n.Name, err)
	}
	return nil
}

func countNodes(kids map[string]*dirent) int {
	c := 0
	for _, k := range kids {
		if k.node != nil {
			c++
		}
		c += countNodes(k.kids)
	}
	return c
}

// Remove deletes name and, for a directory, everything under it.
func (f *FS) Remove(name string) {
	if name == "" {
		return
	}
	dir := path.Dir(name)
	if dir == "." {
		dir = ""
	}
	parent := f.lookup(dir)
	if parent == nil {
		return
	}
	base := path.Base(name)
	d := parent.kids[base]
	if d == nil {
		return
	}
	if d.node != nil {
		f.count--
	}
	f.count -= countNodes(d.kids)
	delete(parent.kids, base)
}

// removeKids deletes everything below dir (an opaque whiteout).
func (f *FS) removeKids(dir string) {
	d := f.lookup(dir)
	if d == nil {
		return
	}
	f.count -= countNodes(d.kids)
	d.kids = nil
}

// Nodes returns every node sorted by name, component by component, so a
// parent directory always comes before its children ("a/b" sorts before
// "a-b", which plain string order would not do).
func (f *FS) Nodes() []*Node {
	out := make([]*Node, 0, f.count)
	var walk func(d *dirent)
	walk = func(d *dirent) {
		if d.node != nil {
			out = append(out, d.node)
		}
		names := make([]string, 0, len(d.kids))
		for c := range d.kids {
			names = append(names, c)
		}
		sort.Strings(names)
		for _, c := range names {
			walk(d.kids[c])
		}
	}
	walk(&f.root)
	return out
}

// CleanName validates an archive entry name and returns it cleaned and
// relative ("./etc/" → "etc"). "" means the root itself.
func CleanName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("absolute name: %w", ErrUnsafe)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("NUL in name: %w", ErrUnsafe)
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("\"..\" in name: %w", ErrUnsafe)
		}
	}
	c := path.Clean(name)
	if c == "." {
		return "", nil
	}
	return c, nil
}

// symlinkEscapes reports whether a relative symlink at name pointing at
// target climbs above the root.
func symlinkEscapes(name, target string) bool {
	if strings.HasPrefix(target, "/") {
		return false
	}
	depth := strings.Count(name, "/") // directories above the link
	for _, c := range strings.Split(target, "/") {
		switch c {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

// Apply adds one uncompressed layer tar, read from r (size bytes), on top of
// the tree. source names the layer in errors ("image alpine:3.20 layer 2").
//
// The layer is read twice. The first pass reads only headers: it checks
// the limits and applies the whiteouts, which by the OCI rules hide only
// what lower layers put there, wherever they stand in the tar. The second
// pass applies the other entries in order, a later one replacing an
// earlier one at the same path.
func (f *FS) Apply(source string, r io.ReaderAt, size int64) error {
	err := f.scan(r, size, func(hdr *tar.Header, _ Data) error {
		f.entries++
		if f.entries > f.limits.MaxEntries {
			return fmt.Errorf("more than %d entries: %w", f.limits.MaxEntries, ErrLimit)
		}
		f.names += int64(len(hdr.Name) + len(hdr.Linkname))
		if f.names > f.limits.MaxNameBytes {
			return fmt.Errorf("names longer than %d bytes in all: %w", f.limits.MaxNameBytes, ErrLimit)
		}
		return f.whiteout(hdr)
	})
	if err == nil {
		err = f.scan(r, size, f.apply)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	return nil
}

// scan calls fn for every entry of the tar in r.
func (f *FS) scan(r io.ReaderAt, size int64, fn func(*tar.Header, Data) error) error {
	sr := io.NewSectionReader(r, 0, size)
	tr := tar.NewReader(sr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		off, _ := sr.Seek(0, io.SeekCurrent)
		if isSparse(hdr) {
			// The tar holds the data without its holes; a Node can only
			// point at content stored whole.
			return fmt.Errorf("entry %q: sparse files are not supported", hdr.Name)
		}
		if hdr.Size < 0 || hdr.Size > size-off {
			return fmt.Errorf("entry %q: declared size %d runs past the end of the layer", hdr.Name, hdr.Size)
		}
		if err := fn(hdr, Data{R: r, Off: off, Size: hdr.Size}); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
}

// isSparse reports whether hdr is a GNU sparse file, in the old GNU
// format or any of the PAX ones.
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// entryName validates and cleans an entry's name.
func entryName(hdr *tar.Header) (string, error) {
	if len(hdr.Name) > MaxNameLen {
		return "", fmt.Errorf("name longer than %d bytes: %w", MaxNameLen, ErrLimit)
	}
	return CleanName(hdr.Name)
}

// whiteout applies hdr to the tree if it is a whiteout (first pass).
func (f *FS) whiteout(hdr *tar.Header) error {
	name, err := entryName(hdr)
	if err != nil {
		return err
	}
	base := path.Base(name)
	if name == "" || !strings.HasPrefix(base, whPrefix) {
		return nil
	}
	dir := path.Dir(name)
	if dir == "." {
		dir = ""
	}
	if base == whOpaque {
		f.removeKids(dir)
		return nil
	}
	victim := base[len(whPrefix):]
	if victim == "" || victim == "." || victim == ".." {
		return fmt.Errorf("bad whiteout: %w", ErrUnsafe)
	}
	f.Remove(path.Join(dir, victim))
	return nil
}

// apply applies one entry that is not a whiteout (second pass); a
// whiteout is only checked again, against the tree as it now stands.
func (f *FS) apply(hdr *tar.Header, data Data) error {
	name, err := entryName(hdr)
	if err != nil {
		return err
	}
	if name == "" {
		return nil // the root directory itself
	}
	if strings.HasPrefix(path.Base(name), whPrefix) {
		return f.parentsErr(name)
	}
	n := &Node{Name: name, UID: uint32(hdr.Uid), GID: uint32(hdr.Gid)}
	perm := uint32(hdr.Mode) & 0o7777
	switch hdr.Typeflag {
	case tar.TypeDir:
		n.Mode = fstree.TypeDir | perm
	case tar.TypeReg: // archive/tar reports the old TypeRegA ('\x00') as TypeReg
		n.Mode = fstree.TypeReg | perm
		n.Obj = &Object{Data: data}
	case tar.TypeSymlink:
		if hdr.Linkname == "" || strings.IndexByte(hdr.Linkname, 0) >= 0 {
			return fmt.Errorf("bad symlink target %q: %w", hdr.Linkname, ErrUnsafe)
		}
		if len(hdr.Linkname) > MaxNameLen {
			return fmt.Errorf("symlink target longer than %d bytes: %w", MaxNameLen, ErrLimit)
		}
		if symlinkEscapes(name, hdr.Linkname) {
			return fmt.Errorf("symlink target %q climbs above the root: %w", hdr.Linkname, ErrUnsafe)
		}
		n.Mode = fstree.TypeSymlink | 0o777
		n.Linkname = hdr.Linkname
	case tar.TypeLink:
		target, err := CleanName(hdr.Linkname)
		if err != nil || target == "" {
			return fmt.Errorf("hard link target %q: %w", hdr.Linkname, ErrUnsafe)
		}
		t := f.Get(target)
		if t == nil {
			return fmt.Errorf("hard link target %q does not exist: %w", hdr.Linkname, ErrUnsafe)
		}
		if t.IsDir() {
			return fmt.Errorf("hard link target %q is a directory: %w", hdr.Linkname, ErrUnsafe)
		}
		if t == f.Get(name) {
			return nil // a link to itself: nothing changes
		}
		c := *t
		c.Name = name
		n = &c
	case tar.TypeChar:
		n.Mode = fstree.TypeChar | perm
		n.DevMajor, n.DevMinor = uint32(hdr.Devmajor), uint32(hdr.Devminor)
	case tar.TypeBlock:
		n.Mode = fstree.TypeBlock | perm
		n.DevMajor, n.DevMinor = uint32(hdr.Devmajor), uint32(hdr.Devminor)
	case tar.TypeFifo:
		n.Mode = fstree.TypeFifo | perm
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	return f.put(n)
}

// AddMissingParents creates every missing parent directory (mode 0755,
// owned by root): the kernel does not create them when unpacking.
func (f *FS) AddMissingParents() {
	// fill reports whether anything is recorded at or below d.
	var fill func(name string, d *dirent) bool
	fill = func(name string, d *dirent) bool {
		below := false
		for c, k := range d.kids {
			kn := c
			if name != "" {
				kn = name + "/" + c
			}
			if fill(kn, k) {
				below = true
			}
		}
		if below && d.node == nil && name != "" {
			d.node = &Node{Name: name, Mode: fstree.TypeDir | 0o755}
			f.count++
		}
		return below || d.node != nil
	}
	fill("", &f.root)
}
