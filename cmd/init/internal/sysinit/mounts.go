package sysinit

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// SwitchedArg is passed to the re-executed init once the root has moved to a tmpfs.
const SwitchedArg = "--mobykit-switched"

// NeedsSwitchRoot reports whether / is the kernel's initial rootfs, from which pivot_root (and
// so runc) cannot work: a ramfs or tmpfs root, and init has not moved off it yet.
func NeedsSwitchRoot(args []string) bool {
	for _, a := range args[1:] {
		if a == SwitchedArg {
			return false
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		return false
	}
	return st.Type == unix.RAMFS_MAGIC || st.Type == unix.TMPFS_MAGIC
}

// BindRoot makes / a bind mount of the initramfs: the initial rootfs has no parent mount so
// nothing can pivot_root away from it, but a bind mount of it, moved over it, has one, and
// runc's pivot_root then works without copying anything. The calling process (all its
// threads share one root) continues in the new root; no re-exec is needed.
func BindRoot() error {
	const newRoot = "/mnt"
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("/", newRoot, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind / on %s: %w", newRoot, err)
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
	return os.Chdir("/")
}

// SwitchRoot moves the initramfs contents to a fresh tmpfs (copy, then delete each file so
// memory is not held twice), makes it the root and re-executes init there. It does not return
// on success.
func SwitchRoot(self string) error {
	const newRoot = "/mnt"
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("rootfs", newRoot, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", newRoot, err)
	}
	skip := map[string]bool{newRoot: true, "/proc": true, "/sys": true, "/dev": true}
	err := filepath.WalkDir("/", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "/" {
			return nil
		}
		dst := filepath.Join(newRoot, p)
		if skip[p] {
			os.Mkdir(dst, 0o755)
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(dst, info.Mode().Perm()); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
			return os.Chmod(dst, info.Mode()&(fs.ModePerm|fs.ModeSticky|fs.ModeSetuid|fs.ModeSetgid))
		case info.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(t, dst)
		case info.Mode().IsRegular():
			if err := copyFile(p, dst, info.Mode()); err != nil {
				return err
			}
			if p != self {
				os.Remove(p)
			}
			return nil
		default:
			st := info.Sys().(*unix.Stat_t)
			return unix.Mknod(dst, st.Mode, int(st.Rdev))
		}
	})
	if err != nil {
		return fmt.Errorf("copy initramfs to tmpfs: %w", err)
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
	if err := os.Chdir("/"); err != nil {
		return err
	}
	return unix.Exec(self, []string{self, SwitchedArg}, os.Environ())
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode.Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode&(fs.ModePerm|fs.ModeSticky|fs.ModeSetuid|fs.ModeSetgid))
}

type mountSpec struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
	mode                   fs.FileMode
}

