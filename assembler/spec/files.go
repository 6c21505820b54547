package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Pos returns where the entry was defined.
func (f *File) Pos() Pos { return f.pos }

// cleanPath turns a files: path into a path relative to the image root,
// refusing anything that would land outside it.
func cleanPath(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("path is required")
	}
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("path %q contains a NUL byte", p)
	}
	rel := strings.TrimLeft(p, "/")
	for _, elem := range strings.Split(rel, "/") {
		if elem == ".." {
			return "", fmt.Errorf("path %q must not contain '..'", p)
		}
	}
	c := path.Clean(rel)
	if c == "." || c == "" {
		return "", fmt.Errorf("path %q names the image root", p)
	}
	return c, nil
}

func (f *File) mode() (uint32, error) {
	mode := uint64(0600)
	if f.Directory {
		mode = 0700
	}
	if f.Mode != "" {
		var err error
		mode, err = strconv.ParseUint(f.Mode, 8, 32)
		if err != nil {
			return 0, fmt.Errorf("cannot parse mode %q as an octal number", f.Mode)
		}
		if mode&^07777 != 0 {
			return 0, fmt.Errorf("mode %q has bits beyond 07777", f.Mode)
		}
	}
	return uint32(mode), nil
}

// check validates a files: entry as LinuxKit's build does, but before any
// image is fetched.
func (f *File) check(ids map[string]uint32) error {
	p := f.pos
	if _, err := cleanPath(f.Path); err != nil {
		q := p
		q.Field += ".path"
		return q.wrap(err, "bad path")
	}
	if _, err := f.mode(); err != nil {
		q := p
		q.Field += ".mode"
		return q.wrap(err, "bad mode")
	}
	for _, id := range []struct {
		field string
		v     any
	}{{"uid", f.UID}, {"gid", f.GID}} {
		if _, err := IDNumeric(id.v, ids); err != nil {
			q := p
			q.Field += "." + id.field
			return q.wrap(err, "bad id")
		}
	}
	kinds := 0
	for _, set := range []bool{f.Directory, f.Symlink != "", f.Contents != nil, f.Source != "", f.Metadata != ""} {
		if set {
			kinds++
		}
	}
	switch {
	case kinds == 0:
		return p.errorf("contents of file %q not specified: set one of contents, source, metadata, symlink or directory", f.Path)
	case kinds > 1:
		return p.errorf("file %q: only one of contents, source, metadata, symlink and directory may be set", f.Path)
	}
	if f.Metadata != "" && f.Metadata != "yaml" && f.Metadata != "json" {
		q := p
		q.Field += ".metadata"
		return q.errorf("unsupported metadata type %q (yaml or json)", f.Metadata)
	}
	return nil
}

// FileEntries turns `files:` into the entries to write into the
// initramfs, in spec order, each preceded by its leading directories (once,
// marked Implicit) exactly as LinuxKit writes them. A relative `source` is
// read relative to the directory of the spec file that defined it (or
// baseDir for entries not parsed from a file); "~/" is the home directory;
// an `optional` source that cannot be read is skipped. `metadata: yaml|json`
// embeds this spec. uid/gid may name a container (see IDMap).
func (m *Moby) FileEntries(baseDir string) ([]FileEntry, error) {
	ids := m.IDMap()
	added := map[string]bool{}
	var out []FileEntry
	var total int64
	rendered := map[string][]byte{}
	for i := range m.Files {
		f := &m.Files[i]
		if err := f.check(ids); err != nil {
			return nil, err
		}
		rel, _ := cleanPath(f.Path)
		mode, _ := f.mode()
		uid, _ := IDNumeric(f.UID, ids)
		gid, _ := IDNumeric(f.GID, ids)
		origin := f.pos.String()

		e := FileEntry{Path: rel, Mode: mode, UID: uid, GID: gid, Origin: origin}
		switch {
		case f.Directory:
			e.Directory = true
		case f.Symlink != "":
			e.Symlink = f.Symlink
		case f.Contents != nil:
			e.Contents = []byte(*f.Contents)
		case f.Metadata != "":
			// rendered once per kind: every metadata entry is the same spec
			data, ok := rendered[f.Metadata]
			if !ok {
				var err error
				if data, err = m.metadata(f.Metadata); err != nil {
					return nil, f.pos.wrap(err, "metadata")
				}
				rendered[f.Metadata] = data
			}
			e.Contents = data
		default:
			src, err := f.sourcePath(baseDir)
			if err != nil {
				return nil, f.pos.wrap(err, "source")
			}
			if f.Optional {
				if _, err := os.Stat(src); err != nil {
					continue
				}
			}
			data, err := readSource(src)
			if err != nil {
				return nil, f.pos.wrap(err, "source %s", f.Source)
			}
			e.Contents = data
		}
		if total += int64(len(e.Contents)); total > maxFilesBytes {
			return nil, f.pos.errorf("the files: entries up to this one add up to more than %d MB", maxFilesBytes>>20)
		}

		dirMode := mode
		if dirMode&0700 != 0 {
			dirMode |= 0100
		}
		if dirMode&0070 != 0 {
			dirMode |= 0010
		}
		if dirMode&0007 != 0 {
			dirMode |= 0001
		}
		parent := path.Dir(rel)
		if parent != "." {
			elems := strings.Split(parent, "/")
			for j := range elems {
				d := strings.Join(elems[:j+1], "/")
				if added[d] {
					continue
				}
				added[d] = true
				out = append(out, FileEntry{Path: d, Mode: dirMode, UID: uid, GID: gid, Directory: true, Implicit: true, Origin: origin})
			}
		}
		added[rel] = true
		out = append(out, e)
	}
	return out, nil
}

