// Package atomicfile writes files so that readers see either the old content or the new, never
// a torn one: through a temporary file in the same folder, then a rename.
//
// The durable variants (WriteFile, WriteFileIn, RemoveIn, MkdirAll) also fsync the folder
// after the rename, remove or mkdir: a rename is a change to the folder, and until the folder
// is synced a crash can bring back the old name, or lose the new one altogether.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

// TestHookDirSynced, when set, is called with the name of every folder this package has just
// fsynced. Tests set it to check that a rename or remove is made durable; it is nil otherwise.
var TestHookDirSynced func(dir string)

// Write creates path's folder if needed and fills a temporary file beside path with fill, then
// renames it over path. It does not fsync: use it for caches and build outputs that can be made
// again. On any error the temporary file is removed and path is untouched.
func Write(path string, perm os.FileMode, fill func(io.Writer) error) error {
	return write(path, perm, false, fill)
}

// WriteFile is Write for bytes in memory, with an fsync of the file before the rename and of
// its folder (and of any folder it created) after: use it for state that must survive a crash
// (VM records, stored specs).
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return write(path, perm, true, fillWith(data))
}

// WriteFileIn is WriteFile for name beneath root: the file, its temporary and the folder that is
// synced all stay beneath root, whatever name holds ("..", symbolic links). The folder of name
// must exist.
func WriteFileIn(root *os.Root, name string, data []byte, perm os.FileMode) error {
	return writeIn(root, name, perm, true, fillWith(data))
}

// RemoveIn removes name beneath root, then fsyncs its folder so that the removal survives a
// crash. A missing name gives an error that matches fs.ErrNotExist.
func RemoveIn(root *os.Root, name string) error {
	if err := root.Remove(name); err != nil {
		return err
	}
	if err := syncDirIn(root, filepath.Dir(name)); err != nil {
		return fmt.Errorf("remove %s: %w", filepath.Join(root.Name(), name), err)
	}
	return nil
}

// MkdirAll is os.MkdirAll that fsyncs the parent of every folder it creates, so that the new
// folders survive a crash.
func MkdirAll(dir string, perm os.FileMode) error {
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		_, err := os.Stat(d)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], perm); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := syncDir(filepath.Dir(missing[i])); err != nil {
			return fmt.Errorf("mkdir %s: %w", missing[i], err)
		}
	}
	return nil
}

func fillWith(data []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}
}

func write(path string, perm os.FileMode, sync bool, fill func(io.Writer) error) error {
	dir := filepath.Dir(path)
	mkdir := os.MkdirAll
	if sync {
		mkdir = MkdirAll
	}
	if err := mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer root.Close()
	return writeIn(root, filepath.Base(path), perm, sync, fill)
}

// writeIn is the one implementation of every write: temporary file beside name (created
// exclusively, mode 0600 until it is complete), optional file fsync, chmod, rename, optional
// folder fsync.
func writeIn(root *os.Root, name string, perm os.FileMode, sync bool, fill func(io.Writer) error) (err error) {
	path := filepath.Join(root.Name(), name)
	dir := filepath.Dir(name)
	f, tmp, err := createTemp(root, dir, "."+filepath.Base(name)+".tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			root.Remove(tmp)
		}
	}()
	if err := fill(f); err != nil {
		return err
	}
	if sync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := root.Chmod(tmp, perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := root.Rename(tmp, name); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if sync {
		if err := syncDirIn(root, dir); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return nil
}

// createTemp is os.CreateTemp beneath root: prefix followed by a random suffix, created
// exclusively with mode 0600.
func createTemp(root *os.Root, dir, prefix string) (*os.File, string, error) {
	for try := 0; ; try++ {
		name := filepath.Join(dir, prefix+strconv.FormatUint(rand.Uint64(), 36))
		f, err := root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			return f, name, nil
		}
		if !errors.Is(err, fs.ErrExist) || try == 100 {
			return nil, "", err
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return syncAndClose(d, dir)
}

func syncDirIn(root *os.Root, dir string) error {
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	return syncAndClose(d, filepath.Join(root.Name(), dir))
}

func syncAndClose(d *os.File, name string) error {
	err := d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync folder %s: %w", name, err)
	}
	if TestHookDirSynced != nil {
		TestHookDirSynced(name)
	}
	return nil
}
