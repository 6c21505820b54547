package format

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type fake struct{ name string }

func (f fake) Name() string                                  { return f.name }
func (fake) Write(context.Context, *Input) ([]string, error) { return nil, nil }

func TestRegistry(t *testing.T) {
	Register(fake{"test-fake"})
	if f, err := Lookup("test-fake"); err != nil || f.Name() != "test-fake" {
		t.Fatalf("Lookup = %v, %v", f, err)
	}
	names := strings.Join(Names(), ",")
	for _, n := range []string{"kernel+initrd", "tar", "tar-kernel-initrd", "test-fake"} {
		if !strings.Contains(names, n) {
			t.Errorf("Names() = %s lacks %s", names, n)
		}
	}
	if _, err := Lookup("nope"); err == nil || !strings.Contains(err.Error(), "kernel+initrd") {
		t.Errorf("unknown format error %v should list the known ones", err)
	}
	// every LinuxKit format is written but rpi3, which says why
	for _, n := range []string{"iso-bios", "iso-efi", "iso-efi-initrd", "raw-bios", "raw-efi", "raw-efi-initrd",
		"qcow2-bios", "qcow2-efi", "vhd", "dynamic-vhd", "vmdk", "gcp", "aws", "kernel+iso", "kernel+squashfs",
		"kernel+erofs", "docker", "tar", "tar-kernel-initrd", "kernel+initrd"} {
		if _, err := Lookup(n); err != nil {
			t.Errorf("LinuxKit's format %s: %v", n, err)
		}
	}
	if _, err := Lookup("rpi3"); err == nil || !strings.Contains(err.Error(), "docs/formats.md") {
		t.Errorf("rpi3: %v, want an error pointing at docs/formats.md", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("duplicate Register did not panic")
		}
	}()
	Register(fake{"test-fake"})
}

func TestKernelInitrd(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "k"), []byte("KERNEL"), 0o600)
	os.WriteFile(filepath.Join(src, "i"), []byte("INITRD"), 0o600)
	f, _ := Lookup("kernel+initrd")
	out, err := f.Write(context.Background(), &Input{Name: "x", Dir: dir, Kernel: filepath.Join(src, "k"), Initrd: filepath.Join(src, "i"), Cmdline: "console=ttyS0"})
	if err != nil || len(out) != 3 {
		t.Fatalf("Write = %v, %v", out, err)
	}
	for name, want := range map[string]string{"x-kernel": "KERNEL", "x-initrd.img": "INITRD", "x-cmdline": "console=ttyS0"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q, %v", name, b, err)
		}
		if st, _ := os.Stat(filepath.Join(dir, name)); st.Mode().Perm() != 0o644 {
			t.Errorf("%s mode %v", name, st.Mode())
		}
	}
	// No temporary files left behind.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left %s", e.Name())
		}
	}
}
