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
func contentID(in *Input) uint32 {
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
	return binary.LittleEndian.Uint32(h.Sum(nil))
}

func writeBIOS(ctx context.Context, in *Input, w io.Writer, size int64) error {
	if in.Kernel == "" {
		return errors.New("the spec has no kernel to boot")
	}
	cfg, err := isolinuxConfig(in.Cmdline)
	if err != nil {
		return err
	}
	boot, err := bootFiles(ctx, in, bootISOLINUX, bootLDLINUX, bootHybrid)
	if err != nil {
		return err
	}
	kernel, err := streamed("kernel", in.Kernel)
	if err != nil {
		return err
	}
	initrd, err := streamed("initrd.img", in.Initrd)
	if err != nil {
		return err
	}
	files := []iso.File{
		{Name: bootISOLINUX, Data: boot[0]},
		{Name: bootLDLINUX, Data: boot[1]},
		{Name: "isolinux.cfg", Data: cfg},
		kernel, initrd,
	}
	opts := iso.Options{
		Label: "MOBYKIT", ModTime: time.Unix(in.MTime, 0), Size: size,
		Boot: &iso.Boot{File: bootISOLINUX, HybridMBR: boot[2], DiskID: contentID(in)},
	}
	err = iso.Write(w, files, opts)
	var small *iso.TooSmallError
	if errors.As(err, &small) {
		return fmt.Errorf("--size %d MiB is too small: the image needs %d bytes, --size %dM: %w", size>>20, small.Need, (small.Need+1<<20-1)>>20, err)
	}
	return err
}
