package disks

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Ext4Features are the ext4 features LinuxKit's format asks mkfs for.
const Ext4Features = "resize_inode,has_journal,extent,huge_file,flex_bg,uninit_bg,64bit,dir_nlink,extra_isize"

// Tools runs the file system tools the images carry and does what needs a real block
// device; tests replace it.
type Tools interface {
	// Run runs a program and returns its combined output.
	Run(name string, args ...string) ([]byte, error)
	// Reread asks the kernel to re-read the partition table of the open disk.
	Reread(f *os.File) error
	// WaitFor waits until the block device path exists (the kernel makes partitions'
	// device nodes in devtmpfs after a re-read).
	WaitFor(path string) error
}

// HostTools are the real ones.
type HostTools struct{}

// Run runs name with args.
func (HostTools) Run(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}

// Reread issues BLKRRPART. A regular file (an image being prepared) has no table to re-read.
func (HostTools) Reread(f *os.File) error {
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		return nil
	}
	// the kernel can still be closing the device after a previous open: retry briefly
	var err error
	for i := 0; i < 50; i++ {
		if err = unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0); !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("re-reading the partition table of %s: %w", f.Name(), err)
	}
	return nil
}

// WaitFor polls for path as a block device for up to 10 seconds.
func (HostTools) WaitFor(path string) error {
	var err error
	for i := 0; i < 100; i++ {
		var fi os.FileInfo
		if fi, err = os.Stat(path); err == nil {
			if fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0 {
				return nil
			}
			err = fmt.Errorf("%s is not a block device", path)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("waiting for %s: %w", path, err)
}

// FormatOptions are format's flags.
type FormatOptions struct {
	Label     string // -label
	Type      string // -type: ext4 or xfs
	Partition string // -partition: dos or gpt
	Force     bool   // -force: format the named device even if it holds something
}

// Check validates the options before any disk is touched.
func (o FormatOptions) Check() error {
	max := 0
	switch o.Type {
	case "ext4":
		max = 16
	case "xfs":
		max = 12
	default:
		return fmt.Errorf("-type %q: mobykit's format image makes ext4 or xfs", o.Type)
	}
	if len(o.Label) > max {
		return fmt.Errorf("-label %q: %s labels are at most %d bytes", o.Label, o.Type, max)
	}
	if o.Partition != "dos" && o.Partition != "gpt" {
		return fmt.Errorf("-partition %q: unsupported partition table type (want dos or gpt)", o.Partition)
	}
	return nil
}

// Formatter partitions and formats disks as LinuxKit's format image does.
type Formatter struct {
	Sys    Sys
	Tools  Tools
	Random io.Reader // nil: crypto/rand
	Log    *slog.Logger
}

// ProbeDevice reports what the device (or image file) at path holds.
func ProbeDevice(path string) (Content, error) {
	f, err := os.Open(path)
	if err != nil {
		return Content{}, err
	}
	defer f.Close()
	c, err := Probe(f)
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func describe(c Content) string {
	s := c.Type
	if c.Label != "" {
		s += fmt.Sprintf(" labelled %q", c.Label)
	}
	if c.UUID != "" {
		s += " UUID " + c.UUID
	}
	return s
}

// FirstBlank returns the first of disks with neither a file system nor a partition table.
func (f *Formatter) FirstBlank(disks []Disk) (Disk, error) {
	var seen []string
	for _, d := range disks {
		c, err := ProbeDevice(d.Path)
		if err != nil {
			return Disk{}, fmt.Errorf("could not determine if %s is empty: %w", d.Path, err)
		}
		if c.Type == "" {
			return d, nil
		}
		f.Log.Info("disk has content; skipping", "device", d.Path, "content", describe(c))
		seen = append(seen, d.Path+" ("+describe(c)+")")
	}
	if len(seen) == 0 {
		return Disk{}, errors.New("no eligible disks found: no writable disk")
	}
	return Disk{}, fmt.Errorf("no eligible disks found: every disk has content: %s", strings.Join(seen, ", "))
}

// Run does what format does with the given devices (none or one): with none, formats the
// first blank disk; with one, formats it if it is blank or opt.Force is set. It returns the
// partition it made.
func (f *Formatter) Run(opt FormatOptions, args []string) (string, error) {
	if err := opt.Check(); err != nil {
		return "", err
	}
	switch len(args) {
	case 0:
		disks, err := f.Sys.Disks()
		if err != nil {
			return "", err
		}
		d, err := f.FirstBlank(disks)
		if err != nil {
			return "", err
		}
		return f.Format(d, opt)
	case 1:
		d, err := f.Sys.Disk(args[0])
		if err != nil {
			return "", err
		}
		if !opt.Force {
			if _, err := f.FirstBlank([]Disk{d}); err != nil {
				return "", fmt.Errorf("%s is not blank; not formatting it without -force: %w", d.Path, err)
			}
		}
		return f.Format(d, opt)
	default:
		return "", fmt.Errorf("too many arguments: %q (at most one device)", args)
	}
}

// Format writes a new partition table with one partition on d and makes a file system on it.
func (f *Formatter) Format(d Disk, opt FormatOptions) (string, error) {
	if err := opt.Check(); err != nil {
		return "", err
	}
	random := f.Random
	if random == nil {
		random = rand.Reader
	}
	f.Log.Info("creating partition", "device", d.Path, "table", opt.Partition)
	disk, err := os.OpenFile(d.Path, os.O_RDWR|unix.O_EXCL, 0)
	if err != nil {
		return "", fmt.Errorf("opening %s for writing: %w", d.Path, err)
	}
	err = WriteTable(disk, opt.Partition, d.Sectors, random)
	if err == nil {
		err = disk.Sync()
	}
	if err == nil {
		err = f.Tools.Reread(disk)
	}
	if cerr := disk.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", d.Path, err)
	}
	part := PartitionDevice(d.Path, 1)
	if err := f.Tools.WaitFor(part); err != nil {
		return "", err
	}
	name, args := MkfsCommand(opt, part)
	if out, err := f.Tools.Run(name, args...); err != nil {
		return "", fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	f.Log.Info("partition successfully created", "partition", part, "type", opt.Type, "label", opt.Label)
	return part, nil
}

// MkfsCommand is the mkfs command line for opt on partition part.
func MkfsCommand(opt FormatOptions, part string) (string, []string) {
	var name string
	var args []string
	switch opt.Type {
	case "ext4":
		name, args = "mkfs.ext4", []string{"-F", "-O", Ext4Features}
	case "xfs":
		name, args = "mkfs.xfs", []string{"-f"}
	}
	if opt.Label != "" {
		args = append(args, "-L", opt.Label)
	}
	return name, append(args, part)
}
