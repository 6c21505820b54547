package format

import (
	"context"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strings"

	"github.com/mobykit/mobykit/assembler/fstree"
	"github.com/mobykit/mobykit/assembler/initrd"
)

// LoaderSuffix names the loader initramfs the kernel+squashfs, kernel+erofs and kernel+iso
// formats write beside their image: PREFIX-loader.img.
const LoaderSuffix = "-loader.img"

// writeLoader writes NAME-loader.img: a gzip'ed cpio holding only the image's /init and its
// kernel modules (lib/modules), with /proc, /sys and /dev. Debian's kernel drives virtio disks
// and reads squashfs, EROFS and ISO 9660 only through modules, so it cannot mount a root file
// system image by itself; booted with this initramfs and mobykit.root=DEVICE
// mobykit.rootfstype=TYPE on its command line, init loads the modules, mounts the image and
// moves there (`mobykit run qemu PREFIX` does all that). A spec without /init (no mobykit init)
// still gets a loader, which then has nothing to run: such an image boots only in a way of the
// user's own.
func writeLoader(ctx context.Context, in *Input) (string, error) {
	p := filepath.Join(in.Dir, in.Name+LoaderSuffix)
	err := WriteFile(p, 0o644, func(w io.Writer) error {
		zw, err := initrd.Compress(w, initrd.Gzip)
		if err != nil {
			return err
		}
		cw := initrd.NewWriter(zw, initrd.WithMTime(in.MTime))
		for _, d := range []string{"dev", "proc", "sys"} {
			if err := cw.WriteHeader(&initrd.Header{Name: d, Mode: fstree.TypeDir | 0o755}); err != nil {
				return err
			}
		}
		for _, s := range in.Segments {
			if err := ctx.Err(); err != nil {
				return err
			}
			err := eachEntry(s, func(_ int, h *initrd.Header, r io.Reader) error {
				name := path.Clean(h.Name)
				if name != "init" && name != "lib" && name != "lib/modules" && !strings.HasPrefix(name, "lib/modules/") {
					return nil
				}
				nh := *h
				nh.Name, nh.Ino, nh.NLink = name, 0, 0
				if h.Mode&fstree.TypeMask == fstree.TypeReg && h.NLink > 1 && h.Size == 0 {
					return nil // a hard link whose data came earlier: modules and init have none
				}
				if err := cw.WriteHeader(&nh); err != nil {
					return err
				}
				if nh.Mode&fstree.TypeMask == fstree.TypeReg && nh.Size > 0 {
					if _, err := io.CopyN(cw, r, nh.Size); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("loader: segment %s: %w", filepath.Base(s), err)
			}
		}
		if err := cw.Close(); err != nil {
			return err
		}
		return zw.Close()
	})
	return p, err
}
