package vm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/mobykit/mobykit/spi"
)

// InstanceKey is what stays the same when an instance is replaced, to derive its stable names
// from (MACs, UUIDs): its logical ID, or else its ID. lid is the logical ID, "" if none.
func InstanceKey(id spi.ID, spec spi.Spec) (key, lid string) {
	if spec.LogicalID != nil && *spec.LogicalID != "" {
		return string(*spec.LogicalID), string(*spec.LogicalID)
	}
	return string(id), ""
}

// DiskPath is where an instance's data disk called name lives. A persistent disk of an
// instance with a logical ID is kept under the plugin's root, root/disks/<logical ID>/name,
// for the next instance of that logical ID; the logical ID must then be a plain name
// (CheckName). Any other disk lives and dies with the instance, in its state folder
// (dir/disks/name).
func DiskPath(root string, dir Dir, spec spi.Spec, name string, persistent bool) (string, error) {
	if persistent && spec.LogicalID != nil && *spec.LogicalID != "" {
		lid := string(*spec.LogicalID)
		if err := CheckName(lid); err != nil {
			return "", fmt.Errorf("persistent disk: logical ID: %w", err)
		}
		return filepath.Join(root, "disks", lid, name), nil
	}
	return dir.Path(filepath.Join(DisksDir, name)), nil
}

// CreateRawDisk creates a sparse raw disk image of size bytes at path (and its folder, mode
// 0700), unless a disk is there already. What is there must be a regular file: a symlink or
// device planted in a disks folder would hand the hypervisor (and the guest) a file the plugin
// never made.
func CreateRawDisk(path string, size int64) error {
	if fi, err := os.Lstat(path); err == nil {
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("disk %s exists and is not a regular file (%s): refusing to attach it", path, fi.Mode().Type())
		}
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("disk %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("create disk %s: %w", path, err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("size disk %s: %w", path, err)
	}
	return f.Close()
}
