package layer

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mobykit/mobykit/assembler/fstree"
	"github.com/mobykit/mobykit/assembler/initrd"
)

// applyAll applies each layer in turn, named "img layer N", and returns the
// first error.
func applyAll(t testing.TB, f *FS, layers ...[]te) error {
	t.Helper()
	for i, l := range layers {
		if err := apply(f, fmt.Sprintf("img layer %d", i), mkTar(t, l...)); err != nil {
			return err
		}
	}
	return nil
}

// sameAndNext runs fn twice: with every entry in one layer, and with the
// entries split into two layers at split.
func sameAndNext(t *testing.T, ents []te, split int, fn func(t *testing.T, f *FS, err error)) {
	t.Run("same layer", func(t *testing.T) {
		f := New()
		fn(t, f, applyAll(t, f, ents))
	})
	t.Run("next layer", func(t *testing.T) {
		f := New()
		fn(t, f, applyAll(t, f, ents[:split], ents[split:]))
	})
}

func isSymlink(n *Node) bool { return n != nil && n.Mode&fstree.TypeMask == fstree.TypeSymlink }

// TestSymlinkOverWrittenDir: a symlink replacing a directory the layers
// already wrote into must take everything below it away; otherwise the
// initramfs has a/x after the symlink a → /etc and the kernel writes
// /etc/x of the VM.
func TestSymlinkOverWrittenDir(t *testing.T) {
	for name, ents := range map[string][]te{
		"implied dir":  {file("a/x", "x"), file("a/b/y", "y"), symlink("a", "/etc")},
		"explicit dir": {dir("a/"), file("a/x", "x"), dir("a/b/"), file("a/b/y", "y"), symlink("a", "/etc")},
	} {
		t.Run(name, func(t *testing.T) {
			sameAndNext(t, ents, len(ents)-1, func(t *testing.T, f *FS, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if got := names(f); got != "a" {
					t.Fatalf("names = %q, want just the symlink a", got)
				}
				if n := f.Get("a"); !isSymlink(n) || n.Linkname != "/etc" {
					t.Fatalf("a = %+v, want the symlink to /etc", n)
				}
				checkTree(t, f)
			})
		})
	}
}

// TestFileOverWrittenDir: a regular file, a hard link or a device node
// replacing a directory takes its contents away too.
func TestFileOverWrittenDir(t *testing.T) {
	for name, last := range map[string]te{
		"file":      file("a", "now a file"),
		"hard link": hard("a", "other"),
		"fifo":      {name: "a", typ: tar.TypeFifo},
	} {
		t.Run(name, func(t *testing.T) {
			ents := []te{file("other", "o"), file("a/x", "x"), last}
			sameAndNext(t, ents, 2, func(t *testing.T, f *FS, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if got := names(f); got != "a other" {
					t.Fatalf("names = %q, want \"a other\"", got)
				}
				checkTree(t, f)
			})
		})
	}
}

// TestWriteThroughSymlinkRefused: an entry whose parent is a symlink would
// be written wherever the symlink points; it is refused, naming the layer
// and the entry.
func TestWriteThroughSymlinkRefused(t *testing.T) {
	for name, below := range map[string]te{
		"file":          file("a/passwd", "root::0:0::/:/bin/sh"),
		"deep file":     file("a/b/c", "x"),
		"dir":           dir("a/sub/"),
		"symlink":       symlink("a/l", "/"),
		"hard link":     hard("a/h", "keep"),
		"char device":   {name: "a/mem", typ: tar.TypeChar, major: 1, minor: 1},
		"whiteout":      file("a/.wh.shadow", ""),
		"opaque marker": file("a/.wh..wh..opq", ""),
	} {
		t.Run(name, func(t *testing.T) {
			ents := []te{file("keep", "k"), symlink("a", "/etc"), below}
			sameAndNext(t, ents, 2, func(t *testing.T, f *FS, err error) {
				if !errors.Is(err, ErrUnsafe) {
					t.Fatalf("want ErrUnsafe, got %v", err)
				}
				if !strings.Contains(err.Error(), "img layer") || !strings.Contains(err.Error(), below.name) {
					t.Errorf("error %q does not name the layer and the entry %s", err, below.name)
				}
				checkTree(t, f)
			})
		})
	}
	// Replacing the symlink by a directory first makes the same entries fine.
	f := New()
	if err := applyAll(t, f, []te{symlink("a", "/etc")}, []te{dir("a/"), file("a/passwd", "p")}); err != nil {
		t.Fatal(err)
	}
	if got := names(f); got != "a a/passwd" || !f.Get("a").IsDir() {
		t.Fatalf("names = %q", got)
	}
}

