package pkgbuild

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
)

// Tree is the content of an image being built: absolute clean paths to entries. Adding a path
// again replaces the earlier entry; missing parent directories are implied (0755).
type Tree struct {
	entries map[string]*Entry
}

// Entry is one file, directory or symlink of a Tree.
type Entry struct {
	Type     byte // tar.TypeReg, tar.TypeDir or tar.TypeSymlink
	Mode     fs.FileMode
	Data     []byte
	Linkname string
}

// NewTree returns an empty tree.
func NewTree() *Tree { return &Tree{entries: map[string]*Entry{}} }

func cleanImagePath(p string) (string, error) {
	c := path.Clean("/" + p)
	if c == "/" {
		return "", fmt.Errorf("path %q names the root", p)
	}
	return c, nil
}

// File adds a regular file.
func (t *Tree) File(p string, mode fs.FileMode, data []byte) error {
	c, err := cleanImagePath(p)
	if err != nil {
		return err
	}
	t.entries[c] = &Entry{Type: tar.TypeReg, Mode: mode.Perm(), Data: data}
	return nil
}

// Dir adds a directory.
func (t *Tree) Dir(p string, mode fs.FileMode) error {
	c, err := cleanImagePath(p)
	if err != nil {
		return err
	}
	t.entries[c] = &Entry{Type: tar.TypeDir, Mode: mode.Perm()}
	return nil
}

// Symlink adds a symbolic link to target (written as given).
func (t *Tree) Symlink(p, target string) error {
	c, err := cleanImagePath(p)
	if err != nil {
		return err
	}
	t.entries[c] = &Entry{Type: tar.TypeSymlink, Mode: 0o777, Linkname: target}
	return nil
}

// Get returns the entry at p, or nil.
func (t *Tree) Get(p string) *Entry {
	c, err := cleanImagePath(p)
	if err != nil {
		return nil
	}
	return t.entries[c]
}

// Paths returns every explicit path, sorted.
func (t *Tree) Paths() []string {
	out := make([]string, 0, len(t.entries))
	for p := range t.entries {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Tar writes the tree as a deterministic tar: implied parents added, entries sorted by path,
// owner root, times set to mtime.
func (t *Tree) Tar(mtime time.Time) ([]byte, error) {
	all := map[string]*Entry{}
	for p, e := range t.entries {
		all[p] = e
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if _, ok := all[d]; !ok {
				if _, ok := t.entries[d]; !ok {
					all[d] = &Entry{Type: tar.TypeDir, Mode: 0o755}
				}
			}
		}
	}
	for p, e := range all {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if pe := all[d]; pe.Type != tar.TypeDir {
				return nil, fmt.Errorf("%s: parent %s is not a directory", p, d)
			}
		}
		_ = e
	}
	paths := make([]string, 0, len(all))
	for p := range all {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		e := all[p]
		name := strings.TrimPrefix(p, "/")
		h := &tar.Header{
			Typeflag: e.Type,
			Name:     name,
			Mode:     int64(e.Mode.Perm()),
			ModTime:  mtime,
			Uname:    "root",
			Gname:    "root",
		}
		switch e.Type {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeReg:
			h.Size = int64(len(e.Data))
		case tar.TypeSymlink:
			h.Linkname = e.Linkname
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar %s: %w", p, err)
		}
		if e.Type == tar.TypeReg {
			if _, err := tw.Write(e.Data); err != nil {
				return nil, fmt.Errorf("tar %s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
