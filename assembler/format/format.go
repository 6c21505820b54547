package format

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/mobykit/mobykit/internal/atomicfile"
)

// Input is what a format is given. Paths are absolute.
type Input struct {
	// Name is the base name of the outputs (NAME-kernel, ...).
	Name string
	// Dir is the output directory.
	Dir string
	// Kernel is the kernel image file; "" when the spec has no kernel.
	Kernel string
	// Cmdline is the kernel command line.
	Cmdline string
	// Initrd is the complete initramfs: UCode (if any) followed by the
	// compressed Segments. It is a temporary file, removed after all
	// formats ran: link or copy it, do not rename it.
	Initrd string
	// UCode is the uncompressed CPU microcode cpio, "" if none.
	UCode string
	// Segments are the compressed cpio segments of the initramfs, in order.
	Segments []string
	// Arch is the target architecture (GOARCH spelling).
	Arch string
	// MTime is the modification time (seconds) for archive entries.
	MTime int64
	// DiskSize is the size in bytes asked for disk formats (--size); 0 fits the contents.
	DiskSize int64
	// Bootloader returns a file of the bootloader image (isolinux.bin, isohdpfx.bin,
	// ldlinux.c32): formats that need one take it from there and nowhere else.
	Bootloader func(ctx context.Context, name string) ([]byte, error)
}

// Format writes one kind of output.
type Format interface {
	// Name is what --format selects ("kernel+initrd").
	Name() string
	// Write produces the outputs and returns the paths written.
	Write(ctx context.Context, in *Input) ([]string, error)
}

// Streamer is a format whose output is a single file written front to back, so that it can go
// to any file (-o FILE) or to stdout (-o -).
type Streamer interface {
	Format
	// FileName is the output's file name for base name name ("hello.tar").
	FileName(name string) string
	// Stream writes the output to w.
	Stream(ctx context.Context, in *Input, w io.Writer) error
}

// WriteStreamer is the Write of a Streamer: it streams into in.Dir/FileName(in.Name)
// atomically.
func WriteStreamer(ctx context.Context, s Streamer, in *Input) ([]string, error) {
	p := filepath.Join(in.Dir, s.FileName(in.Name))
	if err := WriteFile(p, 0o644, func(w io.Writer) error { return s.Stream(ctx, in, w) }); err != nil {
		return nil, fmt.Errorf("%s: %w", s.Name(), err)
	}
	return []string{p}, nil
}

var (
	mu       sync.RWMutex
	registry = map[string]Format{}
)

// Register adds a format; it panics on a duplicate name (a programming
// error caught at init time).
func Register(f Format) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[f.Name()]; dup {
		panic("format: duplicate registration of " + f.Name())
	}
	registry[f.Name()] = f
}

// Lookup returns the format registered as name.
func Lookup(name string) (Format, error) {
	mu.RLock()
	defer mu.RUnlock()
	f, ok := registry[name]
	if !ok && name == "rpi3" {
		return nil, fmt.Errorf("format rpi3 (a Raspberry Pi 3 SD card) is LinuxKit's but not mobykit's: it needs the Pi's non-free GPU firmware, see docs/formats.md (known: %v)", namesLocked())
	}
	if !ok {
		return nil, fmt.Errorf("unknown format %q (known: %v)", name, namesLocked())
	}
	return f, nil
}

// Names lists the registered formats, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	return namesLocked()
}

func namesLocked() []string {
	out := make([]string, 0, len(registry))
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// WriteFile writes path atomically (temporary file + rename) from fill; an error from fill is
// wrapped with the path.
func WriteFile(path string, mode os.FileMode, fill func(io.Writer) error) error {
	return atomicfile.Write(path, mode, func(w io.Writer) error {
		if err := fill(w); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	})
}

// CopyFile copies src to dst atomically.
func CopyFile(dst, src string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return WriteFile(dst, mode, func(w io.Writer) error { _, err := io.Copy(w, in); return err })
}

// LinkOrCopy makes dst a hard link of src (atomically replacing dst), or a
// copy when linking is impossible.
func LinkOrCopy(dst, src string, mode os.FileMode) error {
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".link")
	os.Remove(tmp)
	if err := os.Link(src, tmp); err == nil {
		if err := os.Chmod(tmp, mode); err != nil {
			os.Remove(tmp)
			return err
		}
		if err := os.Rename(tmp, dst); err != nil {
			os.Remove(tmp)
			return err
		}
		return nil
	}
	return CopyFile(dst, src, mode)
}
