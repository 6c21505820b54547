package format

import (
	"bytes"
	"context"
	"debug/pe"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// Debian's EFI loaders, installed on the build machine by systemd-boot-efi and
// grub-efi-amd64-bin (the same files images/bootloader extracts from those packages).
const (
	debianStub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
	debianGRUB = "/usr/lib/grub/x86_64-efi/monolithic/grubx64.efi"
)

// efiInput is an Input with a fake kernel and initramfs and Debian's EFI loaders.
func efiInput(t *testing.T) *Input {
	t.Helper()
	boot := map[string][]byte{}
	for name, p := range map[string]string{bootStub: debianStub, bootGRUB: debianGRUB} {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			t.Skipf("%s missing (apt-get install systemd-boot-efi grub-efi-amd64-bin)", p)
		}
		if err != nil {
			t.Fatal(err)
		}
		boot[name] = b
	}
	in := biosInput(t)
	in.Cmdline = "console=ttyS0 quiet"
	in.MTime = 1700000000
	in.Bootloader = func(_ context.Context, name string) ([]byte, error) {
		if b, ok := boot[name]; ok {
			return b, nil
		}
		return nil, errors.New("no " + name)
	}
	return in
}

var efiFormats = []struct{ name, file string }{
	{"iso-efi", "x-efi.iso"},
	{"iso-efi-initrd", "x-efi-initrd.iso"},
	{"raw-efi", "x-efi.img"},
	{"raw-efi-initrd", "x-efi-initrd.img"},
	{"qcow2-efi", "x-efi.qcow2"},
}

// TestEFIFormatsReproducible: each EFI format written twice gives the same bytes, under its
// LinuxKit file name; the disks are whole MiBs.
func TestEFIFormatsReproducible(t *testing.T) {
	in := efiInput(t)
	for _, f := range efiFormats {
		var outs [2][]byte
		for i := range outs {
			p := writeFormat(t, f.name, in)
			if filepath.Base(p) != f.file {
				t.Errorf("%s wrote %s, want %s", f.name, filepath.Base(p), f.file)
			}
			outs[i], _ = os.ReadFile(p)
			os.Remove(p)
		}
		if len(outs[0]) == 0 || !bytes.Equal(outs[0], outs[1]) {
			t.Errorf("%s: two writes differ (or are empty)", f.name)
		}
		if strings.HasSuffix(f.file, ".img") && len(outs[0])%mib != 0 {
			t.Errorf("%s: %d bytes, not whole MiBs", f.name, len(outs[0]))
		}
	}
}

