package format

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
)

func writeFormat(t *testing.T, name string, in *Input) string {
	t.Helper()
	f, err := Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	out, err := f.Write(context.Background(), in)
	if err != nil || len(out) != 1 {
		t.Fatalf("%s: %v, %v", name, out, err)
	}
	return out[0]
}

func fileSum(t *testing.T, p string) [32]byte {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// TestCloudFormatsReproducible: aws, vhd, qcow2-bios and gcp written twice give the same bytes.
func TestCloudFormatsReproducible(t *testing.T) {
	in := biosInput(t)
	for _, name := range []string{"aws", "vhd", "dynamic-vhd", "qcow2-bios", "vmdk", "gcp"} {
		a := fileSum(t, writeFormat(t, name, in))
		os.Rename(filepath.Join(in.Dir), in.Dir+"-"+name)
		if b := fileSum(t, writeFormat(t, name, in)); a != b {
			t.Errorf("%s: two writes differ", name)
		}
	}
}

// TestCloudFormatsMatchRaw: qemu-img finds the qcow2, VMDK and VHD (fixed and dynamic) images sound and identical to the
// raw disk, and the gcp tarball's disk.raw is the raw disk.
func TestCloudFormatsMatchRaw(t *testing.T) {
	in := biosInput(t)
	in.DiskSize = 1 << 30
	raw := writeFormat(t, "aws", in)
	if filepath.Base(raw) != "x.raw" {
		t.Errorf("aws wrote %s", raw)
	}
	if st, _ := os.Stat(raw); st.Size() != 1<<30 {
		t.Errorf("aws: %d bytes, want --size", st.Size())
	}
	qcow := writeFormat(t, "qcow2-bios", in)
	vmdk := writeFormat(t, "vmdk", in)
	dyn := writeFormat(t, "dynamic-vhd", in)
	os.Rename(dyn, dyn+".dynamic")
	dyn += ".dynamic"
	vhd := writeFormat(t, "vhd", in)
	b, _ := os.ReadFile(vhd)
	footer := b[len(b)-512:]
	var sum uint32
	for i, c := range footer {
		if i < 64 || i >= 68 {
			sum += uint32(c)
		}
	}
	if string(footer[:8]) != "conectix" || binary.BigEndian.Uint32(footer[64:]) != ^sum || binary.BigEndian.Uint64(footer[48:]) != 1<<30 {
		t.Errorf("VHD footer: % x", footer[:72])
	}
	if qemuImg, err := exec.LookPath("qemu-img"); err == nil {
		for _, c := range [][]string{
			{"check", "-f", "qcow2", qcow},
			{"check", "-f", "vmdk", vmdk},
			{"compare", "-f", "raw", "-F", "vmdk", raw, vmdk},
			{"compare", "-f", "raw", "-F", "qcow2", raw, qcow},
			{"compare", "-f", "raw", "-F", "vpc", raw, vhd},
			{"compare", "-f", "raw", "-F", "vpc", raw, dyn},
		} {
			if out, err := exec.Command(qemuImg, c...).CombinedOutput(); err != nil || strings.Contains(string(out), "mismatch") {
				t.Errorf("qemu-img %s: %v\n%s", strings.Join(c, " "), err, out)
			}
		}
	} else {
		t.Log("qemu-img not installed (apt-get install qemu-utils): qcow2 and VHD not cross-checked")
	}
	f, _ := os.Open(writeFormat(t, "gcp", in))
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	h, err := tr.Next()
	if err != nil || h.Name != "disk.raw" || h.Size != 1<<30 || h.Format != tar.FormatGNU {
		t.Fatalf("gcp: %+v, %v", h, err)
	}
	hs := sha256.New()
	io.Copy(hs, tr)
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("gcp: more than disk.raw: %v", err)
	}
	if want := fileSum(t, raw); !bytes.Equal(hs.Sum(nil), want[:]) {
		t.Error("gcp: disk.raw differs from the raw disk")
	}
}

func TestCloudSizes(t *testing.T) {
	in := biosInput(t)
	os.WriteFile(in.Initrd, bytes.Repeat([]byte("I"), 3<<20), 0o644)
	in.DiskSize = 2 << 20
	for _, name := range []string{"aws", "qcow2-bios", "vhd", "dynamic-vhd", "vmdk"} {
		f, _ := Lookup(name)
		if _, err := f.Write(context.Background(), in); err == nil || !strings.Contains(err.Error(), "--size 4M") {
			t.Errorf("%s with --size 2M: %v", name, err)
		}
	}
	in.DiskSize = 1536 << 20
	f, _ := Lookup("gcp")
	if _, err := f.Write(context.Background(), in); err == nil || !strings.Contains(err.Error(), "whole number of GiB") {
		t.Errorf("gcp with --size 1536M: %v", err)
	}
}
