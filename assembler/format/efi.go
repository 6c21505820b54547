package format

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mobykit/mobykit/metadata/iso"
)

func init() {
	Register(isoEFI{})
	Register(isoEFIInitrd{})
	Register(rawEFI{})
	Register(rawEFIInitrd{})
	Register(qcow2EFI{})
}

// EFI loaders, as images/bootloader lays them out.
const (
	bootStub = "linuxx64.efi.stub" // systemd-boot-efi's stub, made a unified kernel image
	bootGRUB = "grubx64.efi"       // grub-efi-amd64-bin's monolithic image
)

// ESP paths. Firmware boots EFI/BOOT/BOOTX64.EFI from removable media (and from any disk
// without boot entries) with no loader configuration; GRUB's monolithic image reads grub.cfg
// next to itself.
const (
	espLoader = "EFI/BOOT/BOOTX64.EFI"
	espGRUB   = "EFI/BOOT/GRUB.CFG"
	espKernel = "KERNEL"
	espInitrd = "INITRD.IMG"
)

// isoEFI writes NAME-efi.iso: an ISO 9660 image that UEFI firmware boots through El Torito,
// as LinuxKit's iso-efi. Its boot image is an EFI system partition holding a unified kernel
// image (systemd's stub with the kernel, initramfs and command line) as EFI/BOOT/BOOTX64.EFI.
type isoEFI struct{}

func (isoEFI) Name() string                { return "iso-efi" }
func (isoEFI) FileName(name string) string { return name + "-efi.iso" }
func (f isoEFI) Write(ctx context.Context, in *Input) ([]string, error) {
	return WriteStreamer(ctx, f, in)
}
func (isoEFI) Stream(ctx context.Context, in *Input, w io.Writer) error {
	return writeEFIISO(ctx, in, w, false)
}

// isoEFIInitrd writes NAME-efi-initrd.iso, as LinuxKit's iso-efi-initrd: the initramfs is a
// file of its own next to the kernel, which GRUB loads, instead of a section of a unified
// kernel image.
type isoEFIInitrd struct{}

func (isoEFIInitrd) Name() string                { return "iso-efi-initrd" }
func (isoEFIInitrd) FileName(name string) string { return name + "-efi-initrd.iso" }
func (f isoEFIInitrd) Write(ctx context.Context, in *Input) ([]string, error) {
	return WriteStreamer(ctx, f, in)
}
func (isoEFIInitrd) Stream(ctx context.Context, in *Input, w io.Writer) error {
	return writeEFIISO(ctx, in, w, true)
}

// rawEFI writes NAME-efi.img, as LinuxKit's raw-efi: a GPT disk whose EFI system partition
// holds the unified kernel image as EFI/BOOT/BOOTX64.EFI, --size bytes (default: what it
// holds, whole MiBs).
type rawEFI struct{}

func (rawEFI) Name() string                { return "raw-efi" }
func (rawEFI) FileName(name string) string { return name + "-efi.img" }
func (f rawEFI) Write(ctx context.Context, in *Input) ([]string, error) {
	return WriteStreamer(ctx, f, in)
}
func (rawEFI) Stream(ctx context.Context, in *Input, w io.Writer) error {
	d, err := efiDisk(ctx, in, false, in.DiskSize)
	if err != nil {
		return err
	}
	return d.writeRaw(w)
}

// rawEFIInitrd writes NAME-efi-initrd.img: raw-efi with GRUB loading the kernel and the
// initramfs as separate files of the partition.
type rawEFIInitrd struct{}

func (rawEFIInitrd) Name() string                { return "raw-efi-initrd" }
func (rawEFIInitrd) FileName(name string) string { return name + "-efi-initrd.img" }
func (f rawEFIInitrd) Write(ctx context.Context, in *Input) ([]string, error) {
	return WriteStreamer(ctx, f, in)
}
func (rawEFIInitrd) Stream(ctx context.Context, in *Input, w io.Writer) error {
	d, err := efiDisk(ctx, in, true, in.DiskSize)
	if err != nil {
		return err
	}
	return d.writeRaw(w)
}

