package qemu

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mobykit/mobykit/internal/testenv"
	"github.com/mobykit/mobykit/vm/vmtest"
)

// TestRunBootsISO makes a BIOS-bootable ISO (isolinux + the cloud kernel + a busybox
// initramfs) and boots it the way `mobykit run qemu x.iso` does, until the guest powers off.
func TestRunBootsISO(t *testing.T) {
	testenv.RequireQEMU(t)
	xorriso := testenv.RequireTool(t, "xorriso", "xorriso")
	const isolinux, ldlinux = "/usr/lib/ISOLINUX/isolinux.bin", "/usr/lib/syslinux/modules/bios/ldlinux.c32"
	for _, f := range []string{isolinux, ldlinux} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s missing (apt-get install isolinux syslinux-common); skipping", f)
		}
	}
	kernel := testenv.Kernel(t)
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "isolinux"), 0o755)
	for src, dst := range map[string]string{isolinux: "isolinux/isolinux.bin", ldlinux: "isolinux/ldlinux.c32", kernel: "kernel"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(tree, dst), b, 0o644)
	}
	os.WriteFile(filepath.Join(tree, "isolinux", "isolinux.cfg"), []byte("DEFAULT linux\nLABEL linux\n  KERNEL /kernel\n  APPEND initrd=/initrd.img console=ttyS0 quiet\n"), 0o644)
	vmtest.NewBusybox(t, "echo MARKER-FROM-ISO\npoweroff -f\n").Write(t, filepath.Join(tree, "initrd.img"))
	iso := filepath.Join(t.TempDir(), "boot.iso")
	out, err := exec.Command(xorriso, "-as", "mkisofs", "-quiet", "-o", iso, "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat",
		"-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", tree).CombinedOutput()
	if err != nil {
		t.Fatalf("xorriso: %v\n%s", err, out)
	}

	r, w, _ := os.Pipe()
	var console syncBuffer
	copied := make(chan struct{})
	go func() { io.Copy(&console, r); close(copied) }()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	err = Run(ctx, RunOptions{Path: iso, MemoryMB: 256, Networking: "none", StateDir: filepath.Join(t.TempDir(), "state"), Stdin: devNull(t), Stdout: w, Stderr: w})
	w.Close()
	<-copied
	if err != nil {
		t.Fatalf("Run %s: %v\n%s", iso, err, console.String())
	}
	if !strings.Contains(console.String(), "MARKER-FROM-ISO") {
		t.Fatalf("no marker on the console:\n%s", console.String())
	}
}
