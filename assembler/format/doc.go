// Package format is the registry of output formats of `mobykit build`.
//
// A Format turns a built kernel, command line and initramfs into files in
// the output directory. kernel+initrd, tar and tar-kernel-initrd are
// registered here; other packages add formats (iso, raw, qcow2, vhd, aws)
// by calling Register from an init function.
package format
