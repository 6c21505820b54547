package entropy

import (
	"encoding/binary"
	"os"
	"runtime"
	"strings"
	"testing"
)

// TestAvailableMatchesCPUInfo: the CPUID check agrees with the kernel's view of the CPU, and
// when the CPU has RDRAND the numbers differ from call to call.
func TestAvailableMatchesCPUInfo(t *testing.T) {
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Fatal(err)
	}
	want := runtime.GOARCH == "amd64" && strings.Contains(string(info), " rdrand")
	if Available() != want {
		t.Fatalf("Available() = %v, /proc/cpuinfo says %v", Available(), want)
	}
	if !want {
		if _, ok := Rand(); ok {
			t.Fatal("Rand succeeded without RDRAND")
		}
		return
	}
	seen := map[uint64]bool{}
	for i := 0; i < 16; i++ {
		r, ok := Rand()
		if !ok {
			t.Fatal("RDRAND failed 10 times in a row")
		}
		seen[r] = true
	}
	if len(seen) < 15 {
		t.Fatalf("16 RDRAND numbers hold only %d distinct values", len(seen))
	}
}

// TestRequestLayout: struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }.
func TestRequestLayout(t *testing.T) {
	b := Request(0x0102030405060708)
	if len(b) != 16 || binary.LittleEndian.Uint32(b) != 64 || binary.LittleEndian.Uint32(b[4:]) != 8 ||
		binary.LittleEndian.Uint64(b[8:]) != 0x0102030405060708 {
		t.Fatalf("request % x", b)
	}
}
