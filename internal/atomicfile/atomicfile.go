// Package atomicfile writes files so that readers see either the old content or the new, never
// a torn one: through a temporary file in the same folder, then a rename.
package atomicfile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Write creates path's folder if needed and fills a temporary file beside path with fill, then
// renames it over path. It does not fsync: use it for caches and build outputs that can be made
// again. On any error the temporary file is removed and path is untouched.
func Write(path string, perm os.FileMode, fill func(io.Writer) error) error {
	return write(path, perm, false, fill)
}

// WriteFile is Write for bytes in memory, with an fsync before the rename: use it for state
// that must survive a crash (VM records, stored specs).
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return write(path, perm, true, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

func write(path string, perm os.FileMode, sync bool, fill func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
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
	if err := os.Chmod(tmp, perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
