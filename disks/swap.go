package disks

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SwapOptions are the swap image's flags (LinuxKit's swap.sh).
type SwapOptions struct {
	Path       string   // --path: the swap file, under /var
	Size       int64    // --size in bytes
	Encrypt    bool     // --encrypt (refused: no cryptsetup in mobykit's image)
	Conditions []string // --condition part:PATH[:required] or partsize:PATH:SIZE[:required]
	Debug      bool
}

// ParseSwapArgs parses swap.sh's command line.
func ParseSwapArgs(args []string) (SwapOptions, error) {
	var o SwapOptions
	var size string
	for i := 0; i < len(args); i++ {
		a := args[i]
		value := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s needs a value", a)
			}
			i++
			return args[i], nil
		}
		var err error
		switch a {
		case "--debug":
			o.Debug = true
		case "--encrypt":
			o.Encrypt = true
		case "--path":
			o.Path, err = value()
		case "--size":
			size, err = value()
		case "--condition":
			var c string
			c, err = value()
			o.Conditions = append(o.Conditions, c)
		default:
			err = fmt.Errorf("unknown option %q", a)
		}
		if err != nil {
			return o, err
		}
	}
	if o.Path == "" {
		return o, errors.New("--path <path> must be defined")
	}
	if !strings.HasPrefix(o.Path, "/var/") || len(o.Path) < 6 || filepath.Clean(o.Path) != o.Path {
		return o, fmt.Errorf("--path %q must be a clean path under /var", o.Path)
	}
	if size == "" {
		return o, errors.New("--size <size> must be defined")
	}
	var err error
	if o.Size, err = ParseSize(size); err != nil {
		return o, fmt.Errorf("--size: %w", err)
	}
	if o.Encrypt {
		return o, errors.New("--encrypt is not supported by mobykit's swap image (it carries no cryptsetup)")
	}
	for _, c := range o.Conditions {
		if _, err := parseCondition(c); err != nil {
			return o, err
		}
	}
	return o, nil
}

// ParseSize parses 2G, 100M, 5670K or a number of bytes.
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a positive number with an optional G, M or K", s)
	}
	return n * mult, nil
}

type condition struct {
	kind, path string
	min        int64
	required   bool
}

func parseCondition(s string) (condition, error) {
	f := strings.Split(s, ":")
	var c condition
	bad := fmt.Errorf("--condition %q: want part:PATH[:required] or partsize:PATH:SIZE[:required]", s)
	switch {
	case f[0] == "part" && (len(f) == 2 || len(f) == 3):
		c = condition{kind: "part", path: f[1], required: len(f) == 3 && f[2] == "true"}
	case f[0] == "partsize" && (len(f) == 3 || len(f) == 4):
		n, err := ParseSize(f[2])
		if err != nil {
			return c, fmt.Errorf("--condition %q: %w", s, err)
		}
		c = condition{kind: "partsize", path: f[1], min: n, required: len(f) == 4 && f[3] == "true"}
	default:
		return c, bad
	}
	if c.path == "" {
		return c, bad
	}
	return c, nil
}

// CheckConditions evaluates the conditions: ok is false when one is not met, and err is set
// when that condition was required (the container then fails; otherwise it exits 0 without
// making swap). mountPoints are the current mount points; free returns a path's file system
// size in bytes.
func (o SwapOptions) CheckConditions(mountPoints map[string]bool, size func(string) (int64, error)) (ok bool, err error) {
	for _, s := range o.Conditions {
		c, err := parseCondition(s)
		if err != nil {
			return false, err
		}
		met := true
		switch c.kind {
		case "part":
			met = mountPoints[filepath.Clean(c.path)]
		case "partsize":
			n, err := size(c.path)
			met = err == nil && n >= c.min
		}
		if !met {
			if c.required {
				return false, fmt.Errorf("required condition %q not met", s)
			}
			return false, nil
		}
	}
	return true, nil
}

// MakeSwapFile creates path as a swap file of size bytes (zero-filled: swap files must have
// no holes) with a swap header for the given page size, unless it exists with that size
// already. It reports whether it wrote a new one.
func MakeSwapFile(path string, size int64, pageSize int, random io.Reader) (bool, error) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Size() == size {
		return false, nil
	}
	if size < int64(pageSize)*10 {
		return false, fmt.Errorf("swap size %d is under 10 pages", size)
	}
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return false, err
	}
	err = fillZero(f, size)
	if err == nil {
		err = WriteSwapHeader(f, size, pageSize, random)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("making swap file %s: %w", path, err)
	}
	return true, nil
}

func fillZero(f *os.File, size int64) error {
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		if _, err := f.Write(buf[:n]); err != nil {
			return err
		}
		left -= n
	}
	return nil
}

// WriteSwapHeader writes a version 1 swap header (what mkswap writes) for a swap area of size
// bytes.
func WriteSwapHeader(w io.WriterAt, size int64, pageSize int, random io.Reader) error {
	h := make([]byte, pageSize)
	binary.LittleEndian.PutUint32(h[1024:], 1)                              // version
	binary.LittleEndian.PutUint32(h[1028:], uint32(size/int64(pageSize)-1)) // last page
	if random == nil {
		random = rand.Reader
	}
	if _, err := io.ReadFull(random, h[1036:1052]); err != nil {
		return err
	}
	h[1036+6] = h[1036+6]&0x0f | 0x40 // UUID version 4
	h[1036+8] = h[1036+8]&0x3f | 0x80
	copy(h[pageSize-10:], "SWAPSPACE2")
	_, err := w.WriteAt(h, 0)
	return err
}

// Swapon enables swapping on path.
func Swapon(path string) error {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return err
	}
	if _, _, errno := unix.Syscall(unix.SYS_SWAPON, uintptr(unsafe.Pointer(p)), 0, 0); errno != 0 {
		return fmt.Errorf("swapon %s: %w", path, errno)
	}
	return nil
}