// TestDuplicateEntries: the same path twice, the last one wins; a
// directory written again keeps what is in it.
func TestDuplicateEntries(t *testing.T) {
	f := New()
	if err := applyAll(t, f, []te{file("f", "one"), file("f", "two"), dir("d/"), file("d/x", "x"), {name: "d/", typ: tar.TypeDir, mode: 0o700}, file("s", "file"), symlink("s", "/bin/sh")}); err != nil {
		t.Fatal(err)
	}
	if got := content(t, f, "f"); got != "two" {
		t.Errorf("f = %q, want the last copy", got)
	}
	if n := f.Get("d"); n.Mode != fstree.TypeDir|0o700 || f.Get("d/x") == nil {
		t.Errorf("d rewritten: mode %o, d/x %v; want 0700 and d/x kept", n.Mode, f.Get("d/x"))
	}
	if !isSymlink(f.Get("s")) {
		t.Errorf("s is not the symlink written last")
	}
	checkTree(t, f)
}

// TestHardLinkToReplacedPath: a hard link keeps its content when its
// target is replaced, and one to a path no longer there is refused.
func TestHardLinkToReplacedPath(t *testing.T) {
	f := New()
	if err := applyAll(t, f, []te{file("a/x", "X"), hard("h", "a/x"), symlink("a", "/etc")}); err != nil {
		t.Fatal(err)
	}
	if got := content(t, f, "h"); got != "X" || f.Get("a/x") != nil {
		t.Fatalf("h = %q, a/x %v", got, f.Get("a/x"))
	}
	err := applyAll(t, f, []te{hard("h2", "a/x")})
	if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), `"h2"`) {
		t.Fatalf("link to a path under a symlink: %v", err)
	}
	checkTree(t, f)
}

// TestWhiteoutSemantics: whiteouts hide only what lower layers wrote,
// wherever they stand in the layer, and an opaque directory keeps its own
// layer's entries.
func TestWhiteoutSemantics(t *testing.T) {
	f := New()
	if err := applyAll(t, f,
		[]te{file("x", "low"), dir("o/"), file("o/low", "l"), file("gone/deep/f", "f"), file("top", "t")},
		[]te{file("x", "high"), file("x2", ""), file(".wh.x", ""), file("o/high", "h"), file("o/.wh..wh..opq", ""), file("o/late", "l"), file(".wh.gone", "")},
	); err != nil {
		t.Fatal(err)
	}
	if got, want := names(f), "o o/high o/late top x x2"; got != want {
		t.Fatalf("names = %q, want %q", got, want)
	}
	if content(t, f, "x") != "high" {
		t.Error("a whiteout hid its own layer's x")
	}
	// An opaque marker at the root hides every lower entry.
	if err := applyAll(t, f, []te{file("new", "n"), file(".wh..wh..opq", "")}); err != nil {
		t.Fatal(err)
	}
	if got := names(f); got != "new" {
		t.Fatalf("after a root opaque marker: %q", got)
	}
	checkTree(t, f)
}

