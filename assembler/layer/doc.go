// Package layer flattens the layers of a container image into one file
// tree, the way a container runtime would unpack them, without writing
// anything to disk.
//
// Layers are applied in order with OCI whiteouts (".wh.NAME" removes NAME
// from lower layers, ".wh..wh..opq" hides a directory's lower contents).
// Entries keep a reference to where their data lives in the uncompressed
// layer (an io.ReaderAt and an offset), so a caller can stream file contents
// in any order without holding them in memory.
//
// Anything that would land outside the root is refused with an error naming
// the layer and the entry, never recorded: absolute names, names with "..",
// names that pass through a symlink, hard links whose target is outside the
// tree or missing, and relative symlinks whose target climbs above the root.
// Absolute symlink targets are kept: they are resolved inside the container's
// own root at run time.
package layer
