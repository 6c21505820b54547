// Package ami turns a raw disk image (a file mobykit's assembler wrote in the "raw" or "aws"
// format) into a registered Amazon Machine Image.
//
// An Importer first looks for an AMI that already carries the image's digest in its
// mobykit.image.digest tag (DescribeImages with a tag filter) and returns it when there is one:
// importing the same bytes twice costs nothing. Otherwise it creates an EBS snapshot from the
// file, by one of two methods:
//
//   - MethodEBS (default): the EBS direct API, StartSnapshot, PutSnapshotBlock for every
//     non-zero 512 KiB block (several in parallel, each with its SHA-256 checksum), then
//     CompleteSnapshot. No S3 bucket and no vmimport role are needed.
//   - MethodS3: PutObject to a bucket, ImportSnapshot, then DescribeImportSnapshotTasks until
//     the task completes. Needs the vmimport service role.
//
// It waits for the snapshot to complete (DescribeSnapshots), reporting progress, then calls
// RegisterImage with the requested boot mode (uefi, legacy-bios or uefi-preferred), ENA
// support and root device, and tags the image and the snapshot with the digest.
//
// The flavor can call Importer.Import when a group's image format is "aws"; the CLI exposes it
// as `mobykit aws import`.
package ami
