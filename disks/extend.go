package disks

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

// Extender grows a disk's only partition and its file system to the end of the disk, as
// LinuxKit's extend image does.
type Extender struct {
	Sys   Sys
	Tools Tools
	Log   *slog.Logger
	// MountDir is where an XFS file system is mounted to grow it (/mnt/tmp in LinuxKit).
	MountDir string
	// Mount and Unmount mount an XFS partition at MountDir; nil: the mount system calls.
	Mount   func(dev, dir, fstype string) error
	Unmount func(dir string) error
}

// Extend grows disk d's partition and file system (fsType: ext4 or xfs). It returns nil
// without changing anything when the partition already reaches the end of the disk or the
// disk has more than one partition (LinuxKit skips those); a non-Linux partition or a file
// system that is not fsType is an error.
func (e *Extender) Extend(d Disk, fsType string) error {
	if fsType != "ext4" && fsType != "xfs" {
		return fmt.Errorf("-type %q: mobykit's extend image grows ext4 or xfs", fsType)
	}
	disk, err := os.OpenFile(d.Path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", d.Path, err)
	}
	defer disk.Close()
	t, err := ReadTable(disk, d.Sectors)
	if err != nil {
		return fmt.Errorf("%s: %w", d.Path, err)
	}
	if t == nil {
		return fmt.Errorf("%s has no partition table", d.Path)
	}
	if len(t.Partitions) != 1 {
		e.Log.Info("disk has not exactly one partition; skipping", "device", d.Path, "partitions", len(t.Partitions))
		return nil
	}
	p := t.Partitions[0]
	if !p.IsLinux() {
		return fmt.Errorf("partition 1 on disk %s is not a Linux partition (type %s)", d.Path, p.Type)
	}
	if !t.Growable(d.Sectors) {
		e.Log.Info("no free space on device to extend partition", "device", d.Path)
		return nil
	}
	part := PartitionDevice(d.Path, p.Number)
	if c, err := ProbeDevice(part); err != nil {
		return err
	} else if !(c.Type == fsType || fsType == "ext4" && (c.Type == "ext2" || c.Type == "ext3")) {
		return fmt.Errorf("%s holds %q, not %s (set -type)", part, c.Type, fsType)
	}
	if fsType == "ext4" {
		if err := e.e2fsck(part, false); err != nil {
			return fmt.Errorf("initial e2fsck of %s: %w", part, err)
		}
		// resize2fs wants a forced check first
		if err := e.e2fsck(part, true); err != nil {
			return fmt.Errorf("e2fsck of %s before resizing: %w", part, err)
		}
	}
	grown, err := Grow(disk, t, d.Sectors)
	if err != nil {
		return fmt.Errorf("%s: %w", d.Path, err)
	}
	if !grown {
		return nil
	}
	if err := disk.Sync(); err != nil {
		return err
	}
	if err := e.Tools.Reread(disk); err != nil {
		return err
	}
	if err := e.Tools.WaitFor(part); err != nil {
		return err
	}
	switch fsType {
	case "ext4":
		if out, err := e.Tools.Run("resize2fs", part); err != nil {
			return fmt.Errorf("resize2fs %s: %w\n%s", part, err, out)
		}
		if err := e.e2fsck(part, false); err != nil {
			return fmt.Errorf("e2fsck of %s after resizing: %w", part, err)
		}
	case "xfs":
		if err := e.growXFS(part); err != nil {
			return err
		}
	}
	e.Log.Info("successfully resized", "device", d.Path, "partition", part)
	return nil
}

func (e *Extender) growXFS(part string) error {
	mount, unmount := e.Mount, e.Unmount
	if mount == nil {
		mount = func(dev, dir, fstype string) error { return unix.Mount(dev, dir, fstype, 0, "") }
	}
	if unmount == nil {
		unmount = func(dir string) error { return unix.Unmount(dir, 0) }
	}
	if err := os.MkdirAll(e.MountDir, 0o755); err != nil {
		return err
	}
	if err := mount(part, e.MountDir, "xfs"); err != nil {
		return fmt.Errorf("mounting %s on %s: %w", part, e.MountDir, err)
	}
	out, err := e.Tools.Run("xfs_growfs", e.MountDir)
	if uerr := unmount(e.MountDir); err == nil && uerr != nil {
		return fmt.Errorf("unmounting %s: %w", e.MountDir, uerr)
	}
	if err != nil {
		return fmt.Errorf("xfs_growfs %s: %w\n%s", part, err, out)
	}
	if out, err := e.Tools.Run("xfs_repair", "-n", part); err != nil {
		return fmt.Errorf("xfs_repair -n %s: %w\n%s", part, err, out)
	}
	return nil
}

// e2fsck preens part (forced: even if it looks clean), then, when preening is not enough,
// answers yes to every fix, as LinuxKit's extend does. Exit status 1 (errors fixed) is
// success; 2 and 3 ask for a reboot.
func (e *Extender) e2fsck(part string, force bool) error {
	for _, mode := range []string{"-p", "-y"} {
		args := []string{mode}
		if force {
			args = append(args, "-f")
		}
		out, err := e.Tools.Run("e2fsck", append(args, part)...)
		var ee *exec.ExitError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ee) && ee.ExitCode() == 1:
			return nil
		case errors.As(err, &ee) && (ee.ExitCode() == 2 || ee.ExitCode() == 3):
			return fmt.Errorf("e2fsck fixed errors but requires a reboot: %s", out)
		case mode == "-y":
			return fmt.Errorf("e2fsck %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// Run does what extend does with its arguments: each device named, or else every disk with a
// partition table; with stopOnError false a failing disk is logged and the next one tried.
func (e *Extender) Run(fsType string, stopOnError bool, devices []string) error {
	var disks []Disk
	if len(devices) > 0 {
		for _, a := range devices {
			d, err := e.Sys.Disk(a)
			if err != nil {
				return err
			}
			disks = append(disks, d)
		}
	} else {
		all, err := e.Sys.Disks()
		if err != nil {
			return err
		}
		for _, d := range all {
			if c, err := ProbeDevice(d.Path); err != nil || !c.IsPartitionTable() {
				e.Log.Info("no partition table found; skipping", "device", d.Path)
				continue
			}
			disks = append(disks, d)
		}
	}
	for _, d := range disks {
		if err := e.Extend(d, fsType); err != nil {
			if stopOnError || len(devices) > 0 {
				return err
			}
			e.Log.Warn("could not extend; skipping", "device", d.Path, "err", err)
		}
	}
	return nil
}
