// Package initrd writes and reads Linux initramfs archives: the "newc" cpio
// format (SVR4 with no CRC) that the kernel unpacks at boot.
//
// The writer is deterministic: it writes exactly the headers it is given, with
// one fixed modification time (SOURCE_DATE_EPOCH or the Unix epoch), owners as
// given, and inode numbers assigned in write order. Archives are written as
// independent segments, each ending with its own TRAILER!!! record and each
// compressed on its own (gzip through klauspost/pgzip, zstd, or lz4 in the
// legacy format through pierrec/lz4): the kernel accepts a concatenation of
// such compressed archives, which lets the assembler cache and reuse every
// segment that did not change. Concatenated lz4 legacy streams are one
// stream (the kernel reads it to the end of the initramfs and skips the magic
// of each segment), so nothing may stand between lz4 segments but segments. An archive
// whose total size would pass the 4 GiB limit of the newc format is refused.
package initrd