// espFS opens the EFI system partition of the GPT disk at p with go-diskfs, checking the
// partition table on the way.
func espFS(t *testing.T, p string) filesystem.FileSystem {
	t.Helper()
	st, err := file.OpenFromPath(p, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	g, err := gpt.Read(st, 512, 512)
	if err != nil {
		t.Fatalf("partition table: %v", err)
	}
	if len(g.Partitions) == 0 || g.Partitions[0].Type != gpt.EFISystemPartition || g.Partitions[0].Start != 2048 {
		t.Fatalf("want a GPT with the ESP at sector 2048, got %#v", g)
	}
	esp := g.Partitions[0]
	fs, err := fat32.Read(st, int64(esp.End-esp.Start+1)*512, int64(esp.Start)*512, 512)
	if err != nil {
		t.Fatalf("ESP file system: %v", err)
	}
	return fs
}

func readFS(t *testing.T, fs filesystem.FileSystem, p string) []byte {
	t.Helper()
	f, err := fs.OpenFile(p, os.O_RDONLY)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return b
}

// checkUKI parses b as a PE image and checks its .cmdline, .initrd and .linux sections hold
// the inputs, and that the stub's own sections are still there.
func checkUKI(t *testing.T, in *Input, b []byte) {
	t.Helper()
	f, err := pe.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("unified kernel image: %v", err)
	}
	want := map[string][]byte{".cmdline": append([]byte(in.Cmdline), 0), ".initrd": mustRead(t, in.Initrd), ".linux": mustRead(t, in.Kernel)}
	for name, w := range want {
		s := f.Section(name)
		if s == nil {
			t.Fatalf("no %s section", name)
		}
		got, err := s.Data()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[:s.VirtualSize], w) || s.VirtualAddress%4096 != 0 {
			t.Errorf("%s: %d bytes at %#x, want the %d input bytes page-aligned", name, s.VirtualSize, s.VirtualAddress, len(w))
		}
	}
	if f.Section(".sdmagic") == nil || f.Section(".text") == nil {
		t.Error("the stub's sections are gone")
	}
	opt := f.OptionalHeader.(*pe.OptionalHeader64)
	last := f.Sections[len(f.Sections)-1]
	if opt.SizeOfImage < last.VirtualAddress+last.VirtualSize {
		t.Errorf("SizeOfImage %#x does not cover the last section", opt.SizeOfImage)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRawEFILayout reads raw-efi and raw-efi-initrd back with go-diskfs (GPT, FAT32) and
// dosfstools' fsck, and checks what firmware and GRUB will find there.
func TestRawEFILayout(t *testing.T) {
	in := efiInput(t)
	raw := writeFormat(t, "raw-efi", in)
	checkUKI(t, in, readFS(t, espFS(t, raw), "/EFI/BOOT/BOOTX64.EFI"))
	fsckESP(t, raw)

	raw = writeFormat(t, "raw-efi-initrd", in)
	fs := espFS(t, raw)
	if !bytes.Equal(readFS(t, fs, "/EFI/BOOT/BOOTX64.EFI"), mustRead(t, debianGRUB)) {
		t.Error("BOOTX64.EFI is not GRUB")
	}
	if got, want := string(readFS(t, fs, "/EFI/BOOT/GRUB.CFG")), "linux /KERNEL console=ttyS0 quiet\ninitrd /INITRD.IMG\n"; !strings.Contains(got, want) {
		t.Errorf("grub.cfg:\n%s\nwant it to contain\n%s", got, want)
	}
	if !bytes.Equal(readFS(t, fs, "/KERNEL"), mustRead(t, in.Kernel)) || !bytes.Equal(readFS(t, fs, "/INITRD.IMG"), mustRead(t, in.Initrd)) {
		t.Error("kernel or initramfs differ from the inputs")
	}
	fsckESP(t, raw)
}

// fsckESP runs fsck.fat read-only on the partition at 1 MiB of the disk at p.
func fsckESP(t *testing.T, p string) {
	t.Helper()
	fsck, err := exec.LookPath("fsck.fat")
	if err != nil {
		t.Log("fsck.fat not installed (apt-get install dosfstools): FAT not cross-checked")
		return
	}
	disk := mustRead(t, p)
	part := filepath.Join(t.TempDir(), "esp")
	size := int64(binary.LittleEndian.Uint32(disk[mib+32:])) * 512
	os.WriteFile(part, disk[mib:mib+size], 0o644)
	if out, err := exec.Command(fsck, "-n", "-v", part).CombinedOutput(); err != nil || !strings.Contains(string(out), "32 bit entries") {
		t.Errorf("fsck.fat: %v\n%s", err, out)
	}
}

// TestISOEFILayout: the ISO's El Torito catalog has an EFI entry pointing at a FAT image
// holding the loader, readable by go-diskfs.
func TestISOEFILayout(t *testing.T) {
	in := efiInput(t)
	for _, f := range []string{"iso-efi", "iso-efi-initrd"} {
		b := mustRead(t, writeFormat(t, f, in))
		catalog := int64(binary.LittleEndian.Uint32(b[17*2048+0x47:])) * 2048
		if string(b[17*2048+1:17*2048+6]) != "CD001" || b[catalog+1] != 0xEF || b[catalog+32] != 0x88 {
			t.Fatalf("%s: no bootable EFI El Torito entry", f)
		}
		at := int64(binary.LittleEndian.Uint32(b[catalog+40:])) * 2048
		size := int64(binary.LittleEndian.Uint32(b[at+32:])) * 512
		esp := filepath.Join(t.TempDir(), "esp")
		os.WriteFile(esp, b[at:at+size], 0o644)
		st, err := file.OpenFromPath(esp, true)
		if err != nil {
			t.Fatal(err)
		}
		fs, err := fat32.Read(st, size, 0, 512)
		if err != nil {
			t.Fatalf("%s: ESP: %v", f, err)
		}
		loader := readFS(t, fs, "/EFI/BOOT/BOOTX64.EFI")
		if f == "iso-efi" {
			checkUKI(t, in, loader)
		} else if !bytes.Equal(loader, mustRead(t, debianGRUB)) {
			t.Errorf("%s: GRUB is not the ESP's loader", f)
		} else if !bytes.Contains(b, []byte("linux /kernel console=ttyS0 quiet\ninitrd /initrd.img\n")) || !bytes.Contains(b, mustRead(t, in.Initrd)) {
			t.Errorf("%s: no GRUB configuration or initramfs on the ISO", f)
		}
		st.Close()
	}
}

// TestQcow2EFIMatchesRaw: qemu-img finds qcow2-efi sound and identical to raw-efi of the
// same size (the backup GPT at its end included); only the data clusters are allocated.
func TestQcow2EFIMatchesRaw(t *testing.T) {
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed (apt-get install qemu-utils)")
	}
	in := efiInput(t)
	in.DiskSize = 1 << 30
	raw := writeFormat(t, "raw-efi", in)
	qcow := writeFormat(t, "qcow2-efi", in)
	for _, c := range [][]string{
		{"check", "-f", "qcow2", qcow},
		{"compare", "-f", "raw", "-F", "qcow2", raw, qcow},
	} {
		if out, err := exec.Command(qemuImg, c...).CombinedOutput(); err != nil || strings.Contains(string(out), "mismatch") {
			t.Errorf("qemu-img %s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
	if st, _ := os.Stat(qcow); st.Size() > 50<<20 {
		t.Errorf("qcow2-efi is %d bytes for a 1 GiB disk: free space allocated", st.Size())
	}
}

// TestEFIDiskSizeTooSmall: --size too small for what the disk holds is refused, naming the
// size needed; a size that is not whole MiBs is refused.
func TestEFIDiskSizeTooSmall(t *testing.T) {
	in := efiInput(t)
	in.DiskSize = 8 << 20
	f, _ := Lookup("raw-efi")
	_, err := f.Write(context.Background(), in)
	if err == nil || !strings.Contains(err.Error(), "--size 8 MiB is too small") || !strings.Contains(err.Error(), "(--size 35M)") {
		t.Errorf("raw-efi --size 8M: %v", err)
	}
	in.DiskSize = 64<<20 + 512
	if _, err := f.Write(context.Background(), in); err == nil || !strings.Contains(err.Error(), "whole number of MiB") {
		t.Errorf("raw-efi --size 64M+512: %v", err)
	}
	in.DiskSize = 35 << 20
	if _, err := f.Write(context.Background(), in); err != nil {
		t.Errorf("raw-efi at the size named: %v", err)
	}
}

// TestGRUBConfigRefusesShellSyntax: a command line GRUB would interpret is refused, naming the
// character.
func TestGRUBConfigRefusesShellSyntax(t *testing.T) {
	if _, err := grubConfig(`console=ttyS0 x=$y`, "/K", "/I"); err == nil || !strings.Contains(err.Error(), `"$"`) {
		t.Errorf("got %v", err)
	}
}

// TestUKIRefusesBadStub: a file that is not a PE32+ image, or has no room for the sections, is
// refused with the reason.
func TestUKIRefusesBadStub(t *testing.T) {
	if _, err := newUKI([]byte("not a PE"), nil); err == nil || !strings.Contains(err.Error(), "not a PE") {
		t.Errorf("garbage: %v", err)
	}
	stub, err := os.ReadFile(debianStub)
	if err != nil {
		t.Skipf("%s: %v", debianStub, err)
	}
	many := make([]ukiSection, 20)
	for i := range many {
		many[i] = ukiSection{name: ".x", size: 1, data: []byte{1}}
	}
	if _, err := newUKI(stub, many); err == nil || !strings.Contains(err.Error(), "no room") {
		t.Errorf("20 sections: %v", err)
	}
}

// BenchmarkEFIFormats writes each EFI format for a 50 MB initramfs and a 10 MB kernel to a
// file and reports MB/s of input.
func BenchmarkEFIFormats(b *testing.B) {
	dir := b.TempDir()
	kernel, initrd := filepath.Join(dir, "kernel"), filepath.Join(dir, "initrd")
	os.WriteFile(kernel, bytes.Repeat([]byte("K"), 10<<20), 0o644)
	os.WriteFile(initrd, bytes.Repeat([]byte("I"), 50<<20), 0o644)
	boot := map[string][]byte{}
	for name, p := range map[string]string{bootStub: debianStub, bootGRUB: debianGRUB} {
		c, err := os.ReadFile(p)
		if err != nil {
			b.Skipf("%s: %v", p, err)
		}
		boot[name] = c
	}
	in := &Input{Name: "x", Dir: filepath.Join(dir, "out"), Kernel: kernel, Initrd: initrd, Segments: []string{initrd}, Cmdline: "console=ttyS0",
		Bootloader: func(_ context.Context, name string) ([]byte, error) { return boot[name], nil }}
	os.MkdirAll(in.Dir, 0o755)
	for _, f := range efiFormats {
		b.Run(f.name, func(b *testing.B) {
			fm, _ := Lookup(f.name)
			b.SetBytes(60 << 20)
			for i := 0; i < b.N; i++ {
				if _, err := fm.Write(context.Background(), in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