// MaxSourceBytes bounds one `files: source:` file, and MaxFilesBytes all
// the files: entries' contents together: they are held in memory while the
// initramfs is written.
const (
	MaxSourceBytes = 256 << 20
	MaxFilesBytes  = 1 << 30
)

// maxFilesBytes is MaxFilesBytes; tests lower it.
var maxFilesBytes int64 = MaxFilesBytes

// notRegular says what a non-regular file is.
func notRegular(mode os.FileMode) error {
	var kind string
	switch {
	case mode.IsRegular():
		return nil
	case mode.IsDir():
		kind = "a folder (use directory: true for an empty one)"
	case mode&os.ModeNamedPipe != 0:
		kind = "a FIFO"
	case mode&os.ModeSocket != 0:
		kind = "a socket"
	case mode&os.ModeCharDevice != 0:
		kind = "a character device"
	case mode&os.ModeDevice != 0:
		kind = "a block device"
	default:
		kind = "a special file (" + mode.Type().String() + ")"
	}
	return errors.New("is " + kind + ", not a regular file")
}

// readSource reads a `files: source:`, which must be a regular file (a
// symlink to one is followed, as LinuxKit does) of at most MaxSourceBytes.
// Devices, FIFOs, sockets and folders are refused from their mode before
// they are opened: /dev/zero never ends, a FIFO without a writer blocks,
// and opening some devices acts (a watchdog starts counting).
func readSource(src string) ([]byte, error) {
	st, err := os.Stat(src)
	if err != nil {
		return nil, err
	}
	if err := notRegular(st.Mode()); err != nil {
		return nil, err
	}
	return readOpened(src)
}

// readOpened opens src without blocking (it may have been replaced by a
// FIFO since it was checked) and reads it if what was opened is a regular
// file of at most MaxSourceBytes.
func readOpened(src string) ([]byte, error) {
	fd, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return nil, err
	}
	if err := notRegular(st.Mode()); err != nil {
		return nil, err
	}
	tooBig := fmt.Errorf("larger than %d MB", MaxSourceBytes>>20)
	if st.Size() > MaxSourceBytes {
		return nil, tooBig
	}
	data, err := io.ReadAll(io.LimitReader(fd, MaxSourceBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSourceBytes { // it grew while being read
		return nil, tooBig
	}
	return data, nil
}

func (f *File) sourcePath(baseDir string) (string, error) {
	src := f.Source
	if strings.HasPrefix(src, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("expand %q: %w", src, err)
		}
		return filepath.Join(home, src[2:]), nil
	}
	if filepath.IsAbs(src) {
		return src, nil
	}
	dir := f.dir
	if dir == "" {
		dir = baseDir
	}
	return filepath.Join(dir, src), nil
}

// metadata renders the spec for a `metadata:` file.
func (m *Moby) metadata(kind string) ([]byte, error) {
	switch kind {
	case "yaml":
		return m.Bytes()
	case "json":
		return json.MarshalIndent(m, "", "    ")
	}
	return nil, fmt.Errorf("unsupported metadata type %q", kind)
}