// TestDeviceNodesKept: character and block devices and FIFOs are kept,
// as LinuxKit and Docker keep them; what a container may open is the
// business of its device cgroup.
func TestDeviceNodesKept(t *testing.T) {
	f := New()
	if err := applyAll(t, f, []te{
		{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		{name: "dev/sda", typ: tar.TypeBlock, mode: 0o660, major: 8, minor: 0},
		{name: "run/fifo", typ: tar.TypeFifo, mode: 0o600},
	}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][3]uint32{
		"dev/null": {fstree.TypeChar | 0o666, 1, 3},
		"dev/sda":  {fstree.TypeBlock | 0o660, 8, 0},
		"run/fifo": {fstree.TypeFifo | 0o600, 0, 0},
	} {
		n := f.Get(name)
		if n == nil || n.Mode != want[0] || n.DevMajor != want[1] || n.DevMinor != want[2] {
			t.Errorf("%s = %+v, want mode %o dev %d,%d", name, n, want[0], want[1], want[2])
		}
	}
	checkTree(t, f)
}

// TestSparseRefused: a sparse file's data in the tar is not its content,
// and a Node can only point at content stored whole; every GNU sparse
// variant is refused, naming the entry.
func TestSparseRefused(t *testing.T) {
	for _, v := range []string{"gnu", "pax00", "pax01", "pax10"} {
		t.Run(v, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "sparse-"+v+".tar"))
			if err != nil {
				t.Fatal(err)
			}
			err = apply(New(), "img layer 0", b)
			if err == nil || !strings.Contains(err.Error(), "sparse files are not supported") || !strings.Contains(err.Error(), "img layer 0") {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

// TestEntryLimit: a layer of a great many (empty) entries costs memory
// and time; past MaxEntries it is refused.
func TestEntryLimit(t *testing.T) {
	var ents []te
	for i := range 101 {
		ents = append(ents, file(fmt.Sprintf("f%d", i), ""))
	}
	err := NewWithLimits(Limits{MaxEntries: 100}).Apply("img layer 0", bytes.NewReader(mkTar(t, ents...)), int64(len(mkTar(t, ents...))))
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "img layer 0") || !strings.Contains(err.Error(), "more than 100 entries") {
		t.Fatalf("err = %v", err)
	}
	// Whiteouts count too, and the count goes over all layers.
	f := NewWithLimits(Limits{MaxEntries: 100})
	if err := applyAll(t, f, ents[:60]); err != nil {
		t.Fatal(err)
	}
	if err := applyAll(t, f, []te{file(".wh.f1", "")}, ents[60:99]); err != nil {
		t.Fatal(err)
	}
	if err := applyAll(t, f, ents[99:]); !errors.Is(err, ErrLimit) {
		t.Fatalf("101st entry over three layers: %v", err)
	}
	if New().limits.MaxEntries != DefaultMaxEntries {
		t.Error("New has no default entry limit")
	}
}

// TestNameLimits: names longer than the kernel's PATH_MAX are refused
// (the kernel would drop them silently), and so is a layer whose names
// add up to more than MaxNameBytes.
func TestNameLimits(t *testing.T) {
	long := strings.Repeat("d/", MaxNameLen/2) + "xy"
	for name, e := range map[string]te{"name": file(long, ""), "symlink target": symlink("l", long)} {
		err := apply(New(), "img layer 0", mkTar(t, e))
		if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "longer than 4095 bytes") {
			t.Errorf("%s of %d bytes: %v", name, len(long), err)
		}
	}
	var ents []te
	for i := range 20 {
		ents = append(ents, file(fmt.Sprintf("%s%02d", strings.Repeat("n", 98), i), ""))
	}
	err := applyAll(t, NewWithLimits(Limits{MaxNameBytes: 1000}), ents)
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "names longer than 1000 bytes") {
		t.Fatalf("err = %v", err)
	}
}

// TestDeclaredSizePastEnd: a header declaring more data than the layer
// holds (a 1 TiB file in a few bytes) is refused before anything points
// at it.
func TestDeclaredSizePastEnd(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "small", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1})
	tw.Write([]byte("s"))
	tw.WriteHeader(&tar.Header{Name: "huge", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 40})
	tw.Write([]byte("only this"))
	b := buf.Bytes()
	f := New()
	err := apply(f, "img layer 0", b)
	if err == nil || !strings.Contains(err.Error(), `"huge"`) || !strings.Contains(err.Error(), "runs past the end of the layer") {
		t.Fatalf("err = %v", err)
	}
	if f.Get("huge") != nil {
		t.Error("huge recorded")
	}
}

// pathLess orders paths component by component.
func pathLess(a, b string) bool {
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if as[i] != bs[i] {
			return as[i] < bs[i]
		}
	}
	return len(as) < len(bs)
}

