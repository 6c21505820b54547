package examples

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
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
		t.Run(f, func(t *testing.T) { bootsToService(t, filepath.Join(outs[0], f)) })
	}
}

// bootsToService boots a disk or ISO image in QEMU (TCG; UEFI for the EFI formats' names) and
// waits for init and hello's service marker on the console.
func bootsToService(t *testing.T, image string) {
	t.Helper()
	v := boot(t, image)
	defer func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("console:\n%s", v.con)
		}
	}()
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
}

func mustReadFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
