package initrd

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mobykit/mobykit/assembler/fstree"
)

type ent struct {
	h    Header
	data string
}

func writeArchive(t *testing.T, ents []ent, opts ...Option) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf, opts...)
	for _, e := range ents {
		h := e.h
		if h.Mode&fstree.TypeMask == fstree.TypeReg {
			h.Size = int64(len(e.data))
		}
		if err := w.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if e.data != "" {
			if _, err := w.Write([]byte(e.data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var sample = []ent{
	{h: Header{Name: "etc", Mode: fstree.TypeDir | 0o755}},
	{h: Header{Name: "etc/hosts", Mode: fstree.TypeReg | 0o644, UID: 1, GID: 2}, data: "127.0.0.1 localhost\n"},
	{h: Header{Name: "etc/odd", Mode: fstree.TypeReg | 0o600}, data: "abc"},
	{h: Header{Name: "etc/link", Mode: fstree.TypeSymlink | 0o777, Linkname: "hosts"}},
	{h: Header{Name: "dev", Mode: fstree.TypeDir | 0o755}},
	{h: Header{Name: "dev/null", Mode: fstree.TypeChar | 0o666, DevMajor: 1, DevMinor: 3}},
	{h: Header{Name: "empty", Mode: fstree.TypeReg | 0o644}},
}

func TestRoundTrip(t *testing.T) {
	a := writeArchive(t, sample, WithMTime(1234))
	if len(a)%4 != 0 {
		t.Fatalf("archive length %d not 4-aligned", len(a))
	}
	// Two archives back to back read as one stream.
	r := NewReader(bytes.NewReader(append(append([]byte{}, a...), a...)))
	for round := 0; round < 2; round++ {
		for _, e := range sample {
			h, err := r.Next()
			if err != nil {
				t.Fatalf("round %d %s: %v", round, e.h.Name, err)
			}
			if h.Name != e.h.Name || h.Mode != e.h.Mode || h.UID != e.h.UID || h.GID != e.h.GID || h.Linkname != e.h.Linkname || h.MTime != 1234 {
				t.Errorf("got %+v, want %+v", h, e.h)
			}
			data, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if string(data) != e.data {
				t.Errorf("%s: data %q, want %q", h.Name, data, e.data)
			}
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}
}

func TestDeterministic(t *testing.T) {
	if !bytes.Equal(writeArchive(t, sample), writeArchive(t, sample)) {
		t.Fatal("same input gave different archives")
	}
}

// TestGNUCpio checks the archive with an independent reader, GNU cpio.
func TestGNUCpio(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("cpio not installed (apt-get install cpio); skipping")
	}
	a := writeArchive(t, sample)
	cmd := exec.Command(cpio, "-t", "-v", "--quiet")
	cmd.Stdin = bytes.NewReader(a)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v\n%s", err, out)
	}
	for _, e := range sample {
		if !strings.Contains(string(out), e.h.Name) {
			t.Errorf("cpio listing lacks %s:\n%s", e.h.Name, out)
		}
	}
	dir := t.TempDir()
	cmd = exec.Command(cpio, "-i", "-d", "--quiet", "--no-absolute-filenames")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(writeArchive(t, sample[:4]))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "etc/hosts"))
	if err != nil || string(got) != sample[1].data {
		t.Fatalf("extracted etc/hosts = %q, %v", got, err)
	}
}

func TestLimit(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, WithLimit(600))
	if err := w.WriteHeader(&Header{Name: "big", Mode: fstree.TypeReg | 0o644, Size: 1000}); err != nil {
		t.Fatal(err)
	}
	_, err := w.Write(make([]byte, 1000))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("want ErrTooLarge, got %v", err)
	}
	// The offset of earlier segments counts too.
	w = NewWriter(io.Discard, WithLimit(1000), WithOffset(990))
	if err := w.WriteHeader(&Header{Name: "x", Mode: fstree.TypeDir | 0o755}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("want ErrTooLarge, got %v", err)
	}
	// A single file over 4 GiB cannot be described at all.
	w = NewWriter(io.Discard)
	if err := w.WriteHeader(&Header{Name: "huge", Mode: fstree.TypeReg | 0o644, Size: 1 << 32}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("want ErrTooLarge, got %v", err)
	}
}

