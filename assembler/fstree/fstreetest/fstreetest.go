// Package fstreetest makes fstree trees for the tests of the file system writers (squashfs,
// erofs) and checks what a reader of their images extracts against the tree.
package fstreetest

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/mobykit/mobykit/assembler/fstree"
)

// File is a regular file of a test tree with its contents.
type File struct {
	Inode *fstree.Inode
	Data  []byte
}

// Maker makes the inodes of a test tree: regular files and folders with MTime, and keeps the
// regular files with contents in Files, in the order they were made.
type Maker struct {
	MTime int64
	Files []File
}

// Reg is a regular file holding data.
func (m *Maker) Reg(mode uint32, data []byte) *fstree.Inode {
	n := &fstree.Inode{Mode: fstree.TypeReg | mode, Size: int64(len(data)), MTime: m.MTime}
	if len(data) > 0 {
		m.Files = append(m.Files, File{n, data})
	}
	return n
}

// Dir is a folder (mode 0755) holding entries.
func (m *Maker) Dir(entries ...fstree.Entry) *fstree.Inode {
	return &fstree.Inode{Mode: fstree.TypeDir | 0o755, MTime: m.MTime, Entries: entries}
}

// Contents maps each regular file with contents to them.
func (m *Maker) Contents() map[*fstree.Inode][]byte {
	c := make(map[*fstree.Inode][]byte, len(m.Files))
	for _, f := range m.Files {
		c[f.Inode] = f.Data
	}
	return c
}

// E is the entry name -> n.
func E(name string, n *fstree.Inode) fstree.Entry { return fstree.Entry{Name: name, Inode: n} }

// Symlink is a symlink (mode 0777, MTime 0) to target.
func Symlink(target string) *fstree.Inode {
	return &fstree.Inode{Mode: fstree.TypeSymlink | 0o777, Target: target}
}

// Node is a device, fifo or socket (MTime 0): typ is one of fstree's Type bits.
func Node(typ, perm, major, minor uint32) *fstree.Inode {
	return &fstree.Inode{Mode: typ | perm, DevMajor: major, DevMinor: minor}
}

// Links counts the names of each inode under root that is not a folder.
func Links(root *fstree.Inode) map[*fstree.Inode]int {
	links := map[*fstree.Inode]int{}
	var walk func(d *fstree.Inode)
	walk = func(d *fstree.Inode) {
		for _, e := range d.Entries {
			if e.Inode.Mode&fstree.TypeMask == fstree.TypeDir {
				walk(e.Inode)
			} else {
				links[e.Inode]++
			}
		}
	}
	walk(root)
	return links
}

// CheckExtracted checks that the folder out, where a reader extracted an image of the tree
// under root, holds exactly that tree: names, types, modes, mtimes (symlinks aside), owners
// (when running as root), contents, symlink targets and device numbers. hardLink, if not nil,
// is called for each name of a regular file with several, to check the link its own way. It
// returns how many files it checked.
func CheckExtracted(t testing.TB, root *fstree.Inode, out string, contents map[*fstree.Inode][]byte, hardLink func(rel string, n *fstree.Inode, names int)) int {
	t.Helper()
	links := Links(root)
	count := 0
	var walk func(n *fstree.Inode, rel string)
	walk = func(n *fstree.Inode, rel string) {
		count++
		p := filepath.Join(out, rel)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Error(err)
			return
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Mode != n.Mode {
			t.Errorf("%s: mode %o, want %o", rel, st.Mode, n.Mode)
		}
		if os.Geteuid() == 0 && (st.Uid != n.UID || st.Gid != n.GID) {
			t.Errorf("%s: owner %d:%d, want %d:%d", rel, st.Uid, st.Gid, n.UID, n.GID)
		}
		if n.Mode&fstree.TypeMask != fstree.TypeSymlink && st.Mtim.Sec != n.MTime {
			t.Errorf("%s: mtime %d, want %d", rel, st.Mtim.Sec, n.MTime)
		}
		switch n.Mode & fstree.TypeMask {
		case fstree.TypeDir:
			ents, _ := os.ReadDir(p)
			if len(ents) != len(n.Entries) {
				t.Errorf("%s: %d entries, want %d", rel, len(ents), len(n.Entries))
			}
			for _, e := range n.Entries {
				walk(e.Inode, filepath.Join(rel, e.Name))
			}
		case fstree.TypeReg:
			b, _ := os.ReadFile(p)
			if !bytes.Equal(b, contents[n]) {
				t.Errorf("%s: contents differ (%d bytes, want %d)", rel, len(b), len(contents[n]))
			}
			if links[n] > 1 && hardLink != nil {
				hardLink(rel, n, links[n])
			}
		case fstree.TypeSymlink:
			if l, _ := os.Readlink(p); l != n.Target {
				t.Errorf("%s: target %q, want %q", rel, l, n.Target)
			}
		case fstree.TypeChar, fstree.TypeBlock:
			if maj, min := (st.Rdev>>8)&0xfff|(st.Rdev>>32)&^0xfff, st.Rdev&0xff|(st.Rdev>>12)&^0xff; uint32(maj) != n.DevMajor || uint32(min) != n.DevMinor {
				t.Errorf("%s: device %d:%d, want %d:%d", rel, maj, min, n.DevMajor, n.DevMinor)
			}
		}
	}
	walk(root, ".")
	return count
}
