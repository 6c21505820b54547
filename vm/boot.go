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
	// RootDisk is a root file system image (kernel+squashfs, kernel+erofs, kernel+iso) that
	// Initrd, the image's loader (PREFIX-loader.img), mounts: attach it read-only and add
	// RootArgs(device) to the command line. RootFSType is squashfs, erofs or iso9660.
	RootDisk, RootFSType string
	// UEFI is set when the image's name says it boots with UEFI firmware only: the names
	// `mobykit build` (and `linuxkit build`) give the EFI formats, NAME-efi.iso,
	// NAME-efi-initrd.iso, NAME-efi.img, NAME-efi-initrd.img and NAME-efi.qcow2.
	UEFI bool
}

// RootArgs is what the command line needs for the loader to mount RootDisk attached as dev.
func (b Boot) RootArgs(dev string) string {
	return "mobykit.root=" + dev + " mobykit.rootfstype=" + b.RootFSType
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
	if b.Initrd == "" {
		// kernel+squashfs, kernel+erofs or kernel+iso: the root file system on a disk,
		// mounted by the loader initramfs written beside it
		for _, r := range []struct{ suffix, fstype string }{{"-squashfs.img", "squashfs"}, {"-erofs.img", "erofs"}, {".iso", "iso9660"}} {
			if _, err := os.Stat(path + r.suffix); err != nil {
				continue
			}
			b.Initrd = path + "-loader.img"
			if _, err := os.Stat(b.Initrd); err != nil {
				return b, fmt.Errorf("boot prefix %s: root file system %s%s without its loader: %w", path, path, r.suffix, err)
			}
			b.RootDisk, b.RootFSType = path+r.suffix, r.fstype
			break
		}
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

// BootSource is the boot part of an instance plugin's Properties (embed it): exactly one of
// Moby, Kernel, ISO or Disk names what the VM boots. What an ISO or Disk becomes (a shared
// read-only CD, a per-instance overlay or copy) is the plugin's to say.
type BootSource struct {
	// Moby is a boot prefix (PREFIX-kernel, -initrd.img, -cmdline), an .iso or a disk image,
	// resolved by FindBoot.
	Moby string `json:"moby"`
	// Kernel, Initrd and Cmdline boot a kernel directly (Cmdline also overrides Moby's).
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd"`
	Cmdline string `json:"cmdline"`
	// ISO boots a CD image.
	ISO string `json:"iso"`
	// Disk boots a disk image.
	Disk string `json:"disk"`
}

// Check refuses two boot sources, or none when needBoot (at Provision; a group's Instance
// Properties may leave it to the flavor, flavor-moby setting Moby), and an Initrd or Cmdline
// without a Kernel (a Cmdline may instead override Moby's).
func (b BootSource) Check(needBoot bool) error {
	n := 0
	for _, s := range []string{b.Moby, b.Kernel, b.ISO, b.Disk} {
		if s != "" {
			n++
		}
	}
	if n > 1 || (n == 0 && needBoot) {
		return fmt.Errorf("give exactly one of moby, kernel, iso, disk (got %d; a flavor such as flavor-moby sets moby)", n)
	}
	if b.Kernel == "" && (b.Initrd != "" || (b.Cmdline != "" && b.Moby == "")) {
		return errors.New("initrd and cmdline need a kernel (or moby)")
	}
	return nil
}
