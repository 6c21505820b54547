package format

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mobykit/mobykit/metadata/iso"
)

func init() {
	Register(isoBIOS{})
	Register(rawBIOS{})
}

// Bootloader files, as images/bootloader lays them out.
const (
	bootISOLINUX = "isolinux.bin"
	bootHybrid   = "isohdpfx.bin"
	bootLDLINUX  = "ldlinux.c32"
)

// isoBIOS writes NAME.iso: an ISO 9660 image that ISOLINUX boots, holding the kernel, the
// initramfs and the command line, as LinuxKit's iso-bios. It is isohybrid, so it boots from
// a disk too.
type isoBIOS struct{}

func (isoBIOS) Name() string                { return "iso-bios" }
func (isoBIOS) FileName(name string) string { return name + ".iso" }
func (f isoBIOS) Write(ctx context.Context, in *Input) ([]string, error) {
	return WriteStreamer(ctx, f, in)
}

func (isoBIOS) Stream(ctx context.Context, in *Input, w io.Writer) error {
	return writeBIOS(ctx, in, w, 0)
}

// rawBIOS writes NAME-bios.img: a raw disk a PC BIOS boots, as LinuxKit's raw-bios. It is the
// iso-bios image with its hybrid master boot record, sized by --size (default: just what it
// holds, rounded up to a MiB). LinuxKit writes a FAT partition with SYSLINUX instead; both
// boot the same kernel and initramfs from an active MBR partition.
type rawBIOS struct{}

func (rawBIOS) Name() string                { return "raw-bios" }
func (rawBIOS) FileName(name string) string { return name + "-bios.img" }
func (f rawBIOS) Write(ctx context.Context, in *Input) ([]string, error) {
	return WriteStreamer(ctx, f, in)
}

func (rawBIOS) Stream(ctx context.Context, in *Input, w io.Writer) error {
	return writeBIOS(ctx, in, w, in.DiskSize)
}

// isolinuxConfig boots /kernel with /initrd.img and the spec's command line, at once.
func isolinuxConfig(cmdline string) ([]byte, error) {
	if strings.ContainsAny(cmdline, "\r\n") {
		return nil, errors.New("kernel command line: a line break cannot be passed through the bootloader's configuration")
	}
	return []byte("DEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  KERNEL /kernel\n  APPEND initrd=/initrd.img " + cmdline + "\n"), nil
}

func bootFiles(ctx context.Context, in *Input, names ...string) ([][]byte, error) {
	if in.Bootloader == nil {
		return nil, errors.New("no bootloader image to take the bootloader from")
	}
	var out [][]byte
	for _, n := range names {
		b, err := in.Bootloader(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// streamed is a file of the image read from path when it is written.
func streamed(name, path string) (iso.File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return iso.File{}, err
	}
	return iso.File{Name: name, Size: st.Size(), Open: func() (io.ReadCloser, error) { return os.Open(path) }}, nil
}

// contentID derives an identifier from what the image holds: the kernel's and the initramfs
// segments' cache keys (their file names) and sizes, and the command line. It stands in for
// the random disk signature other tools write, so that the same build gives the same bytes.
func contentID(in *Input) [16]byte {
	h := sha256.New()
	fmt.Fprintf(h, "cmdline %q\n", in.Cmdline)
	for _, p := range append([]string{in.Kernel, in.UCode}, in.Segments...) {
		if p == "" {
			continue
		}
		var size int64
		if st, err := os.Stat(p); err == nil {
			size = st.Size()
		}
		fmt.Fprintf(h, "%s %s %d\n", filepath.Base(filepath.Dir(p)), filepath.Base(p), size)
	}
	var id [16]byte
	copy(id[:], h.Sum(nil))
	return id
}

func writeBIOS(ctx context.Context, in *Input, w io.Writer, size int64) error {
	d, err := biosDisk(ctx, in, size)
	if err != nil {
		return err
	}
	return d.writeRaw(w)
}

// disk is a BIOS-bootable disk: the hybrid ISO image (whole MiBs), then zeros up to size.
type disk struct {
	data, size int64
	write      func(io.Writer) error // writes the data bytes
	id         [16]byte              // derived from the content
}

// biosDisk lays out the BIOS disk of in: size bytes, or just what it holds when size is 0.
func biosDisk(ctx context.Context, in *Input, size int64) (*disk, error) {
	if in.Kernel == "" {
		return nil, errors.New("the spec has no kernel to boot")
	}
	cfg, err := isolinuxConfig(in.Cmdline)
	if err != nil {
		return nil, err
	}
	boot, err := bootFiles(ctx, in, bootISOLINUX, bootLDLINUX, bootHybrid)
	if err != nil {
		return nil, err
	}
	kernel, err := streamed("kernel", in.Kernel)
	if err != nil {
		return nil, err
	}
	initrd, err := streamed("initrd.img", in.Initrd)
	if err != nil {
		return nil, err
	}
	files := []iso.File{
		{Name: bootISOLINUX, Data: boot[0]},
		{Name: bootLDLINUX, Data: boot[1]},
		{Name: "isolinux.cfg", Data: cfg},
		kernel, initrd,
	}
	id := contentID(in)
	opts := iso.Options{
		Label: "MOBYKIT", ModTime: time.Unix(in.MTime, 0),
		Boot: &iso.Boot{File: bootISOLINUX, HybridMBR: boot[2], DiskID: binary.LittleEndian.Uint32(id[:])},
	}
	need, err := iso.Size(files, opts)
	if err != nil {
		return nil, err
	}
	data, err := iso.DataSize(files, opts)
	if err != nil {
		return nil, err
	}
	switch {
	case size == 0:
		size = need
	case size < need:
		return nil, fmt.Errorf("--size %d MiB is too small: the image needs %d bytes (--size %dM)", size>>20, need, (need+1<<20-1)>>20)
	case size%(1<<20) != 0:
		return nil, fmt.Errorf("--size of %d bytes is not a whole number of MiB", size)
	}
	// The MBR's partition covers the whole disk.
	opts.Size = size
	sized := opts
	return &disk{data: data, size: size, id: id, write: func(w io.Writer) error {
		return iso.WriteData(w, files, sized)
	}}, nil
}

// writeRaw writes the disk as a raw image.
func (d *disk) writeRaw(w io.Writer) error {
	if err := d.write(w); err != nil {
		return err
	}
	return padZeros(w, d.size-d.data)
}

// padZeros writes n zero bytes, or leaves a hole when w is a file.
func padZeros(w io.Writer, n int64) error {
	if n <= 0 {
		return nil
	}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			end, err := f.Seek(n, io.SeekCurrent)
			if err != nil {
				return err
			}
			return f.Truncate(end)
		}
	}
	zero := make([]byte, 64<<10)
	for n > 0 {
		c := min(n, int64(len(zero)))
		if _, err := w.Write(zero[:c]); err != nil {
			return err
		}
		n -= c
	}
	return nil
}
