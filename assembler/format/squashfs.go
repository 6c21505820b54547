package format

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strings"

	"github.com/mobykit/mobykit/assembler/fstree"
	"github.com/mobykit/mobykit/assembler/initrd"
	"github.com/mobykit/mobykit/assembler/squashfs"
)

func init() { Register(kernelSquashFS{}) }

// kernelSquashFS writes NAME-kernel, NAME-cmdline and NAME-squashfs.img, the root file system
// (what the initramfs unpacks to) as squashfs, as LinuxKit's kernel+squashfs.
type kernelSquashFS struct{}

func (kernelSquashFS) Name() string { return "kernel+squashfs" }

func (f kernelSquashFS) Write(ctx context.Context, in *Input) ([]string, error) {
	out, err := writeKernelCmdline(in)
	if err != nil {
		return out, fmt.Errorf("kernel+squashfs: %w", err)
	}
	loader, err := writeLoader(ctx, in)
	if err != nil {
		return out, fmt.Errorf("kernel+squashfs: %w", err)
	}
	out = append(out, loader)
	p := filepath.Join(in.Dir, in.Name+"-squashfs.img")
	if err := WriteFile(p, 0o644, func(w io.Writer) error { return StreamSquashFS(ctx, in, w) }); err != nil {
		return out, fmt.Errorf("kernel+squashfs: %w", err)
	}
	return append(out, p), nil
}

// writeKernelCmdline writes NAME-kernel and NAME-cmdline, as the kernel+ formats do.
func writeKernelCmdline(in *Input) ([]string, error) {
	if in.Kernel == "" {
		return nil, errors.New("the spec has no kernel")
	}
	base := filepath.Join(in.Dir, in.Name)
	if err := CopyFile(base+"-kernel", in.Kernel, 0o644); err != nil {
		return nil, err
	}
	if err := WriteFile(base+"-cmdline", 0o644, func(w io.Writer) error {
		_, err := io.WriteString(w, in.Cmdline)
		return err
	}); err != nil {
		return []string{base + "-kernel"}, err
	}
	return []string{base + "-kernel", base + "-cmdline"}, nil
}

// StreamSquashFS writes the root file system of in as squashfs to w. The contents are
// compressed into a spool file in in.Dir first, then everything is written front to back.
func StreamSquashFS(ctx context.Context, in *Input, w io.Writer) error {
	t, err := readTree(in.Segments, in.MTime)
	if err != nil {
		return err
	}
	b, err := squashfs.NewBuilder(in.Dir)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := t.eachContent(ctx, in.Segments, b.AddData); err != nil {
		return err
	}
	return b.Finish(w, t.root, uint32(in.MTime))
}

// tree is the root file system the initramfs unpacks to: its segments' entries in order, a
// later one replacing an earlier one of the same name as the kernel's unpacker does.
type tree struct {
	root *fstree.Inode
	dirs map[string]*fstree.Inode
	// holder maps (segment, entry index) to the inode whose contents that entry carries.
	holder map[[2]int]*fstree.Inode
}

func readTree(segments []string, mtime int64) (*tree, error) {
	t := &tree{
		// times as a cpio header holds them: 32 bits
		root:   &fstree.Inode{Mode: fstree.TypeDir | 0o755, MTime: int64(uint32(mtime))},
		dirs:   map[string]*fstree.Inode{},
		holder: map[[2]int]*fstree.Inode{},
	}
	t.dirs["."] = t.root
	for si, s := range segments {
		links := map[uint32]*fstree.Inode{}
		err := eachEntry(s, func(idx int, h *initrd.Header, _ io.Reader) error {
			name := path.Clean(h.Name)
			if name == "." {
				t.root.Mode = fstree.TypeDir | h.Mode&0o7777
				t.root.UID, t.root.GID, t.root.MTime = h.UID, h.GID, h.MTime
				return nil
			}
			parent := t.dirs[path.Dir(name)]
			if parent == nil {
				return nil // the kernel's unpacker drops entries whose folder is missing
			}
			n := &fstree.Inode{Mode: h.Mode, UID: h.UID, GID: h.GID, MTime: h.MTime}
			switch h.Mode & fstree.TypeMask {
			case fstree.TypeDir:
				if old := t.dirs[name]; old != nil {
					old.Mode, old.UID, old.GID, old.MTime = n.Mode, n.UID, n.GID, n.MTime
					return nil
				}
				t.dirs[name] = n
			case fstree.TypeSymlink:
				n.Target = h.Linkname
			case fstree.TypeChar, fstree.TypeBlock:
				n.DevMajor, n.DevMinor = h.DevMajor, h.DevMinor
			case fstree.TypeReg:
				if h.NLink > 1 {
					if l := links[h.Ino]; l != nil {
						n = l
					} else {
						links[h.Ino] = n
					}
				}
				if h.Size > 0 && n.Size == 0 {
					n.Size = h.Size
					t.holder[[2]int{si, idx}] = n
				}
			case fstree.TypeFifo, fstree.TypeSocket:
			default:
				return fmt.Errorf("%s: unsupported mode %o", h.Name, h.Mode)
			}
			base := path.Base(name)
			for i, e := range parent.Entries {
				if e.Name == base {
					if e.Inode.Mode&fstree.TypeMask == fstree.TypeDir {
						t.forget(name)
					}
					parent.Entries = append(parent.Entries[:i], parent.Entries[i+1:]...)
					break
				}
			}
			parent.Entries = append(parent.Entries, fstree.Entry{Name: base, Inode: n})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("segment %s: %w", filepath.Base(s), err)
		}
	}
	return t, nil
}

// forget drops a replaced folder and everything under it from the index of folders.
func (t *tree) forget(dir string) {
	for d := range t.dirs {
		if d == dir || strings.HasPrefix(d, dir+"/") {
			delete(t.dirs, d)
		}
	}
}

// live is every inode still in the tree (entries of a segment can be replaced by a later
// segment's).
func (t *tree) live() map[*fstree.Inode]bool {
	live := map[*fstree.Inode]bool{}
	var walk func(d *fstree.Inode)
	walk = func(d *fstree.Inode) {
		for _, e := range d.Entries {
			live[e.Inode] = true
			if e.Inode.Mode&fstree.TypeMask == fstree.TypeDir {
				walk(e.Inode)
			}
		}
	}
	walk(t.root)
	return live
}

// eachContent hands the contents of every regular file still in the tree to add, reading the
// segments again in order.
func (t *tree) eachContent(ctx context.Context, segments []string, add func(*fstree.Inode, io.Reader) error) error {
	live := t.live()
	for si, s := range segments {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := eachEntry(s, func(idx int, h *initrd.Header, r io.Reader) error {
			n := t.holder[[2]int{si, idx}]
			if n == nil || !live[n] {
				return nil
			}
			if err := add(n, r); err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("segment %s: %w", filepath.Base(s), err)
		}
	}
	return nil
}
