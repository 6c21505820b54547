//go:build !amd64

package entropy

// Available reports whether the CPU has a generator this package can use: only amd64's
// RDRAND so far.
func Available() bool { return false }

func rdrand() (uint64, bool) { return 0, false }
