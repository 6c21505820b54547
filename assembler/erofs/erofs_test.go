package erofs

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

// sample is a tree with every kind of file and the format's edges: a multi-block file, files
// of exactly one block and one byte more, an empty file, hard links, symlinks (short, inline,
// and 4095 bytes long: a block of its own), devices with large minors, a fifo, names of 255
// bytes and names sorting before ".", a folder of 3000 entries (many listing blocks), folders
// whose listing just fits or just misses a block, deep nesting, and owners above 65535.
func sample() (*Inode, []content) {
	var data []content
	rnd := rand.New(rand.NewPCG(1, 2))
	reg := func(mode uint32, size int) *Inode {
		n := &Inode{Mode: TypeReg | mode, Size: int64(size), MTime: 7}
		if size > 0 {
			b := make([]byte, size)
			for i := range b {
				b[i] = byte(rnd.Uint32())
			}
			data = append(data, content{n, b})
		}
		return n
	}
	dir := func(entries ...Entry) *Inode { return &Inode{Mode: TypeDir | 0o755, MTime: 7, Entries: entries} }
	shared := reg(0o644, 13)
	many := dir()
	for i := range 3000 {
		many.Entries = append(many.Entries, Entry{fmt.Sprintf("file-%04d-with-a-longish-name", i), reg(0o600, i%3)})
	}
	long := dir()
	for i := range 40 {
		long.Entries = append(long.Entries, Entry{strings.Repeat(string(rune('a'+i%26)), 250) + fmt.Sprintf("%05d", i), &Inode{Mode: TypeSymlink | 0o777, Target: "x"}})
	}
	// a listing of exactly one block: ".", ".." (12+1, 12+2) and entries of 12+n bytes
	exact := dir()
	used := 12 + 1 + 12 + 2
	for i := 0; used < BlockSize; i++ {
		n := min(BlockSize-used-12, 100)
		name := fmt.Sprintf("%04d", i) + strings.Repeat("e", n-4)
		exact.Entries = append(exact.Entries, Entry{name, reg(0o644, 1)})
		used += 12 + n
	}
	owned := reg(0o640, 5)
	owned.UID, owned.GID = 100000, 70000
	deep := dir()
	cur := deep
	for range 50 {
		next := dir()
		cur.Entries = append(cur.Entries, Entry{"d", next})
		cur = next
	}
	cur.Entries = append(cur.Entries, Entry{"bottom", reg(0o644, 3)})
	root := dir(
		Entry{"big", reg(0o755, 3*BlockSize+1234)},
		Entry{"block", reg(0o644, BlockSize)},
		Entry{"block1", reg(0o644, BlockSize+1)},
		Entry{"empty", reg(0o644, 0)},
		Entry{"a-link", shared},
		Entry{"-before-dot", reg(0o644, 2)},
		Entry{"etc", dir(Entry{"hardlink", shared}, Entry{"owned", owned}, Entry{"also", shared})},
		Entry{"sym", &Inode{Mode: TypeSymlink | 0o777, Target: "/etc/owned"}},
		Entry{"longsym", &Inode{Mode: TypeSymlink | 0o777, Target: strings.Repeat("p/", MaxSymlink/2) + "q"}},
		Entry{"dev", dir(
			Entry{"null", &Inode{Mode: TypeChar | 0o666, DevMajor: 1, DevMinor: 3}},
			Entry{"sda", &Inode{Mode: TypeBlock | 0o660, DevMajor: 8, DevMinor: 3}},
			Entry{"bigminor", &Inode{Mode: TypeChar | 0o600, DevMajor: 250, DevMinor: 70000}},
			Entry{"fifo", &Inode{Mode: TypeFifo | 0o600}},
		)},
		Entry{"many", many},
		Entry{"long", long},
		Entry{"exact", exact},
		Entry{"deep", deep},
		Entry{"emptydir", dir()},
	)
	return root, data
}

