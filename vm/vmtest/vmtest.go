// Package vmtest (test helpers only) builds tiny bootable guests for the VM tests of mobykit's vm packages and
// instance plugins: a gzip'd newc initramfs holding the host's static busybox, a /init shell
// script, and optionally kernel modules taken from testenv's kernel (virtio-net is a module
// in Debian's cloud kernel).
package vmtest

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// entry is one initramfs member.
type entry struct {
	mode uint32 // full st_mode
	data []byte
}

// Initrd is an initramfs under construction.
type Initrd struct {
	files map[string]entry
}

// NewBusybox returns an initramfs holding busybox (from $PATH or /bin/busybox, skipping the
// test when busybox-static is absent) as /bin/busybox and init as /init, run by busybox sh.
func NewBusybox(t testing.TB, init string) *Initrd {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed (apt-get install busybox-static); skipping")
	}
	b, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	r := &Initrd{files: map[string]entry{}}
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "etc", "lib", "run"} {
		r.files[d] = entry{mode: 0o40755}
	}
	r.files["bin/busybox"] = entry{mode: 0o100755, data: b}
	r.Add("init", 0o755, "#!/bin/busybox sh\n/bin/busybox --install -s /bin\nexport PATH=/bin\n"+init)
	return r
}

// Add puts a regular file into the initramfs (parent folders are created).
func (r *Initrd) Add(name string, perm uint32, data string) {
	name = strings.TrimPrefix(name, "/")
	for d := filepath.Dir(name); d != "." && d != "/"; d = filepath.Dir(d) {
		if _, ok := r.files[d]; !ok {
			r.files[d] = entry{mode: 0o40755}
		}
	}
	r.files[name] = entry{mode: 0o100000 | perm, data: []byte(data)}
}

// Modules copies the named kernel modules (e.g. "virtio_net") from kernelDir's
// lib/modules/*/kernel tree into /lib/modules and returns their in-guest paths in the order
// given, ready for insmod. Dependencies are the caller's business: list them first.
func (r *Initrd) Modules(t testing.TB, kernelDir string, names ...string) []string {
	t.Helper()
	var paths []string
	for _, n := range names {
		m, _ := filepath.Glob(filepath.Join(kernelDir, "lib", "modules", "*", "kernel", "*", "*", n+".ko*"))
		if len(m) == 0 {
			m, _ = filepath.Glob(filepath.Join(kernelDir, "lib", "modules", "*", "kernel", "*", "*", "*", n+".ko*"))
		}
		if len(m) == 0 {
			m, _ = filepath.Glob(filepath.Join(kernelDir, "lib", "modules", "*", "kernel", "*", n+".ko*"))
		}
		if len(m) == 0 {
			t.Fatalf("vmtest: module %s not found under %s", n, kernelDir)
		}
		b, err := os.ReadFile(m[0])
		if err != nil {
			t.Fatal(err)
		}
		p := "lib/modules/" + filepath.Base(m[0])
		r.files["lib/modules"] = entry{mode: 0o40755}
		r.files[p] = entry{mode: 0o100644, data: b}
		paths = append(paths, "/"+p)
	}
	return paths
}

// Write writes the gzip'd newc archive to path.
func (r *Initrd) Write(t testing.TB, path string) string {
	t.Helper()
	names := make([]string, 0, len(r.files))
	for n := range r.files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	ino := 1
	write := func(name string, e entry) {
		hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, e.mode, 0, 0, 1, 0, len(e.data), 0, 0, 0, 0, len(name)+1, 0)
		ino++
		zw.Write([]byte(hdr))
		zw.Write(append([]byte(name), 0))
		zw.Write(make([]byte, pad4(len(hdr)+len(name)+1)))
		zw.Write(e.data)
		zw.Write(make([]byte, pad4(len(e.data))))
	}
	for _, n := range names {
		write(n, r.files[n])
	}
	write("TRAILER!!!", entry{})
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func pad4(n int) int { return (4 - n%4) % 4 }

// BootPrefix writes a boot prefix as `mobykit build` leaves one (PREFIX-kernel holding
// kernel, PREFIX-initrd.img, PREFIX-cmdline "console=ttyS0") in a temporary folder and returns
// PREFIX, for the plugin tests whose stand-in hypervisors only read the paths.
func BootPrefix(t testing.TB, kernel []byte) string {
	t.Helper()
	prefix := filepath.Join(t.TempDir(), "hello")
	for suffix, data := range map[string][]byte{"-kernel": kernel, "-initrd.img": []byte("i"), "-cmdline": []byte("console=ttyS0\n")} {
		if err := os.WriteFile(prefix+suffix, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return prefix
}

// WaitFile waits (up to 10 s) until the file at path contains want, as a stand-in hypervisor
// writes its events or console.
func WaitFile(t testing.TB, path, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %s: %q", want, path, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
