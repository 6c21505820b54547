package squashfs

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mobykit/mobykit/assembler/fstree"
	"github.com/mobykit/mobykit/assembler/fstree/fstreetest"
)

// sample is a tree with every kind of file: a multi-block file with incompressible and
// compressible blocks, an empty file, a hard link, a symlink, devices, a fifo, a folder of 600
// entries (several listing runs and metadata blocks) and owners other than root.
func sample() (*fstree.Inode, *fstreetest.Maker) {
	m := &fstreetest.Maker{MTime: 7}
	reg, dir, e := m.Reg, m.Dir, fstreetest.E
	rnd := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 3*BlockSize+1234)
	for i := range big[:BlockSize] {
		big[i] = byte(rnd.Uint32())
	}
	copy(big[2*BlockSize:], bytes.Repeat([]byte("squash "), BlockSize/7))
	shared := reg(0o644, []byte("linked twice\n"))
	many := dir()
	for i := range 600 {
		many.Entries = append(many.Entries, e(fmt.Sprintf("file-%03d-with-a-longish-name", i), reg(0o600, []byte(fmt.Sprint(i)))))
	}
	owned := reg(0o640, []byte("owned"))
	owned.UID, owned.GID = 1000, 50
	root := dir(
		e("big", reg(0o755, big)),
		e("empty", reg(0o644, nil)),
		e("a-link", shared),
		e("etc", dir(e("hardlink", shared), e("owned", owned))),
		e("sym", fstreetest.Symlink("/etc/owned")),
		e("dev", dir(
			e("null", fstreetest.Node(fstree.TypeChar, 0o666, 1, 3)),
			e("sda", fstreetest.Node(fstree.TypeBlock, 0o660, 8, 3)),
			e("fifo", fstreetest.Node(fstree.TypeFifo, 0o600, 0, 0)),
		)),
		e("many", many),
		e("emptydir", dir()),
	)
	return root, m
}

func write(t *testing.T, dir string) []byte {
	root, m := sample()
	b, err := NewBuilder(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := len(m.Files) - 1; i >= 0; i-- { // contents in any order
		if err := b.AddData(m.Files[i].Inode, bytes.NewReader(m.Files[i].Data)); err != nil {
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

// TestSampleDigest pins the bytes of the sample's image: a change to the writer that moves a
// single byte shows here (the image was the same before and after the writers moved to
// fstree). The data blocks are compress/zlib's output, so a Go release that changes what
// compress/flate writes changes this digest too; check unsquashfs still reads the image back
// and put the new digest here.
func TestSampleDigest(t *testing.T) {
	const want = "dd12ac513b5559e5b6b6915102d1a8f121bb899dce27880949dd3f728c6c422a"
	if got := fmt.Sprintf("%x", sha256.Sum256(write(t, t.TempDir()))); got != want {
		t.Errorf("sha256 of the sample image is %s, was %s", got, want)
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
	root, m := sample()
	// unsquashfs extracts hard links as hard links: one inode, as many links as names
	firstIno := map[*fstree.Inode]uint64{}
	hardLink := func(rel string, n *fstree.Inode, names int) {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(out, rel), &st); err != nil || st.Nlink != uint64(names) {
			t.Errorf("%s: %d links (want %d), %v", rel, st.Nlink, names, err)
		}
		if ino, ok := firstIno[n]; ok && ino != st.Ino {
			t.Errorf("%s: inode %d, another name of it has %d", rel, st.Ino, ino)
		}
		firstIno[n] = st.Ino
	}
	if count := fstreetest.CheckExtracted(t, root, out, m.Contents(), hardLink); count < 600 {
		t.Errorf("walked %d files", count)
	}
	var big []byte
	for _, f := range m.Files {
		if len(f.Data) > BlockSize {
			big = f.Data
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
	f := &fstree.Inode{Mode: fstree.TypeReg | 0o644, Size: 10}
	dir, e := (&fstreetest.Maker{}).Dir, fstreetest.E
	root := dir(e("f", f))
	if err := b.Finish(io.Discard, root, 0); err == nil || !strings.Contains(err.Error(), "/f: no contents") {
		t.Errorf("missing contents: %v", err)
	}
	if err := b.AddData(f, strings.NewReader("short")); err == nil {
		t.Error("short contents accepted")
	}
	for _, name := range []string{"", "..", "a/b"} {
		root := dir(e(name, &fstree.Inode{Mode: fstree.TypeFifo}))
		if err := b.Finish(io.Discard, root, 0); err == nil || !strings.Contains(err.Error(), "bad name") {
			t.Errorf("name %q: %v", name, err)
		}
	}
	dup := dir(e("x", &fstree.Inode{Mode: fstree.TypeFifo}), e("x", &fstree.Inode{Mode: fstree.TypeFifo}))
	if err := b.Finish(io.Discard, dup, 0); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate name: %v", err)
	}
	// squashfs holds 32-bit unsigned times; the tree's are 64-bit
	for _, mt := range []int64{-1, 1 << 32} {
		old := dir(e("old", &fstree.Inode{Mode: fstree.TypeFifo, MTime: mt}))
		if err := b.Finish(io.Discard, old, 0); err == nil || !strings.Contains(err.Error(), "/old: mtime") {
			t.Errorf("mtime %d: %v", mt, err)
		}
	}
	if err := b.Finish(io.Discard, dir(e("nil", nil)), 0); err == nil || !strings.Contains(err.Error(), "/nil: no inode") {
		t.Errorf("entry without an inode: %v", err)
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
	f := &fstree.Inode{Mode: fstree.TypeReg | 0o644, Size: 256 << 20}
	var before, after runtimeMem
	before.read()
	if err := b.AddData(f, io.LimitReader(zeros{}, f.Size)); err != nil {
		t.Fatal(err)
	}
	if err := b.Finish(io.Discard, (&fstreetest.Maker{}).Dir(fstreetest.E("f", f)), 0); err != nil {
		t.Fatal(err)
	}
	after.read()
	if d := after.total - before.total; d > 32<<20 {
		t.Errorf("a 256 MiB file allocated %d MiB", d>>20)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