// qcow2EFI writes NAME-efi.qcow2: the raw-efi disk as a qcow2 image of --size bytes (default
// 1 GiB, as qcow2-bios); only the clusters holding data are allocated.
type qcow2EFI struct{}

func (qcow2EFI) Name() string                { return "qcow2-efi" }
func (qcow2EFI) FileName(name string) string { return name + "-efi.qcow2" }
func (f qcow2EFI) Write(ctx context.Context, in *Input) ([]string, error) {
	return WriteStreamer(ctx, f, in)
}
func (qcow2EFI) Stream(ctx context.Context, in *Input, w io.Writer) error {
	d, err := efiDisk(ctx, in, false, sizeOr(in, defaultCloudSize))
	if err != nil {
		return err
	}
	return writeQcow2(w, d.size, d.extents())
}

// efiDisk lays out the GPT disk of in.
func efiDisk(ctx context.Context, in *Input, grub bool, size int64) (*gptDisk, error) {
	id := contentID(in)
	esp, err := espVolume(ctx, in, grub, id, mib/512)
	if err != nil {
		return nil, err
	}
	return newGPTDisk(esp, id, size)
}

// espVolume lays out the EFI system partition of in: the unified kernel image, or GRUB with
// its configuration, the kernel and the initramfs. hidden is its first sector on the disk.
func espVolume(ctx context.Context, in *Input, grub bool, id [16]byte, hidden int64) (*fatVolume, error) {
	return espVolumeWith(ctx, in, grub, true, id, hidden)
}

// espVolumeWith is espVolume; with grub, withFiles puts GRUB's configuration, the kernel and
// the initramfs in the partition too (on a disk), else GRUB finds them on the ISO.
func espVolumeWith(ctx context.Context, in *Input, grub, withFiles bool, id [16]byte, hidden int64) (*fatVolume, error) {
	if in.Kernel == "" {
		return nil, errors.New("the spec has no kernel to boot")
	}
	if in.Arch != "" && in.Arch != "amd64" {
		return nil, fmt.Errorf("the EFI formats boot amd64 images; this one is %s", in.Arch)
	}
	kernel, err := fileSection(in.Kernel)
	if err != nil {
		return nil, err
	}
	initrd, err := fileSection(in.Initrd)
	if err != nil {
		return nil, err
	}
	var files []fatFile
	if grub {
		cfg, err := grubConfig(in.Cmdline, "/"+espKernel, "/"+espInitrd)
		if err != nil {
			return nil, err
		}
		boot, err := bootFiles(ctx, in, bootGRUB)
		if err != nil {
			return nil, err
		}
		files = []fatFile{memFile(espLoader, boot[0])}
		if withFiles {
			files = append(files,
				memFile(espGRUB, cfg),
				fatFile{path: espKernel, size: kernel.size, write: kernel.copyTo},
				fatFile{path: espInitrd, size: initrd.size, write: initrd.copyTo})
		}
	} else {
		if strings.ContainsRune(in.Cmdline, 0) {
			return nil, errors.New("kernel command line: a NUL byte cannot be passed")
		}
		boot, err := bootFiles(ctx, in, bootStub)
		if err != nil {
			return nil, err
		}
		u, err := newUKI(boot[0], []ukiSection{
			{name: ".cmdline", size: int64(len(in.Cmdline)) + 1, data: append([]byte(in.Cmdline), 0)},
			{name: ".initrd", size: initrd.size, open: initrd.open},
			{name: ".linux", size: kernel.size, open: kernel.open},
		})
		if err != nil {
			return nil, fmt.Errorf("unified kernel image: %w", err)
		}
		files = []fatFile{{path: espLoader, size: u.size, write: u.write}}
	}
	return newFAT(files, time.Unix(in.MTime, 0), binary.LittleEndian.Uint32(id[4:]), "MOBYKIT", hidden)
}

// grubConfig boots kernel with initrd and the spec's command line, at once.
func grubConfig(cmdline, kernel, initrd string) ([]byte, error) {
	if i := strings.IndexAny(cmdline, "\r\n\"'\\$;|&<>{}#`"); i >= 0 {
		return nil, fmt.Errorf("kernel command line: %q cannot be passed through GRUB's configuration as is", cmdline[i:i+1])
	}
	return []byte("set timeout=0\nlinux " + kernel + " " + cmdline + "\ninitrd " + initrd + "\nboot\n"), nil
}