func TestWriterChecks(t *testing.T) {
	w := NewWriter(io.Discard)
	if err := w.WriteHeader(&Header{Name: "f", Mode: fstree.TypeReg, Size: 3}); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteHeader(&Header{Name: "g", Mode: fstree.TypeReg}); err == nil {
		t.Fatal("header accepted while data of the previous entry is missing")
	}
	w = NewWriter(io.Discard)
	if err := w.WriteHeader(&Header{Name: "TRAILER!!!", Mode: fstree.TypeReg}); err == nil {
		t.Fatal("trailer name accepted as an entry")
	}
}

// TestLongNameRefused: the kernel silently skips an entry whose name or
// symlink target is longer than PATH_MAX, so the writer refuses it.
func TestLongNameRefused(t *testing.T) {
	long := strings.Repeat("a/", MaxPath/2) + "bc"
	w := NewWriter(io.Discard)
	if err := w.WriteHeader(&Header{Name: long, Mode: fstree.TypeDir | 0o755}); err == nil || !strings.Contains(err.Error(), "longer than the kernel's limit") {
		t.Fatalf("name of %d bytes: %v", len(long), err)
	}
	if err := w.WriteHeader(&Header{Name: "l", Mode: fstree.TypeSymlink | 0o777, Linkname: long}); err == nil || !strings.Contains(err.Error(), "l: symlink target") {
		t.Fatalf("symlink target of %d bytes: %v", len(long), err)
	}
	if err := w.WriteHeader(&Header{Name: long[:MaxPath], Mode: fstree.TypeDir | 0o755}); err != nil {
		t.Fatalf("name of exactly %d bytes: %v", MaxPath, err)
	}
}

func TestCompression(t *testing.T) {
	a := writeArchive(t, sample)
	for _, c := range []Compression{Gzip, Zstd, Lz4, None} {
		t.Run(string(c), func(t *testing.T) {
			var z1, z2 bytes.Buffer
			for _, z := range []*bytes.Buffer{&z1, &z2} {
				w, err := Compress(z, c)
				if err != nil {
					t.Fatal(err)
				}
				// two members, as segments are concatenated
				w.Write(a)
				w.Close()
			}
			if !bytes.Equal(z1.Bytes(), z2.Bytes()) {
				t.Fatal("compression is not deterministic")
			}
			cat := append(append([]byte{}, z1.Bytes()...), z2.Bytes()...)
			r, err := Decompress(bytes.NewReader(cat))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, append(append([]byte{}, a...), a...)) {
				t.Fatal("concatenated members did not decompress to the concatenated archives")
			}
		})
	}
}

func TestParseCompression(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Compression
	}{{"", Gzip}, {"gzip", Gzip}, {"zstd", Zstd}, {"lz4", Lz4}, {"none", None}} {
		got, err := ParseCompression(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseCompression(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"xz", "lz4hc", "LZ4", "bzip2"} {
		_, err := ParseCompression(in)
		if err == nil {
			t.Errorf("ParseCompression(%q) accepted", in)
		} else if !strings.Contains(err.Error(), "gzip, zstd, lz4 or none") {
			t.Errorf("ParseCompression(%q): %v does not list the choices", in, err)
		}
	}
}

func FuzzReader(f *testing.F) {
	f.Add(writeArchive(&testing.T{}, sample))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(bytes.NewReader(b))
		for i := 0; i < 1000; i++ {
			if _, err := r.Next(); err != nil {
				return
			}
			io.Copy(io.Discard, r)
		}
	})
}
