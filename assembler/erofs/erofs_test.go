package erofs

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
	"testing"

	"github.com/mobykit/mobykit/assembler/fstree"
	"github.com/mobykit/mobykit/assembler/fstree/fstreetest"
)

// sample is a tree with every kind of file and the format's edges: a multi-block file, files
// of exactly one block and one byte more, an empty file, hard links, symlinks (short, inline,
// and 4095 bytes long: a block of its own), devices with large minors, a fifo, names of 255
// bytes and names sorting before ".", a folder of 3000 entries (many listing blocks), folders
// whose listing just fits or just misses a block, deep nesting, and owners above 65535.
func sample() (*fstree.Inode, *fstreetest.Maker) {
	m := &fstreetest.Maker{MTime: 7}
	rnd := rand.New(rand.NewPCG(1, 2))
	reg := func(mode uint32, size int) *fstree.Inode {
		var b []byte
		if size > 0 {
			b = make([]byte, size)
			for i := range b {
				b[i] = byte(rnd.Uint32())
			}
		}
		return m.Reg(mode, b)
	}
	dir, e := m.Dir, fstreetest.E
	shared := reg(0o644, 13)
	many := dir()
	for i := range 3000 {
		many.Entries = append(many.Entries, e(fmt.Sprintf("file-%04d-with-a-longish-name", i), reg(0o600, i%3)))
	}
	long := dir()
	for i := range 40 {
		long.Entries = append(long.Entries, e(strings.Repeat(string(rune('a'+i%26)), 250)+fmt.Sprintf("%05d", i), fstreetest.Symlink("x")))
	}
	// a listing of exactly one block: ".", ".." (12+1, 12+2) and entries of 12+n bytes
	exact := dir()
	used := 12 + 1 + 12 + 2
	for i := 0; used < BlockSize; i++ {
		n := min(BlockSize-used-12, 100)
		name := fmt.Sprintf("%04d", i) + strings.Repeat("e", n-4)
		exact.Entries = append(exact.Entries, e(name, reg(0o644, 1)))
		used += 12 + n
	}
	owned := reg(0o640, 5)
	owned.UID, owned.GID = 100000, 70000
	deep := dir()
	cur := deep
	for range 50 {
		next := dir()
		cur.Entries = append(cur.Entries, e("d", next))
		cur = next
	}
	cur.Entries = append(cur.Entries, e("bottom", reg(0o644, 3)))
	root := dir(
		e("big", reg(0o755, 3*BlockSize+1234)),
		e("block", reg(0o644, BlockSize)),
		e("block1", reg(0o644, BlockSize+1)),
		e("empty", reg(0o644, 0)),
		e("a-link", shared),
		e("-before-dot", reg(0o644, 2)),
		e("etc", dir(e("hardlink", shared), e("owned", owned), e("also", shared))),
		e("sym", fstreetest.Symlink("/etc/owned")),
		e("longsym", fstreetest.Symlink(strings.Repeat("p/", MaxSymlink/2)+"q")),
		e("dev", dir(
			e("null", fstreetest.Node(fstree.TypeChar, 0o666, 1, 3)),
			e("sda", fstreetest.Node(fstree.TypeBlock, 0o660, 8, 3)),
			e("bigminor", fstreetest.Node(fstree.TypeChar, 0o600, 250, 70000)),
			e("fifo", fstreetest.Node(fstree.TypeFifo, 0o600, 0, 0)),
		)),
		e("many", many),
		e("long", long),
		e("exact", exact),
		e("deep", deep),
		e("emptydir", dir()),
	)
	return root, m
}

