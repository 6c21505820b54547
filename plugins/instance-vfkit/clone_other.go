//go:build !darwin

package instancevfkit

// cloneFile copies src to dst (sparse); on macOS it is an APFS clone.
func cloneFile(src, dst string) error { return copyFile(src, dst) }
