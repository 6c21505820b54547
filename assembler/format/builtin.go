package format

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mobykit/mobykit/assembler/fstree"
	"github.com/mobykit/mobykit/assembler/initrd"
)

func init() {
	Register(kernelInitrd{})
	Register(tarFormat{})
	Register(tarKernelInitrd{})
}

// kernelInitrd writes NAME-kernel, NAME-initrd.img (microcode first, as
// LinuxKit does) and NAME-cmdline.
type kernelInitrd struct{}

func (kernelInitrd) Name() string { return "kernel+initrd" }

func (kernelInitrd) Write(_ context.Context, in *Input) ([]string, error) {
	base := filepath.Join(in.Dir, in.Name)
	var out []string
	if in.Kernel != "" {
		if err := CopyFile(base+"-kernel", in.Kernel, 0o644); err != nil {
			return out, fmt.Errorf("kernel+initrd: %w", err)
		}
		out = append(out, base+"-kernel")
	}
	if err := LinkOrCopy(base+"-initrd.img", in.Initrd, 0o644); err != nil {
		return out, fmt.Errorf("kernel+initrd: %w", err)
	}
	out = append(out, base+"-initrd.img")
	if err := WriteFile(base+"-cmdline", 0o644, func(w io.Writer) error {
		_, err := io.WriteString(w, in.Cmdline)
		return err
	}); err != nil {
		return out, fmt.Errorf("kernel+initrd: %w", err)
	}
	return append(out, base+"-cmdline"), nil
}

// tarKernelInitrd writes NAME-initrd.tar holding kernel, initrd.img,
// cmdline and ucode.cpio, as LinuxKit's tar-kernel-initrd.
type tarKernelInitrd struct{}

func (tarKernelInitrd) Name() string { return "tar-kernel-initrd" }

func (tarKernelInitrd) FileName(name string) string { return name + "-initrd.tar" }

func (f tarKernelInitrd) Write(ctx context.Context, in *Input) ([]string, error) {
	return WriteStreamer(ctx, f, in)
}

func (tarKernelInitrd) Stream(_ context.Context, in *Input, w io.Writer) error {
	tw := tar.NewWriter(w)
	mt := time.Unix(in.MTime, 0)
	if in.Kernel != "" {
		if err := tarAddFile(tw, "kernel", in.Kernel, mt); err != nil {
			return err
		}
	}
	var size int64
	var readers []io.Reader
	for _, s := range in.Segments {
		f, err := os.Open(s)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		size += st.Size()
		readers = append(readers, f)
	}
	if err := tarAdd(tw, "initrd.img", size, io.MultiReader(readers...), mt); err != nil {
		return err
	}
	if in.Cmdline != "" {
		if err := tarAdd(tw, "cmdline", int64(len(in.Cmdline)), strings.NewReader(in.Cmdline), mt); err != nil {
			return err
		}
	}
	if in.UCode != "" {
		if err := tarAddFile(tw, "ucode.cpio", in.UCode, mt); err != nil {
			return err
		}
	}
	return tw.Close()
}

// tarFormat writes NAME.tar: the whole root filesystem, with the kernel
// as boot/kernel, the command line as boot/cmdline and the microcode as
// boot/ucode.cpio, as LinuxKit's tar output.
type tarFormat struct{}

func (tarFormat) Name() string { return "tar" }

func (tarFormat) FileName(name string) string { return name + ".tar" }

func (f tarFormat) Write(ctx context.Context, in *Input) ([]string, error) {
	return WriteStreamer(ctx, f, in)
}

func (tarFormat) Stream(_ context.Context, in *Input, w io.Writer) error {
	tw := tar.NewWriter(w)
	mt := time.Unix(in.MTime, 0)
	if in.Kernel != "" || in.UCode != "" {
		if err := tw.WriteHeader(&tar.Header{Name: "boot", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mt, Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	if in.Kernel != "" {
		if err := tarAdd(tw, "boot/cmdline", int64(len(in.Cmdline)), strings.NewReader(in.Cmdline), mt); err != nil {
			return err
		}
		if err := tarAddFile(tw, "boot/kernel", in.Kernel, mt); err != nil {
			return err
		}
	}
	if in.UCode != "" {
		if err := tarAddFile(tw, "boot/ucode.cpio", in.UCode, mt); err != nil {
			return err
		}
	}
	for _, s := range in.Segments {
		if err := segmentToTar(tw, s, in.Kernel != "" || in.UCode != ""); err != nil {
			return fmt.Errorf("segment %s: %w", filepath.Base(s), err)
		}
	}
	return tw.Close()
}

func tarAddFile(tw *tar.Writer, name, path string, mt time.Time) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	return tarAdd(tw, name, st.Size(), f, mt)
}

// tarAdd writes a regular file entry of size bytes read from r.
func tarAdd(tw *tar.Writer, name string, size int64, r io.Reader, mt time.Time) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: mt, Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err := io.Copy(tw, r)
	return err
}

// eachEntry calls fn for every entry of a compressed cpio segment, with its index and a reader
// of its data.
func eachEntry(p string, fn func(int, *initrd.Header, io.Reader) error) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := initrd.Decompress(f)
	if err != nil {
		return err
	}
	defer zr.Close()
	cr := initrd.NewReader(zr)
	for i := 0; ; i++ {
		h, err := cr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(i, h, cr); err != nil {
			return err
		}
	}
}

// segmentToTar converts one compressed cpio segment to tar entries. Names
// sharing an inode become hard links to the first.
func segmentToTar(tw *tar.Writer, path string, skipBoot bool) error {
	first := map[uint32]string{}
	return eachEntry(path, func(_ int, h *initrd.Header, r io.Reader) error {
		if skipBoot && h.Name == "boot" {
			return nil
		}
		th := &tar.Header{Name: h.Name, Mode: int64(h.Mode & 0o7777), Uid: int(h.UID), Gid: int(h.GID), ModTime: time.Unix(h.MTime, 0), Format: tar.FormatPAX}
		switch h.Mode & fstree.TypeMask {
		case fstree.TypeDir:
			th.Typeflag = tar.TypeDir
		case fstree.TypeSymlink:
			th.Typeflag, th.Linkname = tar.TypeSymlink, h.Linkname
		case fstree.TypeChar, fstree.TypeBlock:
			th.Typeflag = tar.TypeChar
			if h.Mode&fstree.TypeMask == fstree.TypeBlock {
				th.Typeflag = tar.TypeBlock
			}
			th.Devmajor, th.Devminor = int64(h.DevMajor), int64(h.DevMinor)
		case fstree.TypeFifo:
			th.Typeflag = tar.TypeFifo
		case fstree.TypeReg:
			th.Typeflag = tar.TypeReg
			if h.NLink > 1 {
				if t, ok := first[h.Ino]; ok {
					th.Typeflag, th.Linkname = tar.TypeLink, t
					break
				}
				first[h.Ino] = h.Name
			}
			th.Size = h.Size
		default:
			return fmt.Errorf("%s: unsupported mode %s", h.Name, strconv.FormatUint(uint64(h.Mode), 8))
		}
		if err := tw.WriteHeader(th); err != nil {
			return err
		}
		if th.Size > 0 {
			if _, err := io.Copy(tw, r); err != nil {
				return err
			}
		}
		return nil
	})
}
