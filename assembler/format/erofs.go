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
	"github.com/mobykit/mobykit/assembler/fstree"
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
	live := t.live()
	// contents come in segment order, entry order: the order the holders were met
	keys := slices.SortedFunc(maps.Keys(t.holder), func(a, b [2]int) int {
		return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]))
	})
	var files []*fstree.Inode
	for _, k := range keys {
		if n := t.holder[k]; live[n] { // not live: replaced by a later entry
			files = append(files, n)
		}
	}
	im, err := erofs.Plan(t.root, files, in.MTime)
	if err != nil {
		return err
	}
	return im.Write(w, func(add func(*fstree.Inode, io.Reader) error) error {
		return t.eachContent(ctx, in.Segments, add)
	})
}
