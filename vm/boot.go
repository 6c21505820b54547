package vm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Boot is what a VM boots from, found by FindBoot: a kernel (with optional initrd and command
// line), an ISO, or a disk image.
type Boot struct {
	Kernel, Initrd, Cmdline string
	ISO                     string
	Disk, DiskFormat        string
	// UEFI is set when the image's name says it boots with UEFI firmware only: the names
	// `mobykit build` (and `linuxkit build`) give the EFI formats, NAME-efi.iso,
	// NAME-efi-initrd.iso, NAME-efi.img, NAME-efi-initrd.img and NAME-efi.qcow2.
	UEFI bool
}

// FindBoot resolves a path as `linuxkit run` does: a file ending in .iso boots as a CD; one
// ending in .qcow2, .raw, .img, .vhd or .vmdk boots as a disk; anything else is a prefix naming
// PREFIX-kernel (or the older moby tool's PREFIX-bzImage), PREFIX-initrd.img and
// PREFIX-cmdline (the command line file is optional).
func FindBoot(path string) (Boot, error) {
	var b Boot
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".iso":
		b.ISO = path
	case ".qcow2", ".raw", ".img", ".vhd", ".vmdk":
		b.Disk = path
		b.DiskFormat = map[string]string{".qcow2": "qcow2", ".vhd": "vpc", ".vmdk": "vmdk"}[ext]
		if b.DiskFormat == "" {
			b.DiskFormat = "raw"
		}
	}
	if b.ISO != "" || b.Disk != "" {
		base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
		b.UEFI = strings.HasSuffix(base, "-efi") || strings.HasSuffix(base, "-efi-initrd")
		if _, err := os.Stat(path); err != nil {
			return b, fmt.Errorf("boot image: %w", err)
		}
		return b, nil
	}
	b.Kernel = path + "-kernel"
	if _, err := os.Stat(b.Kernel); err != nil {
		// The moby tool before LinuxKit's rename wrote PREFIX-bzImage.
		if _, err2 := os.Stat(path + "-bzImage"); err2 == nil {
			b.Kernel = path + "-bzImage"
		} else {
			return b, fmt.Errorf("boot prefix %s: kernel: %w (want PREFIX-kernel, or an .iso or disk image)", path, err)
		}
	}
	b.Initrd = path + "-initrd.img"
	if _, err := os.Stat(b.Initrd); errors.Is(err, os.ErrNotExist) {
		b.Initrd = ""
	} else if err != nil {
		return b, fmt.Errorf("boot prefix %s: initrd: %w", path, err)
	}
	c, err := os.ReadFile(path + "-cmdline")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return b, fmt.Errorf("boot prefix %s: cmdline: %w", path, err)
	}
	b.Cmdline = strings.TrimSpace(string(c))
	return b, nil
}

// DiskSpec is a disk asked for on a command line or in Properties.
type DiskSpec struct {
	Path   string // "" = a file in the VM's state folder
	Size   string // e.g. "1G"; create the file with this size when it does not exist
	Format string // "qcow2", "raw"; "" = from the extension, else the hypervisor's default
}

// ParseDisk parses `linuxkit run`'s disk syntax: "[file=]PATH[,size=SIZE][,format=FMT]",
// where PATH may be omitted ("size=1G").
func ParseDisk(s string) (DiskSpec, error) {
	var d DiskSpec
	for i, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			if i != 0 {
				return d, fmt.Errorf("disk %q: %q is not key=value", s, part)
			}
			k, v = "file", part
		}
		switch k {
		case "file":
			d.Path = v
		case "size":
			d.Size = v
		case "format":
			d.Format = v
		default:
			return d, fmt.Errorf("disk %q: unknown key %q (want file, size, format)", s, k)
		}
	}
	if d.Path == "" && d.Size == "" {
		return d, fmt.Errorf("disk %q: give a file or a size", s)
	}
	return d, nil
}