func build(t testing.TB, root *Inode, data []content, mtime int64) []byte {
	t.Helper()
	files := make([]*Inode, len(data))
	for i, c := range data {
		files[i] = c.ino
	}
	im, err := Plan(root, files, mtime)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = im.Write(&out, func(add func(*Inode, io.Reader) error) error {
		for _, c := range data {
			if err := add(c.ino, bytes.NewReader(c.data)); err != nil {
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
	return out.Bytes()
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
	root, data := sample()
	img := build(t, root, data, 1234)
	r2, d2 := sample()
	if !bytes.Equal(img, build(t, r2, d2, 1234)) {
		t.Error("two builds of one tree differ")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "img")
	p0 := p
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
	os.WriteFile(empty, build(t, &Inode{Mode: TypeDir | 0o700}, nil, 0), 0o644)
	if b, err := exec.Command(fsck, "--extract="+filepath.Join(dir, "e"), empty).CombinedOutput(); err != nil {
		t.Fatalf("fsck.erofs of an empty root: %v\n%s", err, b)
	}
	byData := map[*Inode][]byte{}
	for _, c := range data {
		byData[c.ino] = c.data
	}
	count := 0
	var walk func(n *Inode, rel string)
	walk = func(n *Inode, rel string) {
		count++
		p := filepath.Join(out, rel)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Error(err)
			return
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Mode != n.Mode {
			t.Errorf("%s: mode %o, want %o", rel, st.Mode, n.Mode)
		}
		if os.Geteuid() == 0 && (st.Uid != n.UID || st.Gid != n.GID) {
			t.Errorf("%s: owner %d:%d, want %d:%d", rel, st.Uid, st.Gid, n.UID, n.GID)
		}
		if n.Mode&TypeMask != TypeSymlink && st.Mtim.Sec != n.MTime {
			t.Errorf("%s: mtime %d, want %d", rel, st.Mtim.Sec, n.MTime)
		}
		switch n.Mode & TypeMask {
		case TypeDir:
			ents, _ := os.ReadDir(p)
			if len(ents) != len(n.Entries) {
				t.Errorf("%s: %d entries, want %d", rel, len(ents), len(n.Entries))
			}
			for _, e := range n.Entries {
				walk(e.Inode, filepath.Join(rel, e.Name))
			}
		case TypeReg:
			b, _ := os.ReadFile(p)
			if !bytes.Equal(b, byData[n]) {
				t.Errorf("%s: contents differ (%d bytes, want %d)", rel, len(b), len(byData[n]))
			}
			if n.nlink > 1 {
				// fsck.erofs extracts hard links as copies: ask dump.erofs for the inode
				b, err := exec.Command(dump, "--path=/"+rel, p0).CombinedOutput()
				want := fmt.Sprintf("NID: %d ", n.nid)
				if err != nil || !strings.Contains(string(b), want) || !strings.Contains(string(b), fmt.Sprintf("Links: %d", n.nlink)) {
					t.Errorf("%s: dump.erofs says (%v)\n%s\nwant %q and %d links", rel, err, b, want, n.nlink)
				}
			}
		case TypeSymlink:
			if l, _ := os.Readlink(p); l != n.Target {
				t.Errorf("%s: target %q, want %q", rel, l, n.Target)
			}
		case TypeChar, TypeBlock:
			if maj, min := (st.Rdev>>8)&0xfff|(st.Rdev>>32)&^0xfff, st.Rdev&0xff|(st.Rdev>>12)&^0xff; uint32(maj) != n.DevMajor || uint32(min) != n.DevMinor {
				t.Errorf("%s: device %d:%d, want %d:%d", rel, maj, min, n.DevMajor, n.DevMinor)
			}
		}
	}
	walk(root, ".")
	if count < 3000 {
		t.Fatalf("walked %d files", count)
	}
}

// TestPlanRefusesBadTrees: each bad tree is refused with the path at fault.
func TestPlanRefusesBadTrees(t *testing.T) {
	reg := func() *Inode { return &Inode{Mode: TypeReg | 0o644} }
	dir := func(es ...Entry) *Inode { return &Inode{Mode: TypeDir | 0o755, Entries: es} }
	shared := dir()
	for _, c := range []struct {
		name string
		root *Inode
		want string
	}{
		{"not a folder", reg(), "root is not a folder"},
		{"long name", dir(Entry{strings.Repeat("n", MaxName+1), reg()}), "longer than 255"},
		{"slash", dir(Entry{"a/b", reg()}), `"/a/b": name holding /`},
		{"dotdot", dir(Entry{"..", reg()}), "empty, . or .."},
		{"twice", dir(Entry{"sub", dir(Entry{"x", reg()}, Entry{"x", reg()})}), `"/sub/x": name twice`},
		{"folder hard link", dir(Entry{"a", shared}, Entry{"b", shared}), `"/b": folder reached twice`},
		{"empty symlink", dir(Entry{"l", &Inode{Mode: TypeSymlink | 0o777}}), `"/l": symlink target`},
		{"long symlink", dir(Entry{"l", &Inode{Mode: TypeSymlink | 0o777, Target: strings.Repeat("x", MaxSymlink+1)}}), "symlink target"},
		{"bad mode", dir(Entry{"m", &Inode{Mode: 0o644}}), `"/m": unsupported mode`},
		{"contents missing", dir(Entry{"f", &Inode{Mode: TypeReg, Size: 3}}), "has 0 files, the tree 1"},
	} {
		_, err := Plan(c.root, nil, 0)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error with %q", c.name, err, c.want)
		}
	}
	// contents out of order, short
	a, b := &Inode{Mode: TypeReg, Size: 2}, &Inode{Mode: TypeReg, Size: 2}
	root := dir(Entry{"a", a}, Entry{"b", b})
	im, err := Plan(root, []*Inode{a, b}, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = im.Write(io.Discard, func(add func(*Inode, io.Reader) error) error { return add(b, strings.NewReader("xx")) })
	if err == nil || !strings.Contains(err.Error(), "out of the planned order") {
		t.Errorf("out of order: %v", err)
	}
	err = im.Write(io.Discard, func(add func(*Inode, io.Reader) error) error { return add(a, strings.NewReader("x")) })
	if err == nil || !strings.Contains(err.Error(), "1 of 2 bytes") {
		t.Errorf("short contents: %v", err)
	}
	err = im.Write(io.Discard, func(add func(*Inode, io.Reader) error) error { return add(a, strings.NewReader("xx")) })
	if err == nil || !strings.Contains(err.Error(), "contents of 1 of 2 files") {
		t.Errorf("missing contents: %v", err)
	}
}
