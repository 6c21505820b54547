// Package fstree is the file tree the root file system writers (squashfs, erofs) build from,
// and the st_mode type bits that they, the initramfs (cpio) writer and reader and the layer
// merger share.
//
// A tree holds metadata only: the contents of regular files are handed to a writer as streams,
// so the tree of a large root file system stays small. A writer keeps what it works out about
// each file (inode numbers, link counts, positions) on its own side and does not change the
// tree.
package fstree

// Type bits of Linux's st_mode (S_IFMT and the S_IF* it masks), as cpio headers, squashfs and
// EROFS inodes hold them.
const (
	TypeMask    = 0o170000
	TypeDir     = 0o040000
	TypeReg     = 0o100000
	TypeSymlink = 0o120000
	TypeChar    = 0o020000
	TypeBlock   = 0o060000
	TypeFifo    = 0o010000
	TypeSocket  = 0o140000
)

// Inode is a file of a tree. A file that is not a directory and is reached by several Entries
// is a hard link (one inode, several names); a directory is reached by one Entry at most.
type Inode struct {
	Mode               uint32 // type and permission bits
	UID, GID           uint32
	MTime              int64  // seconds since the epoch
	Size               int64  // regular files: the length of the contents
	Target             string // symlinks
	DevMajor, DevMinor uint32 // character and block devices
	Entries            []Entry
}

// Entry is a name in a directory.
type Entry struct {
	Name  string
	Inode *Inode
}