func memFile(p string, b []byte) fatFile {
	return fatFile{path: p, size: int64(len(b)), write: func(w io.Writer) error { _, err := w.Write(b); return err }}
}

// section is an input file, its size taken once so that the layout holds.
type section struct {
	path string
	size int64
}

func fileSection(p string) (section, error) {
	st, err := os.Stat(p)
	if err != nil {
		return section{}, err
	}
	return section{path: p, size: st.Size()}, nil
}

func (s section) open() (io.ReadCloser, error) { return os.Open(s.path) }

func (s section) copyTo(w io.Writer) error {
	f, err := os.Open(s.path)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, s.size))
	if err == nil && n != s.size {
		err = fmt.Errorf("%s: %d bytes, want %d (changed while writing?)", s.path, n, s.size)
	}
	return err
}

// writeEFIISO writes the ISO: the EFI system partition image as El Torito's EFI boot image.
// With grub, the partition holds GRUB only, which finds the kernel, the initramfs and its
// configuration on the ISO 9660 file system (GRUB sees the CD, not the partition image in it):
// its built-in configuration looks for /.disk/info and reads /boot/grub/grub.cfg next to it.
func writeEFIISO(ctx context.Context, in *Input, w io.Writer, grub bool) error {
	id := contentID(in)
	esp, err := espVolumeWith(ctx, in, grub, false, id, 0)
	if err != nil {
		return err
	}
	espOpen := func() (io.ReadCloser, error) {
		r, pw := io.Pipe()
		go func() {
			err := esp.write(pw)
			if err == nil {
				err = writeZeroBytes(pw, esp.size-esp.used)
			}
			pw.CloseWithError(err)
		}()
		return r, nil
	}
	const name = "efiboot.img"
	opts := iso.Options{Label: "MOBYKIT", ModTime: time.Unix(in.MTime, 0)}
	if !grub {
		opts.Boot = &iso.Boot{File: name, EFI: true}
		return iso.Write(w, []iso.File{{Name: name, Size: esp.size, Open: espOpen}}, opts)
	}
	cfg, err := grubConfig(in.Cmdline, "/kernel", "/initrd.img")
	if err != nil {
		return err
	}
	kernel, err := fileSection(in.Kernel)
	if err != nil {
		return err
	}
	initrd, err := fileSection(in.Initrd)
	if err != nil {
		return err
	}
	info := []byte("mobykit\n")
	file := func(size int64) *iso.Node { return &iso.Node{Mode: 0o100644, Size: size} }
	dir := func(c ...iso.Child) *iso.Node { return &iso.Node{Mode: 0o40755, Children: c} }
	espNode, kernelNode, initrdNode := file(esp.size), file(kernel.size), file(initrd.size)
	infoNode, cfgNode := file(int64(len(info))), file(int64(len(cfg)))
	root := dir(
		iso.Child{Name: ".disk", Node: dir(iso.Child{Name: "info", Node: infoNode})},
		iso.Child{Name: "boot", Node: dir(iso.Child{Name: "grub", Node: dir(iso.Child{Name: "grub.cfg", Node: cfgNode})})},
		iso.Child{Name: name, Node: espNode},
		iso.Child{Name: "kernel", Node: kernelNode},
		iso.Child{Name: "initrd.img", Node: initrdNode},
	)
	opts.Boot = &iso.Boot{EFI: true, Node: espNode}
	order := []*iso.Node{infoNode, cfgNode, espNode, kernelNode, initrdNode}
	return iso.WriteTree(w, root, order, opts, func(put func(*iso.Node, io.Reader) error) error {
		if err := put(infoNode, bytes.NewReader(info)); err != nil {
			return err
		}
		if err := put(cfgNode, bytes.NewReader(cfg)); err != nil {
			return err
		}
		for _, f := range []struct {
			n    *iso.Node
			open func() (io.ReadCloser, error)
		}{{espNode, espOpen}, {kernelNode, kernel.open}, {initrdNode, initrd.open}} {
			r, err := f.open()
			if err != nil {
				return err
			}
			err = put(f.n, r)
			r.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
}
