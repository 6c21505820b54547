package format

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// biosInput is an Input with a fake kernel, initramfs and bootloader.
func biosInput(t *testing.T) *Input {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "kernel"), bytes.Repeat([]byte("K"), 300_000), 0o644)
	os.WriteFile(filepath.Join(src, "initrd"), bytes.Repeat([]byte("I"), 700_000), 0o644)
	boot := map[string][]byte{bootISOLINUX: bytes.Repeat([]byte{1, 2, 3, 4}, 1000), bootLDLINUX: []byte("ldlinux"), bootHybrid: make([]byte, 512)}
	return &Input{
		Name: "x", Dir: filepath.Join(dir, "out"), Kernel: filepath.Join(src, "kernel"), Initrd: filepath.Join(src, "initrd"),
		Segments: []string{filepath.Join(src, "initrd")}, Cmdline: "console=ttyS0",
		Bootloader: func(_ context.Context, name string) ([]byte, error) {
			if b, ok := boot[name]; ok {
				return b, nil
			}
			return nil, fmt.Errorf("no %s", name)
		},
	}
}

// TestBIOSFormatsReproducible: each BIOS format written twice gives the same bytes.
func TestBIOSFormatsReproducible(t *testing.T) {
	in := biosInput(t)
	for _, name := range []string{"iso-bios", "raw-bios"} {
		f, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		var outs [2][]byte
		for i := range outs {
			p, err := f.Write(context.Background(), in)
			if err != nil || len(p) != 1 {
				t.Fatalf("%s: %v, %v", name, p, err)
			}
			outs[i], _ = os.ReadFile(p[0])
		}
		if !bytes.Equal(outs[0], outs[1]) || len(outs[0])%(1<<20) != 0 {
			t.Errorf("%s: two writes differ or are not whole MiB (%d bytes)", name, len(outs[0]))
		}
		if !bytes.Contains(outs[0], []byte("APPEND initrd=/initrd.img console=ttyS0\n")) {
			t.Errorf("%s: no ISOLINUX configuration with the command line", name)
		}
	}
}

// TestRawBIOSSizeTooSmall: --size too small for what the disk holds is refused, naming the
// size needed.
func TestRawBIOSSizeTooSmall(t *testing.T) {
	in := biosInput(t)
	os.WriteFile(in.Initrd, bytes.Repeat([]byte("I"), 3<<20), 0o644)
	in.DiskSize = 2 << 20
	f, _ := Lookup("raw-bios")
	_, err := f.Write(context.Background(), in)
	if err == nil || !strings.Contains(err.Error(), "--size 2 MiB is too small") || !strings.Contains(err.Error(), "--size 4M") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(in.Dir, "x-bios.img")); !os.IsNotExist(err) {
		t.Errorf("a disk was left behind: %v", err)
	}
	in.DiskSize = 16 << 20
	p, err := f.Write(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p[0]); st.Size() != 16<<20 {
		t.Errorf("--size 16M gave %d bytes", st.Size())
	}
}

// TestBIOSCmdlineLineBreakRefused: a command line with a line break would add directives to
// the bootloader's configuration; it is refused.
func TestBIOSCmdlineLineBreakRefused(t *testing.T) {
	in := biosInput(t)
	in.Cmdline = "console=ttyS0\nKERNEL /evil"
	f, _ := Lookup("iso-bios")
	if _, err := f.Write(context.Background(), in); err == nil || !strings.Contains(err.Error(), "command line") {
		t.Fatalf("err = %v", err)
	}
}

func TestBIOSNeedsKernelAndBootloader(t *testing.T) {
	in := biosInput(t)
	in.Bootloader = func(context.Context, string) ([]byte, error) {
		return nil, errors.New("bootloader image mobykit/bootloader:latest: not found")
	}
	f, _ := Lookup("iso-bios")
	if _, err := f.Write(context.Background(), in); err == nil || !strings.Contains(err.Error(), "mobykit/bootloader") {
		t.Errorf("missing bootloader: %v", err)
	}
	in = biosInput(t)
	in.Kernel = ""
	if _, err := f.Write(context.Background(), in); err == nil || !strings.Contains(err.Error(), "kernel") {
		t.Errorf("no kernel: %v", err)
	}
}
