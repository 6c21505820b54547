package format

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"

	"github.com/mobykit/mobykit/assembler/erofs"
	"github.com/mobykit/mobykit/assembler/squashfs"
)

func init() { Register(kernelEROFS{}) }

// kernelEROFS writes NAME-kernel, NAME-cmdline and NAME-erofs.img, the root file system (what
// the initramfs unpacks to) as an uncompressed EROFS image, as LinuxKit's kernel+erofs.
type kernelEROFS struct{}

func (kernelEROFS) Name() string { return "kernel+erofs" }

func (kernelEROFS) Write(ctx context.Context, in *Input) ([]string, error) {
	out, err := writeKernelCmdline(in)
	if err != nil {
		return out, fmt.Errorf("kernel+erofs: %w", err)
	}
	loader, err := writeLoader(ctx, in)
	if err != nil {
		return out, fmt.Errorf("kernel+erofs: %w", err)
	}
	out = append(out, loader)
	p := filepath.Join(in.Dir, in.Name+"-erofs.img")
	if err := WriteFile(p, 0o644, func(w io.Writer) error { return StreamEROFS(ctx, in, w) }); err != nil {
		return out, fmt.Errorf("kernel+erofs: %w", err)
	}
	return append(out, p), nil
}

// StreamEROFS writes the root file system of in as EROFS to w, front to back in one pass: the
// tree is read from the segments first (metadata only), then the file contents go straight
// from the segments to w in the order the segments hold them.
func StreamEROFS(ctx context.Context, in *Input, w io.Writer) error {
	t, err := readTree(in.Segments, in.MTime)
	if err != nil {
		return err
	}
	conv := map[*squashfs.Inode]*erofs.Inode{}
	root := toEROFS(t.root, conv)
	// contents come in segment order, entry order: the order the holders were met
	keys := slices.SortedFunc(maps.Keys(t.holder), func(a, b [2]int) int {
		return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]))
	})
	var files []*erofs.Inode
	for _, k := range keys {
		if n := conv[t.holder[k]]; n != nil { // nil: replaced by a later entry
			files = append(files, n)
		}
	}
	im, err := erofs.Plan(root, files, in.MTime)
	if err != nil {
		return err
	}
	return im.Write(w, func(add func(*erofs.Inode, io.Reader) error) error {
		return t.eachContent(ctx, in.Segments, func(n *squashfs.Inode, r io.Reader) error {
			return add(conv[n], r)
		})
	})
}

// toEROFS converts the tree under n, keeping hard links (one inode reached by several names).
func toEROFS(n *squashfs.Inode, conv map[*squashfs.Inode]*erofs.Inode) *erofs.Inode {
	if e := conv[n]; e != nil {
		return e
	}
	e := &erofs.Inode{Mode: n.Mode, UID: n.UID, GID: n.GID, MTime: int64(n.MTime), Size: n.Size,
		Target: n.Target, DevMajor: n.DevMajor, DevMinor: n.DevMinor}
	conv[n] = e
	for _, c := range n.Entries {
		e.Entries = append(e.Entries, erofs.Entry{Name: c.Name, Inode: toEROFS(c.Inode, conv)})
	}
	return e
}
