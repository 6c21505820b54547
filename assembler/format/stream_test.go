package format

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/mobykit/mobykit/assembler/fstree"
	"github.com/mobykit/mobykit/assembler/initrd"
)

// streamInput is an Input whose single real (gzip'ed cpio) segment holds /init, a module and a
// file of size bytes.
func streamInput(t *testing.T, size int64) *Input {
	in := biosInput(t)
	seg := filepath.Join(filepath.Dir(in.Kernel), "seg.cpio.gz")
	f, err := os.Create(seg)
	if err != nil {
		t.Fatal(err)
	}
	zw, err := initrd.Compress(f, initrd.Gzip)
	if err != nil {
		t.Fatal(err)
	}
	cw := initrd.NewWriter(zw)
	add := func(name string, mode uint32, n int64) {
		if err := cw.WriteHeader(&initrd.Header{Name: name, Mode: mode, Size: n}); err != nil {
			t.Fatal(err)
		}
		chunk := bytes.Repeat([]byte("mobykit streams "), 4096)
		for left := n; left > 0; left -= int64(len(chunk)) {
			if _, err := cw.Write(chunk[:min(left, int64(len(chunk)))]); err != nil {
				t.Fatal(err)
			}
		}
	}
	add("init", fstree.TypeReg|0o755, 1000)
	add("lib", fstree.TypeDir|0o755, 0)
	add("lib/modules", fstree.TypeDir|0o755, 0)
	add("lib/modules/m.ko", fstree.TypeReg|0o644, 5000)
	add("big", fstree.TypeReg|0o644, size)
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	in.Segments, in.Initrd = []string{seg}, seg
	return in
}

// TestFormatsStreamWithFlatMemory: every format's allocations stay the same when the image
// grows fourfold (16 MiB to 64 MiB of file contents): nothing holds the image in memory.
func TestFormatsStreamWithFlatMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes every format twice with up to 64 MiB of contents")
	}
	small, large := streamInput(t, 16<<20), streamInput(t, 64<<20)
	for _, name := range []string{"kernel+initrd", "tar", "tar-kernel-initrd", "kernel+squashfs", "kernel+erofs", "kernel+iso",
		"iso-bios", "raw-bios", "qcow2-bios", "vmdk", "vhd", "dynamic-vhd", "aws", "gcp", "docker"} {
		f, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		alloc := func(in *Input) uint64 {
			os.RemoveAll(in.Dir)
			os.MkdirAll(in.Dir, 0o755)
			var a, b runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&a)
			if _, err := f.Write(context.Background(), in); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			runtime.ReadMemStats(&b)
			return b.TotalAlloc - a.TotalAlloc
		}
		s, l := alloc(small), alloc(large)
		t.Logf("%-18s allocated %6.1f MiB for 16 MiB, %6.1f MiB for 64 MiB", name, float64(s)/(1<<20), float64(l)/(1<<20))
		if l > s+8<<20 {
			t.Errorf("%s: 48 MiB more contents allocated %d MiB more: the image is held in memory", name, (l-s)>>20)
		}
	}
}
