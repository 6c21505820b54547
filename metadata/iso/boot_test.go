package iso

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func fakeISOLINUX() []byte {
	b := make([]byte, 4000)
	for i := range b {
		b[i] = byte(i * 13)
	}
	return b
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func bootOpts() Options {
	mbr := bytes.Repeat([]byte{0xEB}, 512)
	return Options{Label: "BOOT", Boot: &Boot{File: "isolinux.bin", HybridMBR: mbr, DiskID: 0x12345678}}
}

func bootFiles(big int64) []File {
	return []File{
		{Name: "isolinux.bin", Data: fakeISOLINUX()},
		{Name: "isolinux.cfg", Data: []byte("DEFAULT linux\n")},
		{Name: "kernel", Size: big, Open: func() (io.ReadCloser, error) { return io.NopCloser(io.LimitReader(zeroReader{}, big)), nil }},
	}
}

// TestBootImageLayout checks the El Torito records, the boot info table and the hybrid MBR
// against what the specifications and isohybrid say, and that xorriso reads them back.
func TestBootImageLayout(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, bootFiles(5000), bootOpts()); err != nil {
		t.Fatal(err)
	}
	img := buf.Bytes()
	if len(img)%cylinder != 0 {
		t.Errorf("hybrid image of %d bytes is not a whole number of MiB", len(img))
	}
	br := img[17*sector:]
	if br[0] != 0 || string(br[1:6]) != "CD001" || !strings.HasPrefix(string(br[7:]), "EL TORITO SPECIFICATION") {
		t.Fatalf("sector 17 is not a boot record: % x", br[:40])
	}
	cat := img[int(binary.LittleEndian.Uint32(br[0x47:]))*sector:]
	var sum uint16
	for i := 0; i < 32; i += 2 {
		sum += binary.LittleEndian.Uint16(cat[i:])
	}
	if cat[0] != 1 || sum != 0 || cat[30] != 0x55 || cat[31] != 0xAA {
		t.Errorf("validation entry: % x (sum %d)", cat[:32], sum)
	}
	if cat[32] != 0x88 || cat[33] != 0 || binary.LittleEndian.Uint16(cat[38:]) != 4 {
		t.Errorf("default entry: % x", cat[32:64])
	}
	lba := binary.LittleEndian.Uint32(cat[40:])
	boot := img[int(lba)*sector:]
	orig := fakeISOLINUX()
	var csum uint32
	for i := 64; i < len(orig); i += 4 {
		csum += binary.LittleEndian.Uint32(orig[i:])
	}
	if binary.LittleEndian.Uint32(boot[8:]) != 16 || binary.LittleEndian.Uint32(boot[12:]) != lba ||
		binary.LittleEndian.Uint32(boot[16:]) != uint32(len(orig)) || binary.LittleEndian.Uint32(boot[20:]) != csum {
		t.Errorf("boot info table: % x", boot[8:24])
	}
	if !bytes.Equal(boot[64:len(orig)], orig[64:]) || !bytes.Equal(boot[:8], orig[:8]) {
		t.Error("boot file changed outside its boot info table")
	}
	mbr := img[:512]
	if binary.LittleEndian.Uint32(mbr[432:]) != lba*4 || binary.LittleEndian.Uint32(mbr[440:]) != 0x12345678 ||
		mbr[446] != 0x80 || mbr[450] != 0x17 || binary.LittleEndian.Uint32(mbr[458:]) != uint32(len(img)/512) || mbr[510] != 0x55 || mbr[511] != 0xAA {
		t.Errorf("MBR: % x", mbr[432:])
	}
	if xorriso, err := exec.LookPath("xorriso"); err == nil {
		p := filepath.Join(t.TempDir(), "boot.iso")
		os.WriteFile(p, img, 0o644)
		out, err := exec.Command(xorriso, "-indev", p, "-report_el_torito", "plain").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "/isolinux.bin") || !strings.Contains(string(out), "boot-info-table") || !strings.Contains(string(out), "Boot record  : El Torito , MBR") {
			t.Errorf("xorriso: %v\n%s", err, out)
		}
	}
}

// TestBootImageSizeTooSmall: a size that cannot hold the image is refused with the size needed.
func TestBootImageSizeTooSmall(t *testing.T) {
	opts := bootOpts()
	need, err := Size(bootFiles(3<<20), opts)
	if err != nil {
		t.Fatal(err)
	}
	opts.Size = 1 << 20
	err = Write(io.Discard, bootFiles(3<<20), opts)
	var small *TooSmallError
	if !errors.As(err, &small) || small.Need != need || !strings.Contains(err.Error(), "4 MiB") {
		t.Fatalf("err = %v, want TooSmallError needing %d bytes", err, need)
	}
	opts.Size = 8 << 20
	var buf bytes.Buffer
	if err := Write(&buf, bootFiles(3<<20), opts); err != nil || buf.Len() != 8<<20 {
		t.Fatalf("size 8 MiB: %d bytes, %v", buf.Len(), err)
	}
	if binary.LittleEndian.Uint32(buf.Bytes()[458:]) != 8<<20/512 {
		t.Error("the partition does not cover the disk")
	}
	opts.Size = 8<<20 + 512
	if err := Write(io.Discard, bootFiles(10), opts); err == nil {
		t.Error("a hybrid size that is not whole MiB was accepted")
	}
}

// TestBootImageStreams: a 512 MiB file goes through without being held in memory.
func TestBootImageStreams(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := Write(io.Discard, bootFiles(512<<20), bootOpts()); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 16<<20 {
		t.Errorf("writing a 512 MiB image allocated %d MiB", d>>20)
	}
}

func TestBootFileRules(t *testing.T) {
	opts := bootOpts()
	opts.Boot.File = "missing.bin"
	if err := Write(io.Discard, bootFiles(1), opts); err == nil || !strings.Contains(err.Error(), "missing.bin") {
		t.Errorf("missing boot file: %v", err)
	}
	opts = bootOpts()
	opts.Boot.File = "kernel"
	if err := Write(io.Discard, bootFiles(1), opts); err == nil || !strings.Contains(err.Error(), "in memory") {
		t.Errorf("streamed boot file: %v", err)
	}
	files := bootFiles(100)
	files[2].Open = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("short")), nil }
	if err := Write(io.Discard, files, bootOpts()); err == nil || !strings.Contains(err.Error(), "kernel") {
		t.Errorf("a file shorter than its size: %v", err)
	}
}
