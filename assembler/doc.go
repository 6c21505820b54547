// Package assembler is the moby tool as a library: it turns a LinuxKit
// spec into a kernel, an initramfs and the output formats built from them.
//
// Build resolves every image (from the local cache or a registry, see
// package image), flattens each one (package layer) and writes LinuxKit's
// exact initramfs layout: the kernel's modules tarball and the init images
// at the root, containers/onboot/NNN-name, containers/onshutdown/NNN-name
// and containers/services/name bundles with config.json and runtime.json
// (package bundle), volumes under containers/volumes/name, and `files:`.
//
// The initramfs is a concatenation of independently compressed cpio
// segments (package initrd): one for the kernel modules, one per init image,
// volume and container root filesystem, and one for the small generated
// files. Each segment is cached in the cache directory under a key derived
// from everything that determines its bytes, so a rebuild only writes the
// segments whose inputs changed and concatenates the rest. The output is
// byte-identical whether a segment was just written or reused.
package assembler
