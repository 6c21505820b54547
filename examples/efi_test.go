package examples

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/mobykit/mobykit/assembler"
	"github.com/mobykit/mobykit/internal/testenv"
	"github.com/mobykit/mobykit/vm/qemu"
)

// TestHelloBootsEFIFormats builds examples/hello.yml as iso-efi, iso-efi-initrd, raw-efi,
// raw-efi-initrd and qcow2-efi, twice, checks that both builds gave the same bytes, and boots
// each image in QEMU (TCG, OVMF: the ISOs from the CD-ROM, the disks from virtio) to hello's
// service marker: the unified kernel image for iso-efi, raw-efi and qcow2-efi, GRUB for the
// -initrd formats.
func TestHelloBootsEFIFormats(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs; skipped with -short")
	}
	testenv.RequireQEMU(t)
	code, _ := qemu.DefaultFirmware("x86_64")
	testenv.RequireFile(t, code, "ovmf")
	cacheDir := buildImages(t)
	formats := []string{"iso-efi", "iso-efi-initrd", "raw-efi", "raw-efi-initrd", "qcow2-efi"}
	var outs [2]string
	for i := range outs {
		outs[i] = t.TempDir()
		if _, err := assembler.BuildFiles(context.Background(), []string{"hello.yml"}, assembler.Options{
			Name: "hello", OutputDir: outs[i], CacheDir: cacheDir, Formats: formats,
		}); err != nil {
			t.Fatal(err)
		}
	}
	images := []string{"hello-efi.iso", "hello-efi-initrd.iso", "hello-efi.img", "hello-efi-initrd.img", "hello-efi.qcow2"}
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