// EarlyMounts mounts the kernel filesystems init and runc need, and makes / a shared mount so
// containers can ask for shared propagation.
func EarlyMounts() error {
	const nosuid, nodev, noexec = unix.MS_NOSUID, unix.MS_NODEV, unix.MS_NOEXEC
	mounts := []mountSpec{
		{"proc", "/proc", "proc", nosuid | nodev | noexec, "", 0o555},
		{"sysfs", "/sys", "sysfs", nosuid | nodev | noexec, "", 0o555},
		{"devtmpfs", "/dev", "devtmpfs", nosuid, "mode=0755", 0o755},
		{"devpts", "/dev/pts", "devpts", nosuid | noexec, "newinstance,ptmxmode=0666,mode=0620,gid=5", 0o755},
		{"shm", "/dev/shm", "tmpfs", nosuid | nodev | noexec, "mode=1777", 0o1777},
		{"mqueue", "/dev/mqueue", "mqueue", nosuid | nodev | noexec, "", 0o755},
		{"tmpfs", "/run", "tmpfs", nosuid | nodev, "mode=0755", 0o755},
		{"tmpfs", "/tmp", "tmpfs", nosuid | nodev, "mode=1777", 0o1777},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", nosuid | nodev | noexec, "nsdelegate", 0o555},
		{"bpf", "/sys/fs/bpf", "bpf", nosuid | nodev | noexec, "mode=0700", 0o700},
		{"securityfs", "/sys/kernel/security", "securityfs", nosuid | nodev | noexec, "", 0o755},
		{"debugfs", "/sys/kernel/debug", "debugfs", nosuid | nodev | noexec, "", 0o700},
	}
	var errs []error
	for _, m := range mounts {
		if mounted(m.target) {
			continue
		}
		if err := os.MkdirAll(m.target, m.mode); err != nil {
			errs = append(errs, fmt.Errorf("mkdir %s: %w", m.target, err))
			continue
		}
		if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
			if m.fstype == "bpf" || m.fstype == "securityfs" || m.fstype == "debugfs" || m.fstype == "mqueue" {
				continue // optional
			}
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err))
		}
	}
	if _, err := os.Lstat("/dev/ptmx"); err != nil {
		os.Symlink("pts/ptmx", "/dev/ptmx")
	}
	for _, l := range [][2]string{{"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"}, {"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"}} {
		if _, err := os.Lstat(l[1]); err != nil {
			os.Symlink(l[0], l[1])
		}
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SHARED, ""); err != nil {
		errs = append(errs, fmt.Errorf("make / shared: %w", err))
	}
	for _, d := range []string{"/var/log", "/var/lib", "/run/runc", "/tmp"} {
		os.MkdirAll(d, 0o755)
	}
	if _, err := os.Lstat("/var/run"); err != nil {
		os.Symlink("/run", "/var/run")
	}
	// /etc/resolv.conf is a link into /run (LinuxKit's layout): give it a target so that
	// containers can bind it and DHCP clients can write it.
	if t, err := os.Readlink("/etc/resolv.conf"); err == nil && strings.HasPrefix(filepath.Clean(t), "/run/") {
		if _, err := os.Stat(t); err != nil {
			os.MkdirAll(filepath.Dir(t), 0o755)
			os.WriteFile(t, nil, 0o644)
		}
	}
	return errors.Join(errs...)
}

// mounted reports whether p is a mount point (its device differs from its parent's).
func mounted(p string) bool {
	var a, b unix.Stat_t
	if unix.Stat(p, &a) != nil || unix.Stat(filepath.Dir(p), &b) != nil {
		return false
	}
	return a.Dev != b.Dev
}

var mountFlags = map[string]struct {
	clear bool
	flag  uintptr
}{
	"async": {true, unix.MS_SYNCHRONOUS}, "atime": {true, unix.MS_NOATIME}, "bind": {false, unix.MS_BIND},
	"defaults": {false, 0}, "dev": {true, unix.MS_NODEV}, "diratime": {true, unix.MS_NODIRATIME},
	"dirsync": {false, unix.MS_DIRSYNC}, "exec": {true, unix.MS_NOEXEC}, "mand": {false, unix.MS_MANDLOCK},
	"noatime": {false, unix.MS_NOATIME}, "nodev": {false, unix.MS_NODEV}, "nodiratime": {false, unix.MS_NODIRATIME},
	"noexec": {false, unix.MS_NOEXEC}, "nomand": {true, unix.MS_MANDLOCK}, "norelatime": {true, unix.MS_RELATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME}, "nosuid": {false, unix.MS_NOSUID}, "rbind": {false, unix.MS_BIND | unix.MS_REC},
	"relatime": {false, unix.MS_RELATIME}, "remount": {false, unix.MS_REMOUNT}, "ro": {false, unix.MS_RDONLY},
	"rw": {true, unix.MS_RDONLY}, "strictatime": {false, unix.MS_STRICTATIME}, "suid": {true, unix.MS_NOSUID},
	"sync": {false, unix.MS_SYNCHRONOUS},
}

var propagationFlags = map[string]uintptr{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// ParseMountOptions splits fstab-style options into mount flags, propagation flags and the
// data string passed to the filesystem, as runc does.
func ParseMountOptions(opts []string) (flags uintptr, propagation []uintptr, data string) {
	var d []string
	for _, o := range opts {
		if f, ok := mountFlags[o]; ok {
			if f.clear {
				flags &^= f.flag
			} else {
				flags |= f.flag
			}
		} else if p, ok := propagationFlags[o]; ok {
			propagation = append(propagation, p)
		} else {
			d = append(d, o)
		}
	}
	return flags, propagation, strings.Join(d, ",")
}
