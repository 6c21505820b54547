package assembler

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOutputFlagOnFolderIsRefused: -o used to name the output folder; a script still passing
// a folder must get an error saying to use --dir, not a file written where the folder was meant.
func TestOutputFlagOnFolderIsRefused(t *testing.T) {
	dir := t.TempDir()
	for _, o := range []string{dir, filepath.Join(dir, "new") + "/"} {
		var opts Options
		_, err := Flags{File: o, Specs: []string{"hello.yml"}}.Apply(&opts)
		if !errors.Is(err, ErrOutputIsFolder) || !strings.Contains(err.Error(), "--dir") || !strings.Contains(err.Error(), o) {
			t.Errorf("-o %s: err = %v, want ErrOutputIsFolder naming it and --dir", o, err)
		}
	}
}

// TestFlagsFollowLinuxKit checks the rules linuxkit build applies to its output flags.
func TestFlagsFollowLinuxKit(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "img.tar")
	for _, c := range []struct {
		f       Flags
		want    Options
		wantErr string
	}{
		{f: Flags{Specs: []string{"a/base.yml", "b/hello.yml"}}, want: Options{Name: "hello", OutputDir: ".", Formats: []string{"kernel+initrd"}}},
		{f: Flags{Specs: []string{"-"}}, want: Options{Name: "linuxkit", OutputDir: ".", Formats: []string{"kernel+initrd"}}},
		{f: Flags{Dir: "out", Name: "x", Formats: []string{"tar", "kernel+initrd"}}, want: Options{Name: "x", OutputDir: "out", Formats: []string{"tar", "kernel+initrd"}}},
		{f: Flags{File: file, Specs: []string{"hello.yml"}}, want: Options{Name: "img", OutputDir: ".", OutputFile: file, Formats: []string{"tar"}}},
		{f: Flags{File: "-", Formats: []string{"tar-kernel-initrd"}, Specs: []string{"hello.yml"}}, want: Options{Name: "hello", OutputDir: ".", OutputFile: "-", Formats: []string{"tar-kernel-initrd"}}},
		{f: Flags{Size: "2G"}, want: Options{OutputDir: ".", Formats: []string{"kernel+initrd"}, DiskSize: 2 << 30}},
		{f: Flags{File: file, Formats: []string{"tar", "tar-kernel-initrd"}}, wantErr: "single output format"},
		{f: Flags{File: file, Name: "x"}, wantErr: "--name"},
		{f: Flags{File: file, Dir: "out"}, wantErr: "--dir"},
		{f: Flags{File: file, Formats: []string{"kernel+initrd"}}, wantErr: "several files"},
		{f: Flags{Formats: []string{"floppy"}}, wantErr: "unknown format"},
		{f: Flags{Size: "12K"}, wantErr: "--size"},
	} {
		var o Options
		_, err := c.f.Apply(&o)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%+v: err = %v, want %q", c.f, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%+v: %v", c.f, err)
			continue
		}
		if o.Name != c.want.Name || o.OutputDir != c.want.OutputDir || o.OutputFile != c.want.OutputFile ||
			strings.Join(o.Formats, ",") != strings.Join(c.want.Formats, ",") || o.DiskSize != c.want.DiskSize {
			t.Errorf("%+v: got %+v, want %+v", c.f, o, c.want)
		}
	}
}

// TestOutputFlagWithoutFormatSaysTar: -o FILE without --format writes tar, as linuxkit does; as
// that differs from what -o meant before, the user is told.
func TestOutputFlagWithoutFormatSaysTar(t *testing.T) {
	var o Options
	notes, err := Flags{File: "out.tar"}.Apply(&o)
	if err != nil || len(notes) != 1 || !strings.Contains(notes[0], "tar") || !strings.Contains(notes[0], "--dir") {
		t.Fatalf("notes = %q, %v", notes, err)
	}
}

func TestInputTarChecked(t *testing.T) {
	dir := t.TempDir()
	notTar := filepath.Join(dir, "x.tar")
	os.WriteFile(notTar, bytes.Repeat([]byte("x"), 1024), 0o644)
	var o Options
	if _, err := (Flags{InputTar: filepath.Join(dir, "missing.tar")}).Apply(&o); err == nil || !strings.Contains(err.Error(), "missing.tar") {
		t.Errorf("missing --input-tar: %v", err)
	}
	if _, err := (Flags{InputTar: notTar}).Apply(&o); err == nil || !strings.Contains(err.Error(), "not a tar") {
		t.Errorf("--input-tar of junk: %v", err)
	}
	o.Pull = true
	if _, err := (Flags{InputTar: notTar}).Apply(&o); err == nil || !strings.Contains(err.Error(), "--pull") {
		t.Errorf("--input-tar with --pull: %v", err)
	}
}

