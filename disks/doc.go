// Package disks holds the logic of mobykit's disk system images (images/format, images/mount,
// images/extend, images/swap), which take LinuxKit's names, flags and semantics: finding the
// first blank disk, recognising file systems and partition tables, writing and growing a DOS
// or GPT partition table, making a swap area. The programs in cmd/format, cmd/mountie,
// cmd/extend and cmd/swap are thin wrappers; the mkfs, e2fsck, resize2fs and xfs_growfs they
// run come from Debian's e2fsprogs and xfsprogs.
//
// Everything that reads the machine takes its roots (the sysfs block folder, the /dev folder)
// as parameters so that tests run on fake trees and image files.
package disks
