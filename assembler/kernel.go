package assembler

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/mobykit/mobykit/assembler/fstree"
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
	dir := filepath.Join(b.store.dir, "kernels", keyOf(append([]string{"kernel", bin, ucode, strconv.FormatBool(b.o.DecompressKernel)}, r.diffs...)...))
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
			if err := mods.Put(&layer.Node{Name: "boot", Mode: fstree.TypeDir | 0o755}); err != nil {
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
	extract := func(name, dst string, decompress bool) error {
		n := fs.Get(name)
		if n == nil || n.Obj == nil {
			return fmt.Errorf("kernel image %s: no %s in the image (kernel.binary, kernel.ucode)", r.ref, name)
		}
		return atomicfile.Write(dst, 0o644, func(w io.Writer) error {
			if decompress {
				d := n.Obj.Data
				if err := decompressKernel(io.NewSectionReader(d.R, d.Off, d.Size), d.Size, w); err != nil {
					return fmt.Errorf("kernel image %s: %s: --decompress-kernel: %w", r.ref, name, err)
				}
				return nil
			}
			_, err := io.Copy(w, n.Obj.Data.Reader())
			return err
		})
	}
	if err := extract(bin, kernelPath, b.o.DecompressKernel); err != nil {
		return "", "", nil, err
	}
	if ucode != "" {
		if err := extract(ucode, ucodePath, false); err != nil {
			return "", "", nil, err
		}
	}
	return kernelPath, ucodePath, seg, nil
}

// maxKernel bounds a decompressed kernel: a real one is tens of MB.
const maxKernel = 512 << 20

// decompressKernel writes the kernel held in r (size bytes) decompressed, as linuxkit's
// --decompress-kernel: a gzip'ed image (arm64's Image.gz) is gunzipped, and the payload of an
// x86 bzImage (the compressed vmlinux, gzip, xz or zstd) is extracted and decompressed.
func decompressKernel(r io.ReaderAt, size int64, w io.Writer) error {
	const bzMinLen = 0x250
	head := make([]byte, bzMinLen)
	n, err := r.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	head = head[:n]
	if bytes.HasPrefix(head, []byte{0x1f, 0x8b}) {
		return decompressPayload(io.NewSectionReader(r, 0, size), w)
	}
	if n < bzMinLen || binary.LittleEndian.Uint16(head[0x1fe:]) != 0xaa55 || string(head[0x202:0x206]) != "HdrS" {
		return errors.New("neither a gzip'ed kernel nor a bzImage")
	}
	if v := binary.LittleEndian.Uint16(head[0x206:]); v < 0x208 {
		return fmt.Errorf("bzImage boot protocol %d.%02d: 2.08 or later is needed to find the payload", v>>8, v&0xff)
	}
	setup := int64(head[0x1f1])
	if setup == 0 {
		setup = 4
	}
	off := (setup+1)*512 + int64(binary.LittleEndian.Uint32(head[0x248:]))
	length := int64(binary.LittleEndian.Uint32(head[0x24c:]))
	if off+length > size || length == 0 {
		return fmt.Errorf("bzImage payload at %d (%d bytes) lies outside the %d-byte file", off, length, size)
	}
	return decompressPayload(io.NewSectionReader(r, off, length), w)
}

func decompressPayload(r io.Reader, w io.Writer) error {
	br := bufio.NewReader(r)
	magic, _ := br.Peek(6)
	var zr io.Reader
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		g, err := gzip.NewReader(br)
		if err != nil {
			return err
		}
		g.Multistream(false)
		zr = g
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		x, err := xz.NewReader(br)
		if err != nil {
			return err
		}
		zr = x
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		z, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return err
		}
		defer z.Close()
		zr = z
	default:
		return fmt.Errorf("payload compression % x is not supported (gzip, xz and zstd are)", magic)
	}
	n, err := io.Copy(w, io.LimitReader(zr, maxKernel+1))
	if err != nil {
		return err
	}
	if n > maxKernel {
		return fmt.Errorf("decompressed kernel is larger than %d MiB", maxKernel>>20)
	}
	return nil
}
