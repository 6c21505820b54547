package assembler

import (
	"github.com/mobykit/mobykit/assembler/fstree"
	"github.com/mobykit/mobykit/assembler/layer"
)

// What LinuxKit does to every image it unpacks (moby/build/image.go): some
// files Docker would inject are dropped, /etc/hosts and /etc/resolv.conf
// get fixed contents, and a few mount points must exist.

const hostsContent = `127.0.0.1       localhost
::1     localhost ip6-localhost ip6-loopback
fe00::0 ip6-localnet
ff00::0 ip6-mcastprefix
ff02::1 ip6-allnodes
ff02::2 ip6-allrouters
`

const resolvContent = `
# no resolv.conf configured
`

// resolvSymlink is where init images' /etc/resolv.conf points, so that it
// is writable at run time.
const resolvSymlink = "/run/resolvconf/resolv.conf"

var excluded = []string{".dockerenv", "Dockerfile", "dev/console", "dev/pts", "dev/shm", "etc/hostname"}

// fixups applies LinuxKit's changes to an unpacked image. resolv, when set,
// makes etc/resolv.conf a symlink to it (init images). A symlink or file
// the image has where a fixed directory goes (etc, dev, ...) is replaced
// by the directory, so nothing is written through it.
func fixups(fs *layer.FS, resolv string, content func(string) *layer.Object) error {
	for _, n := range excluded {
		fs.Remove(n)
	}
	var err error
	put := func(n *layer.Node) {
		if e := fs.Put(n); e != nil && err == nil {
			err = e
		}
	}
	dir := func(name string) {
		if n := fs.Get(name); n != nil && n.IsDir() {
			return
		}
		fs.Remove(name)
		put(&layer.Node{Name: name, Mode: fstree.TypeDir | 0o755})
	}
	for _, d := range []string{"dev", "dev/pts", "dev/shm", "etc", "proc", "sys"} {
		dir(d)
	}
	if fs.Get("etc/mtab") == nil {
		put(&layer.Node{Name: "etc/mtab", Mode: fstree.TypeSymlink | 0o777, Linkname: "/proc/mounts"})
	}
	file := func(name, data string) {
		n := fs.Get(name)
		mode, uid, gid := uint32(0o644), uint32(0), uint32(0)
		if n != nil && n.Mode&fstree.TypeMask == fstree.TypeReg {
			mode, uid, gid = n.Mode&0o7777, n.UID, n.GID
		}
		fs.Remove(name)
		put(&layer.Node{Name: name, Mode: fstree.TypeReg | mode, UID: uid, GID: gid, Obj: content(data)})
	}
	file("etc/hosts", hostsContent)
	if resolv != "" {
		fs.Remove("etc/resolv.conf")
		put(&layer.Node{Name: "etc/resolv.conf", Mode: fstree.TypeSymlink | 0o777, Linkname: resolv})
	} else {
		file("etc/resolv.conf", resolvContent)
	}
	return err
}