func build(t testing.TB, root *fstree.Inode, data []fstreetest.File, mtime int64) ([]byte, *Image) {
	t.Helper()
	files := make([]*fstree.Inode, len(data))
	for i, c := range data {
		files[i] = c.Inode
	}
	im, err := Plan(root, files, mtime)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = im.Write(&out, func(add func(*fstree.Inode, io.Reader) error) error {
		for _, c := range data {
			if err := add(c.Inode, bytes.NewReader(c.Data)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if int64(out.Len()) != im.Size() {
		t.Fatalf("wrote %d bytes, Size says %d", out.Len(), im.Size())
	}
	return out.Bytes(), im
}

// TestImageChecksAndExtracts: erofs-utils' fsck.erofs finds the image sound and extracts
// exactly the tree: names, types, modes, owners, mtimes, link counts, contents, symlink
// targets and device numbers. Two builds give the same bytes.
func TestImageChecksAndExtracts(t *testing.T) {
	fsck, err := exec.LookPath("fsck.erofs")
	if err != nil {
		t.Skip("fsck.erofs not installed (apt-get install erofs-utils); skipping")
	}
	dump, err := exec.LookPath("dump.erofs")
	if err != nil {
		t.Skip("dump.erofs not installed (apt-get install erofs-utils); skipping")
	}
	root, m := sample()
	img, im := build(t, root, m.Files, 1234)
	r2, m2 := sample()
	if b, _ := build(t, r2, m2.Files, 1234); !bytes.Equal(img, b) {
		t.Error("two builds of one tree differ")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "img")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	args := []string{"--extract=" + out}
	if os.Geteuid() == 0 {
		args = append(args, "--preserve")
	}
	if b, err := exec.Command(fsck, append(args, p)...).CombinedOutput(); err != nil {
		t.Fatalf("fsck.erofs: %v\n%s", err, b)
	}
	empty := filepath.Join(dir, "empty")
	b, _ := build(t, &fstree.Inode{Mode: fstree.TypeDir | 0o700}, nil, 0)
	os.WriteFile(empty, b, 0o644)
	if b, err := exec.Command(fsck, "--extract="+filepath.Join(dir, "e"), empty).CombinedOutput(); err != nil {
		t.Fatalf("fsck.erofs of an empty root: %v\n%s", err, b)
	}
	// fsck.erofs extracts hard links as copies: ask dump.erofs for the inode
	hardLink := func(rel string, n *fstree.Inode, names int) {
		b, err := exec.Command(dump, "--path=/"+rel, p).CombinedOutput()
		want := fmt.Sprintf("NID: %d ", im.nodes[n].nid)
		if err != nil || !strings.Contains(string(b), want) || !strings.Contains(string(b), fmt.Sprintf("Links: %d", names)) {
			t.Errorf("%s: dump.erofs says (%v)\n%s\nwant %q and %d links", rel, err, b, want, names)
		}
	}
	if count := fstreetest.CheckExtracted(t, root, out, m.Contents(), hardLink); count < 3000 {
		t.Fatalf("walked %d files", count)
	}
}

// TestSampleDigest pins the bytes of the sample's image: a change to the writer that moves a
// single byte shows here (the image was the same before and after the writers moved to
// fstree). If a change of layout is meant, put the new digest here and say why.
func TestSampleDigest(t *testing.T) {
	root, m := sample()
	img, _ := build(t, root, m.Files, 1234)
	const want = "7279703378c99c900553c932b6b3f46377902cf94e5e6de2b908f366b0af576d"
	if got := fmt.Sprintf("%x", sha256.Sum256(img)); got != want {
		t.Errorf("sha256 of the sample image is %s, was %s", got, want)
	}
}

// TestPlanRefusesBadTrees: each bad tree is refused with the path at fault.
func TestPlanRefusesBadTrees(t *testing.T) {
	reg := func() *fstree.Inode { return &fstree.Inode{Mode: fstree.TypeReg | 0o644} }
	dir, e := (&fstreetest.Maker{}).Dir, fstreetest.E
	shared := dir()
	for _, c := range []struct {
		name string
		root *fstree.Inode
		want string
	}{
		{"not a folder", reg(), "root is not a folder"},
		{"long name", dir(e(strings.Repeat("n", MaxName+1), reg())), "longer than 255"},
		{"slash", dir(e("a/b", reg())), `"/a/b": name holding /`},
		{"dotdot", dir(e("..", reg())), "empty, . or .."},
		{"twice", dir(e("sub", dir(e("x", reg()), e("x", reg())))), `"/sub/x": name twice`},
		{"folder hard link", dir(e("a", shared), e("b", shared)), `"/b": folder reached twice`},
		{"empty symlink", dir(e("l", fstreetest.Symlink(""))), `"/l": symlink target`},
		{"long symlink", dir(e("l", fstreetest.Symlink(strings.Repeat("x", MaxSymlink+1)))), "symlink target"},
		{"bad mode", dir(e("m", &fstree.Inode{Mode: 0o644})), `"/m": unsupported mode`},
		{"contents missing", dir(e("f", &fstree.Inode{Mode: fstree.TypeReg, Size: 3})), "has 0 files, the tree 1"},
	} {
		_, err := Plan(c.root, nil, 0)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error with %q", c.name, err, c.want)
		}
	}
	// contents out of order, short
	a, b := &fstree.Inode{Mode: fstree.TypeReg, Size: 2}, &fstree.Inode{Mode: fstree.TypeReg, Size: 2}
	root := dir(e("a", a), e("b", b))
	im, err := Plan(root, []*fstree.Inode{a, b}, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = im.Write(io.Discard, func(add func(*fstree.Inode, io.Reader) error) error { return add(b, strings.NewReader("xx")) })
	if err == nil || !strings.Contains(err.Error(), "out of the planned order") {
		t.Errorf("out of order: %v", err)
	}
	err = im.Write(io.Discard, func(add func(*fstree.Inode, io.Reader) error) error { return add(a, strings.NewReader("x")) })
	if err == nil || !strings.Contains(err.Error(), "1 of 2 bytes") {
		t.Errorf("short contents: %v", err)
	}
	err = im.Write(io.Discard, func(add func(*fstree.Inode, io.Reader) error) error { return add(a, strings.NewReader("xx")) })
	if err == nil || !strings.Contains(err.Error(), "contents of 1 of 2 files") {
		t.Errorf("missing contents: %v", err)
	}
}
