package instancevfkit

import "golang.org/x/sys/unix"

// cloneFile makes dst an APFS clone of src (copy-on-write, no space used until written),
// falling back to a sparse copy on file systems without clones.
func cloneFile(src, dst string) error {
	if err := unix.Clonefile(src, dst, unix.CLONE_NOFOLLOW); err == nil {
		return nil
	}
	return copyFile(src, dst)
}
