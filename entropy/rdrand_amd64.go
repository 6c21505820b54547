package entropy

import "golang.org/x/sys/cpu"

// Available reports whether the CPU has RDRAND.
func Available() bool { return cpu.X86.HasRDRAND }

// rdrand executes RDRAND once.
func rdrand() (r uint64, ok bool)
