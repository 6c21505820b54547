package layer

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/mobykit/mobykit/assembler/initrd"
)

// ErrUnsafe is wrapped by every error about an entry that would land
// outside the root.
var ErrUnsafe = errors.New("entry would escape the root")

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

	layer int // index of the layer that last wrote it
}

// IsDir reports whether n is a directory.
func (n *Node) IsDir() bool { return n.Mode&initrd.TypeMask == initrd.TypeDir }

// Size is the content size of a regular file.
func (n *Node) Size() int64 {
	if n.Obj == nil {
		return 0
	}
	return n.Obj.Data.Size
}

// FS is a file tree built by applying layers.
type FS struct {
	nodes  map[string]*Node
	layers int
}

// New returns an empty tree.
func New() *FS { return &FS{nodes: map[string]*Node{}} }

// Get returns the node at name (cleaned, relative), or nil.
func (f *FS) Get(name string) *Node { return f.nodes[name] }

// Len is the number of nodes.
func (f *FS) Len() int { return len(f.nodes) }

// Put adds or replaces a node (used for generated entries). It does not
// check the path: callers build it themselves.
func (f *FS) Put(n *Node) { n.layer = f.layers; f.nodes[n.Name] = n }

// Remove deletes name and, for a directory, everything under it.
func (f *FS) Remove(name string) { f.remove(name, -1) }

// Nodes returns every node sorted by name, so a parent directory always
// comes before its children.
func (f *FS) Nodes() []*Node {
	out := make([]*Node, 0, len(f.nodes))
	for _, n := range f.nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return pathLess(out[i].Name, out[j].Name) })
	return out
}

