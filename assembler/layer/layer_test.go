package layer

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"sort"
	"strings"
	"testing"
)

type te struct {
	name, link   string
	typ          byte
	data         string
	mode         int64
	major, minor int64
}

func mkTar(t testing.TB, ents ...te) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.data)), Devmajor: e.major, Devminor: e.minor}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(e.data))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func apply(f *FS, name string, b []byte) error {
	return f.Apply(name, bytes.NewReader(b), int64(len(b)))
}

func dir(n string) te             { return te{name: n, typ: tar.TypeDir, mode: 0o755} }
func file(n, data string) te      { return te{name: n, typ: tar.TypeReg, data: data} }
func symlink(n, target string) te { return te{name: n, typ: tar.TypeSymlink, link: target} }
func hard(n, target string) te    { return te{name: n, typ: tar.TypeLink, link: target} }

func names(f *FS) string {
	var out []string
	for _, n := range f.Nodes() {
		out = append(out, n.Name)
	}
	return strings.Join(out, " ")
}

func content(t *testing.T, f *FS, name string) string {
	n := f.Get(name)
	if n == nil || n.Obj == nil {
		t.Fatalf("%s: not a regular file", name)
	}
	b, err := io.ReadAll(n.Obj.Data.Reader())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWhiteouts(t *testing.T) {
	f := New()
	if err := apply(f, "l0", mkTar(t, dir("a/"), file("a/x", "x0"), file("a/y", "y0"), dir("b/"), file("b/z", "z0"), dir("c/"), file("c/k", "k0"), file("top", "t0"))); err != nil {
		t.Fatal(err)
	}
	if err := apply(f, "l1", mkTar(t,
		file("a/.wh.x", ""),        // plain whiteout
		file("b/new", "n1"),        // added before the opaque marker, same layer
		file("b/.wh..wh..opq", ""), // hides b/z from below only
		file(".wh.c", ""),          // a whole directory
		file("top", "t1"),          // replaced
	)); err != nil {
		t.Fatal(err)
	}
	if got, want := names(f), "a a/y b b/new top"; got != want {
		t.Fatalf("names = %q, want %q", got, want)
	}
	if got := content(t, f, "top"); got != "t1" {
		t.Fatalf("top = %q", got)
	}
}

func TestHardLinks(t *testing.T) {
	f := New()
	if err := apply(f, "l0", mkTar(t, file("bin/busybox", "BB"), hard("bin/sh", "bin/busybox"), hard("bin/ls", "./bin/busybox"))); err != nil {
		t.Fatal(err)
	}
	sh, bb := f.Get("bin/sh"), f.Get("bin/busybox")
	if sh.Obj != bb.Obj || f.Get("bin/ls").Obj != bb.Obj {
		t.Fatal("hard links do not share their object")
	}
	// Replacing the original keeps the links' old content.
	if err := apply(f, "l1", mkTar(t, file("bin/busybox", "NEW"))); err != nil {
		t.Fatal(err)
	}
	if content(t, f, "bin/sh") != "BB" || content(t, f, "bin/busybox") != "NEW" {
		t.Fatal("replacing a linked file changed the other links")
	}
	f.AddMissingParents()
	if n := f.Get("bin"); n == nil || !n.IsDir() {
		t.Fatal("missing parent bin not added")
	}
}

func TestSortOrder(t *testing.T) {
	f := New()
	apply(f, "l0", mkTar(t, file("a-b", ""), file("a/b", ""), file("a.b", ""), dir("a/")))
	if got, want := names(f), "a a/b a-b a.b"; got != want {
		t.Fatalf("order %q, want %q (parents before children)", got, want)
	}
}

func TestRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		layers [][]te
	}{
		{"dotdot", [][]te{{file("../etc/passwd", "x")}}},
		{"dotdot inside", [][]te{{file("a/../../x", "x")}}},
		{"absolute", [][]te{{file("/etc/passwd", "x")}}},
		{"symlink parent", [][]te{{symlink("lib", "/etc")}, {file("lib/evil", "x")}}},
		{"symlink parent same layer", [][]te{{symlink("lib", "usr/lib"), file("lib/evil", "x")}}},
		{"relative symlink escape", [][]te{{symlink("a/b", "../../etc/shadow")}}},
		{"hard link escape", [][]te{{hard("x", "../../etc/shadow")}}},
		{"hard link absolute", [][]te{{hard("x", "/etc/shadow")}}},
		{"hard link missing", [][]te{{hard("x", "nothere")}}},
		{"hard link to dir", [][]te{{dir("d/"), hard("x", "d")}}},
		{"whiteout dotdot", [][]te{{file("a/.wh..", "")}}},
		{"whiteout escape", [][]te{{file("../.wh.x", "")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := New()
			var err error
			for i, l := range tc.layers {
				if err = apply(f, "img layer "+string(rune('0'+i)), mkTar(t, l...)); err != nil {
					break
				}
			}
			if !errors.Is(err, ErrUnsafe) {
				t.Fatalf("want ErrUnsafe, got %v", err)
			}
			if !strings.Contains(err.Error(), "img layer") {
				t.Errorf("error %q does not name the layer", err)
			}
		})
	}
	// Allowed: absolute and contained relative symlinks.
	f := New()
	if err := apply(f, "ok", mkTar(t, symlink("bin/sh", "/bin/busybox"), symlink("usr/lib/x", "../../lib/x"), symlink("etc/mtab", "/proc/mounts"))); err != nil {
		t.Fatal(err)
	}
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{"./etc/": "etc", "etc//x": "etc/x", ".": "", "./": ""} {
		got, err := CleanName(in)
		if err != nil || got != want {
			t.Errorf("CleanName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	var bad []string
	for _, in := range []string{"/x", "../x", "a/../b", "x\x00"} {
		if _, err := CleanName(in); err == nil {
			bad = append(bad, in)
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Errorf("accepted: %q", bad)
	}
}