func TestParseSizeAsLinuxKit(t *testing.T) {
	for in, want := range map[string]int64{"1024M": 1 << 30, "2G": 2 << 30, "3": 3 << 30, "100M": 100 << 20} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "-1G", "0", "1T", "99999999999G"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

// TestOutputFileAndStdout builds to -o FILE and to -o -: the same bytes as the tar written
// into --dir.
func TestOutputFileAndStdout(t *testing.T) {
	f := newFixture(t, memRegistry(t))
	f.build(t, "dir", func(o *Options) { o.Formats = []string{"tar"} })
	want := mustRead(t, filepath.Join(f.dir, "dir", "test.tar"))
	file := filepath.Join(f.dir, "single", "image.tar")
	res := f.build(t, "unused", func(o *Options) { o.Formats, o.OutputFile = []string{"tar"}, file })
	if got := mustRead(t, file); !bytes.Equal(got, want) || len(res.Outputs) != 1 || res.Outputs[0] != file {
		t.Errorf("-o FILE: %d bytes (want %d), outputs %v", len(got), len(want), res.Outputs)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "unused")); !os.IsNotExist(err) {
		t.Errorf("-o FILE created the output folder: %v", err)
	}
	var stdout bytes.Buffer
	f.build(t, "unused", func(o *Options) { o.Formats, o.OutputFile, o.Stdout = []string{"tar"}, "-", &stdout })
	if !bytes.Equal(stdout.Bytes(), want) {
		t.Errorf("-o -: %d bytes, want %d", stdout.Len(), len(want))
	}
	ents, _ := os.ReadDir(filepath.Dir(file))
	if len(ents) != 1 {
		t.Errorf("-o FILE left %d files beside it", len(ents))
	}
}

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestDecompressKernel(t *testing.T) {
	vmlinux := bytes.Repeat([]byte("\x7fELF kernel "), 1000)
	// A bzImage: 2 setup sectors after the boot sector, then the payload.
	bz := make([]byte, 3*512)
	bz[0x1f1] = 2
	binary.LittleEndian.PutUint16(bz[0x1fe:], 0xaa55)
	copy(bz[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(bz[0x206:], 0x20f)
	payload := gz(t, vmlinux)
	binary.LittleEndian.PutUint32(bz[0x248:], 0)
	binary.LittleEndian.PutUint32(bz[0x24c:], uint32(len(payload)))
	bz = append(bz, payload...)
	bz = append(bz, "trailing setup data"...)
	for name, in := range map[string][]byte{"gzip": gz(t, vmlinux), "bzImage": bz} {
		var out bytes.Buffer
		if err := decompressKernel(bytes.NewReader(in), int64(len(in)), &out); err != nil || !bytes.Equal(out.Bytes(), vmlinux) {
			t.Errorf("%s: %d bytes, %v", name, out.Len(), err)
		}
	}
	binary.LittleEndian.PutUint32(bz[0x24c:], 1<<30)
	if err := decompressKernel(bytes.NewReader(bz), int64(len(bz)), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Errorf("payload past the end: %v", err)
	}
	if err := decompressKernel(strings.NewReader("MZ plain"), 8, &bytes.Buffer{}); err == nil {
		t.Error("plain file accepted")
	}
}

// TestBuildDecompressKernel: --decompress-kernel writes NAME-kernel decompressed, and a build
// without it is not served the decompressed kernel from the cache.
func TestBuildDecompressKernel(t *testing.T) {
	host := memRegistry(t)
	f := newFixture(t, host)
	push(t, host+"/kernel:6.1", testImage(t, nil, []tf{{name: "kernel", data: string(gz(t, []byte(kernelBytes)))}, {name: "kernel.tar", data: string(tarBytes(t, nil))}}))
	f.build(t, "d", func(o *Options) { o.DecompressKernel = true })
	if got := mustRead(t, filepath.Join(f.dir, "d", "test-kernel")); string(got) != kernelBytes {
		t.Errorf("decompressed kernel = %q", got)
	}
	f.build(t, "c", nil)
	if got := mustRead(t, filepath.Join(f.dir, "c", "test-kernel")); bytes.Equal(got, []byte(kernelBytes)) {
		t.Error("build without --decompress-kernel got the decompressed kernel")
	}
}