// pathLess orders paths component by component ("a/b" < "a-b" < "a.b/c"
// would be wrong with plain string order: '/' sorts after '-').
func pathLess(a, b string) bool {
	for {
		ia := strings.IndexByte(a, '/')
		ib := strings.IndexByte(b, '/')
		ca, cb := a, b
		if ia >= 0 {
			ca = a[:ia]
		}
		if ib >= 0 {
			cb = b[:ib]
		}
		if ca != cb {
			return ca < cb
		}
		if ia < 0 || ib < 0 {
			return ia < 0 && ib >= 0
		}
		a, b = a[ia+1:], b[ib+1:]
	}
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

func (f *FS) remove(name string, keepLayer int) {
	n := f.nodes[name]
	if n != nil && n.layer != keepLayer {
		delete(f.nodes, name)
	}
	if n == nil || n.IsDir() {
		f.removeChildren(name, keepLayer)
	}
}

func (f *FS) removeChildren(dir string, keepLayer int) {
	prefix := dir + "/"
	for k, n := range f.nodes {
		if strings.HasPrefix(k, prefix) && n.layer != keepLayer {
			delete(f.nodes, k)
		}
	}
}

// checkParents refuses a name whose parent directories include a symlink
// or a non-directory: the kernel would follow the symlink when unpacking.
func (f *FS) checkParents(name string) error {
	for d := path.Dir(name); d != "."; d = path.Dir(d) {
		if p := f.nodes[d]; p != nil && !p.IsDir() {
			if p.Mode&initrd.TypeMask == initrd.TypeSymlink {
				return fmt.Errorf("parent %q is a symlink: %w", d, ErrUnsafe)
			}
			return fmt.Errorf("parent %q is not a directory", d)
		}
	}
	return nil
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

type posReader interface {
	io.Reader
	io.Seeker
}

// Apply adds one uncompressed layer tar, read from r (size bytes), on top of
// the tree. source names the layer in errors ("alpine:3.20 layer 2").
func (f *FS) Apply(source string, r io.ReaderAt, size int64) error {
	f.layers++
	layer := f.layers
	sr := io.NewSectionReader(r, 0, size)
	tr := tar.NewReader(sr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: read tar: %w", source, err)
		}
		off, _ := sr.Seek(0, io.SeekCurrent)
		if err := f.apply(layer, hdr, Data{R: r, Off: off, Size: hdr.Size}); err != nil {
			return fmt.Errorf("%s: entry %q: %w", source, hdr.Name, err)
		}
	}
}

func (f *FS) apply(layer int, hdr *tar.Header, data Data) error {
	name, err := CleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "" {
		return nil // the root directory itself
	}
	base := path.Base(name)
	dir := path.Dir(name)
	if strings.HasPrefix(base, whPrefix) {
		if err := f.checkParents(name); err != nil {
			return err
		}
		if base == whOpaque {
			if dir == "." {
				for k, n := range f.nodes {
					if n.layer != layer {
						delete(f.nodes, k)
					}
				}
				return nil
			}
			f.removeChildren(dir, layer)
			return nil
		}
		victim := base[len(whPrefix):]
		if victim == "" || victim == "." || victim == ".." {
			return fmt.Errorf("bad whiteout: %w", ErrUnsafe)
		}
		f.remove(path.Join(dir, victim), layer)
		return nil
	}
	if err := f.checkParents(name); err != nil {
		return err
	}
	n := &Node{Name: name, UID: uint32(hdr.Uid), GID: uint32(hdr.Gid), layer: layer}
	perm := uint32(hdr.Mode) & 0o7777
	switch hdr.Typeflag {
	case tar.TypeDir:
		n.Mode = initrd.TypeDir | perm
	case tar.TypeReg, tar.TypeRegA:
		if _, sparse := hdr.PAXRecords["GNU.sparse.map"]; sparse || hdr.PAXRecords["GNU.sparse.major"] != "" {
			return errors.New("sparse files are not supported")
		}
		n.Mode = initrd.TypeReg | perm
		n.Obj = &Object{Data: data}
	case tar.TypeGNUSparse:
		return errors.New("sparse files are not supported")
	case tar.TypeSymlink:
		if hdr.Linkname == "" || strings.IndexByte(hdr.Linkname, 0) >= 0 {
			return fmt.Errorf("bad symlink target %q: %w", hdr.Linkname, ErrUnsafe)
		}
		if symlinkEscapes(name, hdr.Linkname) {
			return fmt.Errorf("symlink target %q climbs above the root: %w", hdr.Linkname, ErrUnsafe)
		}
		n.Mode = initrd.TypeSymlink | 0o777
		n.Linkname = hdr.Linkname
	case tar.TypeLink:
		target, err := CleanName(hdr.Linkname)
		if err != nil || target == "" {
			return fmt.Errorf("hard link target %q: %w", hdr.Linkname, ErrUnsafe)
		}
		t := f.nodes[target]
		if t == nil {
			return fmt.Errorf("hard link target %q does not exist: %w", hdr.Linkname, ErrUnsafe)
		}
		if t.IsDir() {
			return fmt.Errorf("hard link target %q is a directory: %w", hdr.Linkname, ErrUnsafe)
		}
		if t == f.nodes[name] {
			return nil // a link to itself: nothing changes
		}
		c := *t
		c.Name, c.layer = name, layer
		n = &c
	case tar.TypeChar:
		n.Mode = initrd.TypeChar | perm
		n.DevMajor, n.DevMinor = uint32(hdr.Devmajor), uint32(hdr.Devminor)
	case tar.TypeBlock:
		n.Mode = initrd.TypeBlock | perm
		n.DevMajor, n.DevMinor = uint32(hdr.Devmajor), uint32(hdr.Devminor)
	case tar.TypeFifo:
		n.Mode = initrd.TypeFifo | perm
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	if old := f.nodes[name]; old != nil {
		if old.IsDir() && !n.IsDir() {
			f.removeChildren(name, -1)
		}
	}
	f.nodes[name] = n
	return nil
}

// AddMissingParents creates every missing parent directory (mode 0755,
// owned by root): the kernel does not create them when unpacking.
func (f *FS) AddMissingParents() {
	var missing []string
	for k := range f.nodes {
		for d := path.Dir(k); d != "."; d = path.Dir(d) {
			if f.nodes[d] != nil {
				break
			}
			missing = append(missing, d)
		}
	}
	for _, d := range missing {
		if f.nodes[d] == nil {
			f.Put(&Node{Name: d, Mode: initrd.TypeDir | 0o755})
		}
	}
}
