package assembler

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/mobykit/mobykit/assembler/format"
)

// Flags are the output flags of `mobykit build`, with the meanings `linuxkit build` gives them,
// so that scripts written for linuxkit run unchanged.
type Flags struct {
	// Dir is --dir: the folder of the outputs ("" is the current folder).
	Dir string
	// File is -o: the file of a single output, or "-" for stdout.
	File string
	// Name is --name: the base name of the outputs ("" derives it from the last spec).
	Name string
	// Formats is --format, repeated; empty means kernel+initrd, or tar with -o.
	Formats []string
	// Size is --size as linuxkit spells it ("1024M", "2G", "2" = 2G); "" is not set.
	Size string
	// InputTar is --input-tar.
	InputTar string
	// Specs are the spec files, in order ("-" is stdin).
	Specs []string
}

// ErrOutputIsFolder is returned for `-o DIR`: -o used to name the output folder; like
// linuxkit's, it now names a single output file and --dir names the folder.
var ErrOutputIsFolder = errors.New("-o names a single output file (as in linuxkit build); use --dir for the output folder")

// Apply checks f as `linuxkit build` does and sets the output fields of o (OutputDir,
// OutputFile, Name, Formats, DiskSize, InputTar). notes are said to the user: a meaning that
// changed from earlier mobykit releases.
func (f Flags) Apply(o *Options) (notes []string, err error) {
	if f.File != "" && f.File != "-" {
		if strings.HasSuffix(f.File, "/") || strings.HasSuffix(f.File, string(filepath.Separator)) {
			return nil, fmt.Errorf("-o %s: %w", f.File, ErrOutputIsFolder)
		}
		if st, err := os.Stat(f.File); err == nil && st.IsDir() {
			return nil, fmt.Errorf("-o %s: is a folder: %w", f.File, ErrOutputIsFolder)
		}
	}
	formats := f.Formats
	if len(formats) == 0 {
		formats = []string{"kernel+initrd"}
		if f.File != "" {
			formats = []string{"tar"}
			notes = append(notes, fmt.Sprintf("-o %s: writing the tar format to that file, as linuxkit build does (--format selects another; --dir names an output folder)", f.File))
		}
	}
	for _, n := range formats {
		if _, err := format.Lookup(n); err != nil {
			return nil, fmt.Errorf("--format: %w", err)
		}
	}
	if f.File != "" {
		switch {
		case len(formats) > 1:
			return nil, errors.New("-o can only be given when building a single output format")
		case f.Name != "":
			return nil, errors.New("-o cannot be given with --name")
		case f.Dir != "":
			return nil, errors.New("-o cannot be given with --dir")
		}
		s, _ := format.Lookup(formats[0])
		if _, ok := s.(format.Streamer); !ok {
			return nil, fmt.Errorf("-o cannot be given for format %s: it writes several files (use --dir and --name)", formats[0])
		}
	}
	if f.InputTar != "" {
		if o.Pull {
			return nil, errors.New("cannot use --input-tar and --pull together")
		}
		if f.File != "" && f.File != "-" && sameFile(f.InputTar, f.File) {
			return nil, errors.New("--input-tar and the output file (-o) cannot be the same")
		}
		if err := checkTar(f.InputTar); err != nil {
			return nil, fmt.Errorf("--input-tar %s: %w", f.InputTar, err)
		}
	}
	name := f.Name
	if name == "" && len(f.Specs) > 0 {
		last := f.Specs[len(f.Specs)-1]
		if last == "-" {
			name = "linuxkit" // linuxkit's defaultNameForStdin
		} else {
			name = strings.TrimSuffix(filepath.Base(last), filepath.Ext(last))
		}
	}
	if f.File != "" && f.File != "-" {
		name = strings.TrimSuffix(filepath.Base(f.File), filepath.Ext(f.File))
	}
	if f.Size != "" {
		if o.DiskSize, err = ParseSize(f.Size); err != nil {
			return nil, fmt.Errorf("--size %q: %w", f.Size, err)
		}
	}
	o.Name, o.Formats, o.OutputFile, o.InputTar = name, formats, f.File, f.InputTar
	o.OutputDir = f.Dir
	if o.OutputDir == "" {
		o.OutputDir = "."
	}
	return notes, nil
}

// ParseSize reads a disk size as linuxkit's --size does: "NM" is N MiB, "NG" and a bare "N"
// are N GiB. It returns bytes.
func ParseSize(s string) (int64, error) {
	unit := int64(1 << 30)
	switch {
	case strings.HasSuffix(s, "M"):
		s, unit = s[:len(s)-1], 1<<20
	case strings.HasSuffix(s, "G"):
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("want a positive number of MiB (1024M) or GiB (2G)")
	}
	if n > (1<<50)/unit {
		return 0, errors.New("larger than a PiB")
	}
	return n * unit, nil
}

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	if err1 == nil && err2 == nil {
		return os.SameFile(sa, sb)
	}
	aa, _ := filepath.Abs(a)
	bb, _ := filepath.Abs(b)
	return aa == bb
}

// checkTar checks that p is a readable tar archive: --input-tar is only an optimisation for
// linuxkit, and mobykit's segment cache already reuses every unchanged image, so the archive is
// not read further; a wrong path is still an error, as it is for linuxkit.
func checkTar(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	h := make([]byte, 512)
	if _, err := f.ReadAt(h, 0); err != nil {
		return fmt.Errorf("not a tar archive: %w", err)
	}
	if string(h[257:262]) != "ustar" {
		return errors.New("not a tar archive (no ustar header)")
	}
	return nil
}
