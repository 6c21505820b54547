package squashfs

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

type content struct {
	ino  *Inode
	data []byte
}

// sample is a tree with every kind of file: a multi-block file with incompressible and
// compressible blocks, an empty file, a hard link, a symlink, devices, a fifo, a folder of 600
// entries (several listing runs and metadata blocks) and owners other than root.
func sample() (*Inode, []content) {
	var data []content
	reg := func(mode uint32, b []byte) *Inode {
		n := &Inode{Mode: TypeReg | mode, Size: int64(len(b)), MTime: 7}
		if len(b) > 0 {
			data = append(data, content{n, b})
		}
		return n
	}
	dir := func(entries ...Entry) *Inode { return &Inode{Mode: TypeDir | 0o755, MTime: 7, Entries: entries} }
	rnd := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 3*BlockSize+1234)
	for i := range big[:BlockSize] {
		big[i] = byte(rnd.Uint32())
	}
	copy(big[2*BlockSize:], bytes.Repeat([]byte("squash "), BlockSize/7))
	shared := reg(0o644, []byte("linked twice\n"))
	many := dir()
	for i := range 600 {
		many.Entries = append(many.Entries, Entry{fmt.Sprintf("file-%03d-with-a-longish-name", i), reg(0o600, []byte(fmt.Sprint(i)))})
	}
	owned := reg(0o640, []byte("owned"))
	owned.UID, owned.GID = 1000, 50
	root := dir(
		Entry{"big", reg(0o755, big)},
		Entry{"empty", reg(0o644, nil)},
		Entry{"a-link", shared},
		Entry{"etc", dir(Entry{"hardlink", shared}, Entry{"owned", owned})},
		Entry{"sym", &Inode{Mode: TypeSymlink | 0o777, Target: "/etc/owned"}},
		Entry{"dev", dir(
			Entry{"null", &Inode{Mode: TypeChar | 0o666, DevMajor: 1, DevMinor: 3}},
			Entry{"sda", &Inode{Mode: TypeBlock | 0o660, DevMajor: 8, DevMinor: 3}},
			Entry{"fifo", &Inode{Mode: TypeFifo | 0o600}},
		)},
		Entry{"many", many},
		Entry{"emptydir", dir()},
	)
	return root, data
}

