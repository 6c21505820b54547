package examples

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mobykit/mobykit/assembler"
)

// TestHelloBootsBIOSFormats builds examples/hello.yml as iso-bios, raw-bios, qcow2-bios and
// vmdk, twice, checks that both builds gave the same bytes, and boots each image in QEMU (TCG,
// SeaBIOS: from the CD-ROM and from the disks) to hello's service marker.
func TestHelloBootsBIOSFormats(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs; skipped with -short")
	}
	cacheDir := buildImages(t)
	var outs [2]string
	for i := range outs {
		outs[i] = t.TempDir()
		if _, err := assembler.BuildFiles(context.Background(), []string{"hello.yml"}, assembler.Options{
			Name: "hello", OutputDir: outs[i], CacheDir: cacheDir, Formats: []string{"iso-bios", "raw-bios", "qcow2-bios", "vmdk"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	images := []string{"hello.iso", "hello-bios.img", "hello.qcow2", "hello.vmdk"}
	for _, f := range images {
		a, b := mustReadFile(t, filepath.Join(outs[0], f)), mustReadFile(t, filepath.Join(outs[1], f))
		if !bytes.Equal(a, b) {
			t.Errorf("%s: two builds differ", f)
		}
	}
	for _, f := range images {
		t.Run(f, func(t *testing.T) { bootsToHelloMarker(t, filepath.Join(outs[0], f)) })
	}
}

// TestHelloBootsRootFSFormats builds examples/hello.yml as kernel+squashfs, kernel+erofs and
// kernel+iso and boots each as `mobykit run qemu PREFIX` does (TCG): the kernel with the
// format's loader initramfs, the root file system image as a read-only virtio disk, to
// hello's service marker.
func TestHelloBootsRootFSFormats(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs; skipped with -short")
	}
	cacheDir := buildImages(t)
	for _, c := range []struct{ format, image string }{
		{"kernel+squashfs", "hello-squashfs.img"},
		{"kernel+erofs", "hello-erofs.img"},
		{"kernel+iso", "hello.iso"},
	} {
		t.Run(c.format, func(t *testing.T) {
			out := t.TempDir()
			if _, err := assembler.BuildFiles(context.Background(), []string{"hello.yml"}, assembler.Options{
				Name: "hello", OutputDir: out, CacheDir: cacheDir, Formats: []string{c.format},
			}); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"hello-kernel", "hello-cmdline", "hello-loader.img", c.image} {
				if _, err := os.Stat(filepath.Join(out, f)); err != nil {
					t.Fatal(err)
				}
			}
			v := bootsToHelloMarker(t, filepath.Join(out, "hello"))
			if !strings.Contains(v.con.String(), "mobykit.root=/dev/vda") {
				t.Error("the kernel was not told where its root is")
			}
		})
	}
}

// bootsToHelloMarker boots path (vm.FindBoot: a prefix, an ISO or a disk) and waits for init
// and then hello's service marker, logging when each came.
func bootsToHelloMarker(t *testing.T, path string) *vm {
	t.Helper()
	v := boot(t, path)
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("console:\n%s", v.con)
		}
	})
	at := 0
	for _, s := range []struct{ what, re string }{
		{"init started", `mobykit init: init started`},
		{"service marker", `hello: HELLO-SERVICE: service running`},
	} {
		i, when, err := v.con.expect(at, regexp.MustCompile(s.re), 180*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		t.Logf("%6.2fs %s", when.Seconds(), s.what)
		at = i + 1
	}
	return v
}

func mustReadFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