// checkTree asserts what must hold for any tree the package builds, before
// and after AddMissingParents, and that the initramfs written from it
// unpacks, in the model of the kernel's unpacker, with nothing created
// through a symlink or dropped for a missing parent.
func checkTree(t testing.TB, f *FS) {
	t.Helper()
	checkInvariants(t, f, false)
	f.AddMissingParents()
	checkInvariants(t, f, true)
	var buf bytes.Buffer
	w := initrd.NewWriter(&buf)
	for _, n := range f.Nodes() {
		h := &initrd.Header{Name: "root/" + n.Name, Mode: n.Mode, Linkname: n.Linkname, DevMajor: n.DevMajor, DevMinor: n.DevMinor, Size: n.Size()}
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if n.Obj != nil && n.Size() > 0 {
			if _, err := w.ReadFrom(n.Obj.Data.Reader()); err != nil {
				t.Fatalf("%s: %v", n.Name, err)
			}
		}
	}
	w.Close()
	// "root" stands for the container's root directory in the VM, which
	// the segment writes first.
	var all bytes.Buffer
	pw := initrd.NewWriter(&all)
	pw.WriteHeader(&initrd.Header{Name: "root", Mode: fstree.TypeDir | 0o755})
	pw.Close()
	all.Write(buf.Bytes())
	if err := initrd.Verify(initrd.NewReader(&all)); err != nil {
		t.Fatalf("initramfs of the tree: %v", err)
	}
}

func checkInvariants(t testing.TB, f *FS, complete bool) {
	t.Helper()
	nodes := f.Nodes()
	if len(nodes) != f.Len() {
		t.Fatalf("Len %d, Nodes %d", f.Len(), len(nodes))
	}
	for i, n := range nodes {
		if n.Name == "" || n.Name == "." || strings.HasPrefix(n.Name, "/") || path.Clean(n.Name) != n.Name || len(n.Name) > MaxNameLen {
			t.Fatalf("unclean name %.200q", n.Name)
		}
		if i > 0 && !pathLess(nodes[i-1].Name, n.Name) {
			t.Fatalf("%q listed after %q", n.Name, nodes[i-1].Name)
		}
		if f.Get(n.Name) != n {
			t.Fatalf("Get(%q) is not the listed node", n.Name)
		}
		for _, c := range strings.Split(n.Name, "/") {
			if c == ".." {
				t.Fatalf("name %q escapes", n.Name)
			}
		}
		for d := path.Dir(n.Name); d != "."; d = path.Dir(d) {
			p := f.Get(d)
			switch {
			case p == nil && complete:
				t.Fatalf("%q: parent %q missing after AddMissingParents", n.Name, d)
			case isSymlink(p):
				t.Fatalf("%q is under symlink %q", n.Name, d)
			case p != nil && !p.IsDir():
				t.Fatalf("%q is under non-directory %q", n.Name, d)
			}
		}
		typ := n.Mode & fstree.TypeMask
		if typ == fstree.TypeSymlink && (symlinkEscapes(n.Name, n.Linkname) || n.Linkname == "" || len(n.Linkname) > MaxNameLen) {
			t.Fatalf("symlink %q -> %q escapes", n.Name, n.Linkname)
		}
		if (n.Obj != nil) != (typ == fstree.TypeReg) {
			t.Fatalf("%q: mode %o with object %v", n.Name, n.Mode, n.Obj)
		}
		if n.Obj != nil {
			d := n.Obj.Data
			if br, ok := d.R.(*bytes.Reader); ok && (d.Off < 0 || d.Size < 0 || d.Off+d.Size > br.Size()) {
				t.Fatalf("%q: data %d+%d outside its layer of %d bytes", n.Name, d.Off, d.Size, br.Size())
			}
			if _, err := io.Copy(io.Discard, d.Reader()); err != nil {
				t.Fatalf("%q: %v", n.Name, err)
			}
		}
	}
}

func FuzzExtract(f *testing.F) {
	t := &testing.T{}
	f.Add(mkTar(t, dir("a/"), file("a/x", "x"), symlink("l", "a"), hard("h", "a/x")), mkTar(t, file("a/.wh.x", ""), file("l/y", "")))
	f.Add(mkTar(t, file("../x", "")), []byte{})
	f.Add(mkTar(t, symlink("a/b", "../../x")), mkTar(t, hard("x", "/etc/passwd")))
	f.Add(mkTar(t, dir("./etc/"), file("./etc/.wh..wh..opq", "")), mkTar(t, symlink("etc/x", "../..")))
	f.Fuzz(func(t *testing.T, l0, l1 []byte) {
		fs := NewWithLimits(Limits{MaxEntries: 10000})
		for i, l := range [][]byte{l0, l1} {
			if err := apply(fs, fmt.Sprintf("fuzz layer %d", i), l); err != nil {
				if !strings.Contains(err.Error(), fmt.Sprintf("fuzz layer %d", i)) {
					t.Fatalf("error %q does not name the layer", err)
				}
				break
			}
		}
		checkTree(t, fs)
	})
}