func write(t *testing.T, dir string) []byte {
	root, data := sample()
	b, err := NewBuilder(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := len(data) - 1; i >= 0; i-- { // contents in any order
		if err := b.AddData(data[i].ino, bytes.NewReader(data[i].data)); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := b.Finish(&out, root, 42); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestReproducible(t *testing.T) {
	a, b := write(t, t.TempDir()), write(t, t.TempDir())
	if !bytes.Equal(a, b) {
		t.Fatal("two writes of the same tree differ")
	}
	if len(a)%4096 != 0 {
		t.Errorf("image of %d bytes is not padded to 4 KiB", len(a))
	}
}

// TestUnsquashfsReadsBack extracts the image with squashfs-tools and checks every file.
func TestUnsquashfsReadsBack(t *testing.T) {
	unsquashfs, err := exec.LookPath("unsquashfs")
	if err != nil {
		t.Skip("unsquashfs not installed (apt-get install squashfs-tools); skipping")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "fs.img")
	os.WriteFile(img, write(t, dir), 0o644)
	out := filepath.Join(dir, "x")
	if o, err := exec.Command(unsquashfs, "-n", "-d", out, img).CombinedOutput(); err != nil {
		t.Fatalf("unsquashfs: %v\n%s", err, o)
	}
	_, data := sample()
	var big []byte
	for _, d := range data {
		if len(d.data) > BlockSize {
			big = d.data
		}
	}
	check := func(p string, want []byte) {
		got, err := os.ReadFile(filepath.Join(out, p))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes (want %d), %v", p, len(got), len(want), err)
		}
	}
	check("big", big)
	check("empty", nil)
	check("etc/hardlink", []byte("linked twice\n"))
	check("many/file-599-with-a-longish-name", []byte("599"))
	check("many/file-000-with-a-longish-name", []byte("0"))
	if ents, _ := os.ReadDir(filepath.Join(out, "many")); len(ents) != 600 {
		t.Errorf("many: %d entries", len(ents))
	}
	var a, b syscall.Stat_t
	syscall.Lstat(filepath.Join(out, "a-link"), &a)
	syscall.Lstat(filepath.Join(out, "etc/hardlink"), &b)
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("hard link: inodes %d, %d, nlink %d", a.Ino, b.Ino, a.Nlink)
	}
	if l, _ := os.Readlink(filepath.Join(out, "sym")); l != "/etc/owned" {
		t.Errorf("symlink -> %q", l)
	}
	lst, err := exec.Command(unsquashfs, "-lln", img).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs -lln: %v\n%s", err, lst)
	}
	for _, want := range []string{
		"crw-rw-rw- 0/0 1, 3 1970-01-01 00:00 squashfs-root/dev/null",
		"brw-rw---- 0/0 8, 3 1970-01-01 00:00 squashfs-root/dev/sda",
		"prw------- 0/0 0 1970-01-01 00:00 squashfs-root/dev/fifo",
		"-rw-r----- 1000/50 5 1970-01-01 00:00 squashfs-root/etc/owned",
		"-rwxr-xr-x 0/0 394450 1970-01-01 00:00 squashfs-root/big",
	} {
		if !strings.Contains(strings.Join(strings.Fields(string(lst)), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("listing lacks %q:\n%s", want, firstLines(string(lst), 20))
		}
	}
}

// TestDeviceNumbers: what Linux's new_decode_dev gives back.
func TestDeviceNumbers(t *testing.T) {
	for _, d := range [][2]uint32{{1, 3}, {8, 300}, {259, 70000}} {
		dev := encodeDev(d[0], d[1])
		major, minor := (dev&0xfff00)>>8, dev&0xff|(dev>>12)&0xfff00
		if major != d[0] || minor != d[1] {
			t.Errorf("%d,%d came back as %d,%d", d[0], d[1], major, minor)
		}
	}
}

func firstLines(s string, n int) string {
	l := strings.SplitN(s, "\n", n+1)
	return strings.Join(l[:min(n, len(l))], "\n")
}

func TestRefusals(t *testing.T) {
	b, err := NewBuilder(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	f := &Inode{Mode: TypeReg | 0o644, Size: 10}
	root := &Inode{Mode: TypeDir | 0o755, Entries: []Entry{{"f", f}}}
	if err := b.Finish(io.Discard, root, 0); err == nil || !strings.Contains(err.Error(), "/f: no contents") {
		t.Errorf("missing contents: %v", err)
	}
	if err := b.AddData(f, strings.NewReader("short")); err == nil {
		t.Error("short contents accepted")
	}
	for _, name := range []string{"", "..", "a/b"} {
		root := &Inode{Mode: TypeDir | 0o755, Entries: []Entry{{name, &Inode{Mode: TypeFifo}}}}
		if err := b.Finish(io.Discard, root, 0); err == nil || !strings.Contains(err.Error(), "bad name") {
			t.Errorf("name %q: %v", name, err)
		}
	}
	dup := &Inode{Mode: TypeDir | 0o755, Entries: []Entry{{"x", &Inode{Mode: TypeFifo}}, {"x", &Inode{Mode: TypeFifo}}}}
	if err := b.Finish(io.Discard, dup, 0); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate name: %v", err)
	}
}

// TestStreams: a 256 MiB file goes through with flat memory.
func TestStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("compresses 256 MiB")
	}
	b, err := NewBuilder(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	f := &Inode{Mode: TypeReg | 0o644, Size: 256 << 20}
	var before, after runtimeMem
	before.read()
	if err := b.AddData(f, io.LimitReader(zeros{}, f.Size)); err != nil {
		t.Fatal(err)
	}
	if err := b.Finish(io.Discard, &Inode{Mode: TypeDir | 0o755, Entries: []Entry{{"f", f}}}, 0); err != nil {
		t.Fatal(err)
	}
	after.read()
	if d := after.total - before.total; d > 32<<20 {
		t.Errorf("a 256 MiB file allocated %d MiB", d>>20)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
