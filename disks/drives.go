package disks

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// ignoredDisk is LinuxKit's rule for which block devices drive detection skips: loop and
// network block devices, and names of letters then digits (partitions such as sda1, and
// sr0, ram0, md0, fd0).
var ignoredDisk = regexp.MustCompile(`^loop.*$|^nbd.*$|^[a-z]+[0-9]+$`)

// Sys locates the kernel's views of block devices: the sysfs folder (normally /sys), the
// device folder (/dev) and the mount table (/proc/self/mountinfo). Tests point them at fake
// trees.
type Sys struct {
	SysDir    string
	DevDir    string
	MountInfo string
}

// Host is the running machine.
var Host = Sys{SysDir: "/sys", DevDir: "/dev", MountInfo: "/proc/self/mountinfo"}

// Disk is a whole disk as sysfs describes it.
type Disk struct {
	Name    string // vda
	Path    string // /dev/vda
	Sectors uint64 // in 512-byte units, as /sys/block/NAME/size counts them
}

// Disks lists the writable whole disks of /sys/block by name, leaving out what LinuxKit's
// drive detection leaves out, read-only devices (CD-ROMs) and empty ones (a drive without a
// medium).
func (s Sys) Disks() ([]Disk, error) {
	dir := filepath.Join(s.SysDir, "block")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing block devices: %w", err)
	}
	var disks []Disk
	for _, e := range ents {
		name := e.Name()
		if ignoredDisk.MatchString(name) {
			continue
		}
		if ro, _ := readUint(filepath.Join(dir, name, "ro")); ro != 0 {
			continue
		}
		size, err := readUint(filepath.Join(dir, name, "size"))
		if err != nil || size == 0 {
			continue
		}
		disks = append(disks, Disk{Name: name, Path: filepath.Join(s.DevDir, name), Sectors: size})
	}
	sort.Slice(disks, func(i, j int) bool { return disks[i].Name < disks[j].Name })
	return disks, nil
}

// Disk describes the whole disk at device path dev (/dev/vdb).
func (s Sys) Disk(dev string) (Disk, error) {
	name := filepath.Base(dev)
	size, err := readUint(filepath.Join(s.SysDir, "class", "block", name, "size"))
	if err != nil {
		return Disk{}, fmt.Errorf("%s: not a block device the kernel knows: %w", dev, err)
	}
	if _, err := os.Stat(filepath.Join(s.SysDir, "class", "block", name, "partition")); err == nil {
		return Disk{}, fmt.Errorf("%s is a partition, not a whole disk", dev)
	}
	return Disk{Name: name, Path: dev, Sectors: size}, nil
}

// BlockDevices lists every block device and partition of /sys/class/block as /dev paths, by
// name: where mount looks for a label or UUID.
func (s Sys) BlockDevices() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.SysDir, "class", "block"))
	if err != nil {
		return nil, fmt.Errorf("listing block devices: %w", err)
	}
	var devs []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "loop") || strings.HasPrefix(e.Name(), "ram") {
			continue
		}
		devs = append(devs, filepath.Join(s.DevDir, e.Name()))
	}
	sort.Strings(devs)
	return devs, nil
}

// Mounted returns the sources of the current mounts (device paths among them).
func (s Sys) Mounted() (map[string]bool, error) {
	m := map[string]bool{}
	err := s.eachMount(func(line string) {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		_, rest, ok := strings.Cut(line, " - ")
		if f := strings.Fields(rest); ok && len(f) >= 2 {
			m[f[1]] = true
		}
	})
	return m, err
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// MountPoints returns the current mount points.
func (s Sys) MountPoints() (map[string]bool, error) {
	m := map[string]bool{}
	err := s.eachMount(func(line string) {
		if f := strings.Fields(line); len(f) >= 5 {
			m[unescapeMount(f[4])] = true
		}
	})
	return m, err
}

// eachMount calls fn with each line of the mount table (s.MountInfo, in the format of
// /proc/self/mountinfo); a line longer than 1 MiB ends it with an error.
func (s Sys) eachMount(fn func(line string)) error {
	f, err := os.Open(s.MountInfo)
	if err != nil {
		return fmt.Errorf("reading the mount table: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fn(sc.Text())
	}
	return sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
