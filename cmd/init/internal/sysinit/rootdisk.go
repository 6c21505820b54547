package sysinit

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// RootDisk is the root file system on a disk, named on the kernel command line as
// mobykit.root=DEVICE mobykit.rootfstype=TYPE (squashfs, erofs, iso9660): the kernel+squashfs,
// kernel+erofs and kernel+iso formats. Debian's kernel drives virtio disks and reads those file
// systems only through modules, so it boots a small loader initramfs (init and the modules)
// first; init, finding itself in it, mounts the disk and moves there.
type RootDisk struct {
	Device, FSType string
}

// ParseRootDisk reads mobykit.root and mobykit.rootfstype from a kernel command line; ok is
// false when no root disk is named.
func ParseRootDisk(cmdline string) (d RootDisk, ok bool, err error) {
	for _, f := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "mobykit.root":
			d.Device = v
		case "mobykit.rootfstype":
			d.FSType = v
		}
	}
	if d.Device == "" {
		return d, false, nil
	}
	if !strings.HasPrefix(d.Device, "/dev/") || strings.Contains(d.Device, "..") {
		return d, true, fmt.Errorf("mobykit.root=%q: want a device under /dev", d.Device)
	}
	switch d.FSType {
	case "squashfs", "erofs", "iso9660":
	default:
		return d, true, fmt.Errorf("mobykit.rootfstype=%q: want squashfs, erofs or iso9660", d.FSType)
	}
	return d, true, nil
}

// Boot loads the loader's modules, mounts the disk read-only under a tmpfs overlay (the root
// stays writable, as an initramfs root is), moves it to / and executes /init there. It does
// not return on success.
func (d RootDisk) Boot(args []string) error {
	for _, m := range []struct{ src, dst, fs string }{{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"}} {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fs, 0, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	if _, err := LoadModules("/"); err != nil {
		fmt.Fprintf(os.Stdout, "mobykit init: loader modules: %v\n", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(d.Device); err == nil {
			break
		} else if time.Now().After(deadline) {
			return fmt.Errorf("root disk %s: not there after 30s: %w", d.Device, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	const ro, rw, newRoot = "/.root-ro", "/.root-rw", "/.root"
	for _, p := range []string{ro, rw, newRoot} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount(d.Device, ro, d.FSType, unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount %s (%s) read-only: %w", d.Device, d.FSType, err)
	}
	if err := unix.Mount("tmpfs", rw, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", rw, err)
	}
	for _, p := range []string{rw + "/upper", rw + "/work"} {
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
	}
	opts := "lowerdir=" + ro + ",upperdir=" + rw + "/upper,workdir=" + rw + "/work"
	if err := unix.Mount("overlay", newRoot, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay of %s: %w", d.Device, err)
	}
	var errs []error
	for _, p := range []string{"/proc", "/sys", "/dev"} {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("leave the loader: %w", err)
	}
	if err := os.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.Mount(newRoot, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move %s to /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	os.Chdir("/")
	return unix.Exec("/init", append([]string{"/init"}, args[1:]...), os.Environ())
}
