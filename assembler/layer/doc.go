// Package layer flattens the layers of a container image into one file
// tree, the way a container runtime would unpack them, without writing
// anything to disk.
//
// Layers are applied in order. Within a layer the whiteouts come first,
// wherever they stand in the tar, and hide only what lower layers wrote
// (".wh.NAME" removes NAME and all below it, ".wh..wh..opq" empties its
// directory); then the other entries are applied in tar order. A later
// entry replaces an earlier one at the same path, as Docker and containerd
// do: a symlink, regular file, hard link or device node written where a
// directory was removes that directory and everything below it, and a
// directory written over a directory keeps its contents. Entries keep a
// reference to where their data lives in the uncompressed layer (an
// io.ReaderAt and an offset), so a caller can stream file contents in any
// order without holding them in memory.
//
// Nothing is ever recorded below a symlink, so the initramfs written from
// the tree never makes the kernel follow one. Anything that would land
// outside the root is refused with an error naming the layer and the
// entry (ErrUnsafe): absolute names, names with "..", names whose parent
// is a symlink (in the same layer or a lower one; they are not resolved),
// whiteouts below a symlink, hard links whose target is outside the tree
// or missing, and relative symlinks whose target climbs above the root.
// Absolute symlink targets are kept: they are resolved inside the
// container's own root at run time.
//
// Character and block devices and FIFOs are kept, as LinuxKit and Docker
// keep them. Sparse files (every GNU variant) are refused. Limits bound
// what a hostile image can cost: tar entries and name bytes over all its
// layers, names and symlink targets of at most MaxNameLen bytes (the
// kernel's PATH_MAX), and no entry's declared size may run past the end of
// its layer (ErrLimit, or a plain error for the size).
package layer
