// Package format is the registry of output formats of `mobykit build`.
//
// A Format turns a built kernel, command line and initramfs into files in
// the output directory; a Streamer writes a single file front to back, so
// that it can also go to any file or to stdout (`-o FILE`, `-o -`).
// Registered here, under LinuxKit's names: kernel+initrd, tar,
// tar-kernel-initrd, kernel+squashfs, kernel+erofs, kernel+iso, iso-bios, raw-bios and
// docker. Every format is reproducible: no clock, no random identifiers.
// Other packages may add formats by calling Register from an init function.
package format
