package initrd

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/mobykit/mobykit/assembler/fstree"
)

// ErrThroughSymlink is wrapped by Verify's error for an entry whose parent
// is a symlink: the kernel follows it, so the entry lands wherever the
// symlink points, outside the directory the archive meant.
var ErrThroughSymlink = errors.New("entry would be created through a symlink")

// Verify reads an archive (or several concatenated ones) to its end and
// checks it against a model of the kernel's unpacker (init/initramfs.c).
// It returns an error naming the first entry the kernel would not create
// where the archive says: one whose parent is a symlink (ErrThroughSymlink),
// one whose parent was not created before it as a directory (the kernel
// drops it), or one that replaces a non-empty directory by something else
// (the kernel cannot remove the directory and drops the entry). The model
// starts from an empty root.
func Verify(r *Reader) error {
	typ := map[string]uint32{"": fstree.TypeDir} // path → type bits
	kids := map[string]int{}                     // directory → entries in it
	for {
		h, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if name == "" {
			continue // the root: it exists already
		}
		dir := path.Dir(name)
		if dir == "." {
			dir = ""
		}
		for d := dir; ; d = path.Dir(d) {
			if d == "." {
				break
			}
			switch t, ok := typ[d]; {
			case !ok:
				return fmt.Errorf("cpio entry %q: parent %q was not created before it", h.Name, d)
			case t == fstree.TypeSymlink:
				return fmt.Errorf("cpio entry %q: parent %q is a symlink: %w", h.Name, d, ErrThroughSymlink)
			case t != fstree.TypeDir:
				return fmt.Errorf("cpio entry %q: parent %q is not a directory", h.Name, d)
			}
			if d == "" {
				break
			}
		}
		t := h.Mode & fstree.TypeMask
		old, exists := typ[name]
		// clean_path removes an existing entry of another type (a symlink
		// always replaces what is there); rmdir fails on a non-empty one.
		if exists && (old != t || t == fstree.TypeSymlink) {
			if old == fstree.TypeDir && kids[name] > 0 {
				return fmt.Errorf("cpio entry %q replaces a non-empty directory", h.Name)
			}
			delete(typ, name)
			kids[dir]--
			exists = false
		}
		if !exists {
			typ[name] = t
			kids[dir]++
		}
	}
}
