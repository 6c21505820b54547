package format

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"time"

	"github.com/mobykit/mobykit/assembler/fstree"
	"github.com/mobykit/mobykit/assembler/initrd"
	"github.com/mobykit/mobykit/metadata/iso"
)

func init() { Register(kernelISO{}) }

// kernelISO writes NAME-kernel, NAME-cmdline and NAME.iso, the root file system as ISO 9660
// with Rock Ridge, as LinuxKit's kernel+iso.
type kernelISO struct{}

func (kernelISO) Name() string { return "kernel+iso" }

func (kernelISO) Write(ctx context.Context, in *Input) ([]string, error) {
	out, err := writeKernelCmdline(in)
	if err != nil {
		return out, fmt.Errorf("kernel+iso: %w", err)
	}
	loader, err := writeLoader(ctx, in)
	if err != nil {
		return out, fmt.Errorf("kernel+iso: %w", err)
	}
	out = append(out, loader)
	p := filepath.Join(in.Dir, in.Name+".iso")
	if err := WriteFile(p, 0o644, func(w io.Writer) error { return StreamRootISO(ctx, in, w) }); err != nil {
		return out, fmt.Errorf("kernel+iso: %w", err)
	}
	return append(out, p), nil
}

// StreamRootISO writes the root file system of in as an ISO 9660 image to w, front to back:
// the file contents go straight from the initramfs segments to w.
func StreamRootISO(ctx context.Context, in *Input, w io.Writer) error {
	t, err := readTree(in.Segments, in.MTime)
	if err != nil {
		return err
	}
	nodes := map[*fstree.Inode]*iso.Node{}
	var conv func(s *fstree.Inode) *iso.Node
	conv = func(s *fstree.Inode) *iso.Node {
		if n := nodes[s]; n != nil {
			return n
		}
		n := &iso.Node{Mode: s.Mode, UID: s.UID, GID: s.GID, Size: s.Size, Target: s.Target, DevMajor: s.DevMajor, DevMinor: s.DevMinor}
		nodes[s] = n
		for _, e := range s.Entries {
			n.Children = append(n.Children, iso.Child{Name: e.Name, Node: conv(e.Inode)})
		}
		return n
	}
	root := conv(t.root)
	// Contents come in segment order: that is the order of the data in the image.
	keys := make([][2]int, 0, len(t.holder))
	for k, s := range t.holder {
		if nodes[s] != nil {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b [2]int) int { return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1])) })
	order := make([]*iso.Node, len(keys))
	for i, k := range keys {
		order[i] = nodes[t.holder[k]]
	}
	opts := iso.Options{Label: "MOBYKIT", ModTime: time.Unix(in.MTime, 0)}
	return iso.WriteTree(w, root, order, opts, func(put func(*iso.Node, io.Reader) error) error {
		for si, s := range in.Segments {
			if err := ctx.Err(); err != nil {
				return err
			}
			err := eachEntry(s, func(idx int, h *initrd.Header, r io.Reader) error {
				sq := t.holder[[2]int{si, idx}]
				if sq == nil || nodes[sq] == nil {
					return nil
				}
				if err := put(nodes[sq], r); err != nil {
					return fmt.Errorf("%s: %w", h.Name, err)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("segment %s: %w", filepath.Base(s), err)
			}
		}
		return nil
	})
}
