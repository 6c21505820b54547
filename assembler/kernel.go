package assembler

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/mobykit/mobykit/assembler/initrd"
	"github.com/mobykit/mobykit/assembler/layer"
	"github.com/mobykit/mobykit/internal/atomicfile"
)

// kernelNames returns the kernel binary, modules tarball ("" for none) and
// microcode ("" for none) names to look for in the kernel image, with
// LinuxKit's defaults.
func (b *builder) kernelNames() (bin, tar, ucode string, err error) {
	k := b.m.Kernel
	bin, tar = "kernel", "kernel.tar"
	if k.Binary != "" {
		bin = k.Binary
	}
	if k.Tar != nil {
		tar = *k.Tar
		if tar == "none" {
			tar = ""
		}
	}
	ucode = k.UCode
	for _, p := range []*string{&bin, &tar, &ucode} {
		if *p == "" {
			continue
		}
		c, err := layer.CleanName(*p)
		if err != nil || c == "" {
			return "", "", "", fmt.Errorf("kernel: file name %q: %w", *p, layer.ErrUnsafe)
		}
		*p = c
	}
	return bin, tar, ucode, nil
}

// kernel extracts the kernel (and microcode) into the cache and plans the
// segment holding /boot and the modules tarball's contents.
func (b *builder) kernel() (kernelPath, ucodePath string, seg *segment, err error) {
	r := b.imgs[b.m.Kernel.Image]
	if r == nil {
		return "", "", nil, fmt.Errorf("kernel image %s was not resolved", b.m.Kernel.Image)
	}
	bin, tarName, ucode, err := b.kernelNames()
	if err != nil {
		return "", "", nil, err
	}
	dir := filepath.Join(b.store.dir, "kernels", keyOf(append([]string{"kernel", bin, ucode}, r.diffs...)...))
	kernelPath = filepath.Join(dir, "kernel")
	if ucode != "" {
		ucodePath = filepath.Join(dir, "ucode.cpio")
	}
	seg = &segment{
		what: "kernel " + r.ref,
		key:  keyOf(append([]string{"kernel-modules", tarName}, r.diffs...)...),
		write: func(cw *initrd.Writer) error {
			fs, done, err := b.unpacked(r)
			if err != nil {
				return err
			}
			defer done()
			mods := layer.NewWithLimits(b.o.LayerLimits)
			if err := mods.Put(&layer.Node{Name: "boot", Mode: initrd.TypeDir | 0o755}); err != nil {
				return err
			}
			if tarName != "" {
				n := fs.Get(tarName)
				if n == nil || n.Obj == nil {
					return fmt.Errorf("kernel image %s: no %s in the image", r.ref, tarName)
				}
				d := n.Obj.Data
				if err := mods.Apply(fmt.Sprintf("kernel image %s: %s", r.ref, tarName), io.NewSectionReader(d.R, d.Off, d.Size), d.Size); err != nil {
					return err
				}
			}
			mods.AddMissingParents()
			var ino uint32
			return writeNodes(cw, "", mods.Nodes(), &ino)
		},
	}
	have := func(p string) bool { _, err := os.Stat(p); return p == "" || err == nil }
	if have(kernelPath) && have(ucodePath) {
		return kernelPath, ucodePath, seg, nil
	}
	fs, done, err := b.unpacked(r)
	if err != nil {
		return "", "", nil, err
	}
	defer done()
	extract := func(name, dst string) error {
		n := fs.Get(name)
		if n == nil || n.Obj == nil {
			return fmt.Errorf("kernel image %s: no %s in the image (kernel.binary, kernel.ucode)", r.ref, name)
		}
		return atomicfile.Write(dst, 0o644, func(w io.Writer) error {
			_, err := io.Copy(w, n.Obj.Data.Reader())
			return err
		})
	}
	if err := extract(bin, kernelPath); err != nil {
		return "", "", nil, err
	}
	if ucode != "" {
		if err := extract(ucode, ucodePath); err != nil {
			return "", "", nil, err
		}
	}
	return kernelPath, ucodePath, seg, nil
}
