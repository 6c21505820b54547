package disks

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// FindBy returns the block device whose file system has the given label or UUID (exactly
// one of them non-empty), as findfs LABEL=... or UUID=... does.
func (s Sys) FindBy(label, uuid string) (string, error) {
	devs, err := s.BlockDevices()
	if err != nil {
		return "", err
	}
	for _, d := range devs {
		c, err := ProbeDevice(d)
		if err != nil || c.IsPartitionTable() {
			continue
		}
		if (label != "" && c.Label == label) || (uuid != "" && strings.EqualFold(c.UUID, uuid)) {
			return d, nil
		}
	}
	if label != "" {
		return "", fmt.Errorf("no block device has a file system labelled %q", label)
	}
	return "", fmt.Errorf("no block device has a file system with UUID %q", uuid)
}

// FirstLinuxPartition returns the first Linux partition (DOS type 83 or GPT's Linux GUID) of
// the partitioned disks that is not mounted yet, as LinuxKit's mount picks one when given only
// a mount point.
func (s Sys) FirstLinuxPartition(log *slog.Logger) (string, error) {
	disks, err := s.Disks()
	if err != nil {
		return "", err
	}
	mounted, err := s.Mounted()
	if err != nil {
		return "", err
	}
	for _, d := range disks {
		t, err := readTableOf(d)
		if err != nil {
			return "", err
		}
		if t == nil {
			log.Info("no partition table; skipping", "device", d.Path)
			continue
		}
		for _, p := range t.Partitions {
			if !p.IsLinux() {
				continue
			}
			node := PartitionDevice(d.Path, p.Number)
			if mounted[node] {
				log.Info("already mounted; skipping", "partition", node)
				continue
			}
			return node, nil
		}
	}
	return "", errors.New("no eligible disks found: no unmounted Linux partition")
}

func readTableOf(d Disk) (*Table, error) {
	f, err := os.Open(d.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := ReadTable(f, d.Sectors)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.Path, err)
	}
	return t, nil
}

// MountType is the file system type to mount device with, from its content.
func MountType(device string) (string, error) {
	c, err := ProbeDevice(device)
	if err != nil {
		return "", err
	}
	switch c.Type {
	case "ext2", "ext3", "ext4":
		return "ext4", nil // the ext4 driver mounts all three
	case "xfs", "btrfs", "vfat", "iso9660", "squashfs":
		return c.Type, nil
	case "":
		return "", fmt.Errorf("%s holds no file system mobykit recognises", device)
	}
	return "", fmt.Errorf("%s holds %s, which cannot be mounted", device, c.Type)
}

// DevLinks makes /dev/disk/by-uuid/UUID and /dev/disk/by-label/LABEL symlinks (relative,
// as udev makes them) to every block device with a file system, as LinuxKit's mount does
// after mounting (for UUIDs). Existing links are left alone; a label with a '/' gets none.
func (s Sys) DevLinks() error {
	devs, err := s.BlockDevices()
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range devs {
		c, err := ProbeDevice(d)
		if err != nil || c.Type == "" || c.IsPartitionTable() {
			continue
		}
		for _, l := range []struct{ dir, name string }{{"by-uuid", c.UUID}, {"by-label", c.Label}} {
			if l.name == "" || strings.ContainsAny(l.name, "/\x00") || l.name == "." || l.name == ".." {
				continue
			}
			dir := filepath.Join(s.DevDir, "disk", l.dir)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				errs = append(errs, err)
				continue
			}
			link := filepath.Join(dir, l.name)
			if err := os.Symlink(filepath.Join("..", "..", filepath.Base(d)), link); err != nil && !errors.Is(err, os.ErrExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// MountSource picks what mountie mounts: the device given, else the one with the label, else
// the one with the UUID, else the first unmounted Linux partition.
func (s Sys) MountSource(device, label, uuid string, log *slog.Logger) (string, error) {
	switch {
	case device != "":
		return device, nil
	case label != "":
		return s.FindBy(label, "")
	case uuid != "":
		return s.FindBy("", uuid)
	}
	return s.FirstLinuxPartition(log)
}
