package pkgbuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// makeDeb builds a .deb (ar of debian-binary, control.tar.gz, data.tar.gz) holding entries.
func makeDeb(t testing.TB, entries []tar.Header, data map[string]string) []byte {
	var tb bytes.Buffer
	gz := gzip.NewWriter(&tb)
	tw := tar.NewWriter(gz)
	for _, h := range entries {
		h := h
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(data[h.Name]))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(data[h.Name]))
		}
	}
	tw.Close()
	gz.Close()
	var ar bytes.Buffer
	ar.WriteString("!<arch>\n")
	member := func(name string, body []byte) {
		fmt.Fprintf(&ar, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 0, 0, 0, "100644", len(body))
		ar.Write(body)
		if len(body)%2 == 1 {
			ar.WriteByte('\n')
		}
	}
	member("debian-binary", []byte("2.0\n"))
	member("control.tar.gz", []byte("x")) // odd length: exercises the padding
	member("data.tar.gz", tb.Bytes())
	return ar.Bytes()
}

func TestReadDeb(t *testing.T) {
	now := time.Unix(1e9, 0)
	deb := makeDeb(t, []tar.Header{
		{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now},
		{Name: "./bin/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now},
		{Name: "./bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, ModTime: now},
		{Name: "./bin/sh", Typeflag: tar.TypeLink, Linkname: "./bin/busybox", ModTime: now},
		{Name: "./usr/share/doc/x", Typeflag: tar.TypeSymlink, Linkname: "../y", ModTime: now},
	}, map[string]string{"./bin/busybox": "BB"})
	files, err := ReadDeb(bytes.NewReader(deb), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]DebFile{}
	for _, f := range files {
		got[f.Path] = f
	}
	if f := got["bin/sh"]; f.Type != tar.TypeReg || string(f.Data) != "BB" || f.Mode != 0o755 {
		t.Errorf("hard link bin/sh = %+v, want a copy of bin/busybox", f)
	}
	if f := got["usr/share/doc/x"]; f.Type != tar.TypeSymlink || f.Linkname != "../y" {
		t.Errorf("symlink = %+v", f)
	}

	for _, tc := range []struct {
		name    string
		extract map[string]string
		want    []string
		err     string
	}{
		{"all", nil, []string{"/bin", "/bin/busybox", "/bin/sh", "/usr/share/doc/x"}, ""},
		{"one file", map[string]string{"bin/busybox": "/sbin/bb"}, []string{"/sbin/bb"}, ""},
		{"folder", map[string]string{"bin/": "/b"}, []string{"/b", "/b/busybox", "/b/sh"}, ""},
		{"missing", map[string]string{"bin/nope": "/x"}, nil, `"bin/nope" is not in the package`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTree()
			err := addDeb(tr, files, DebianPackage{Package: "p", Extract: tc.extract})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(tr.Paths(), " "); got != strings.Join(tc.want, " ") {
				t.Errorf("paths = %s, want %s", got, strings.Join(tc.want, " "))
			}
		})
	}
}

func TestReadDebRejects(t *testing.T) {
	if _, err := ReadDeb(strings.NewReader("not a deb"), nil); err == nil {
		t.Error("garbage accepted")
	}
	if _, err := ReadDeb(strings.NewReader("!<arch>\n"), nil); err == nil || !strings.Contains(err.Error(), "no data.tar") {
		t.Errorf("empty archive: %v", err)
	}
}

// FuzzReadDeb: package files come from a mirror; a malformed one must give an error, never a
// panic, and no entry may name a path outside the package root.
func FuzzReadDeb(f *testing.F) {
	f.Add(makeDeb(f, []tar.Header{{Name: "./a", Typeflag: tar.TypeReg, Mode: 0o644}}, map[string]string{"./a": "x"}))
	f.Add(makeDeb(f, []tar.Header{{Name: "../../etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644}}, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		files, err := ReadDeb(bytes.NewReader(data), nil)
		if err != nil {
			return
		}
		for _, fl := range files {
			if strings.HasPrefix(fl.Path, "/") || strings.HasPrefix(fl.Path, "..") || strings.Contains(fl.Path, "/../") {
				t.Fatalf("entry %q escapes the root", fl.Path)
			}
		}
	})
}

func TestModulesDep(t *testing.T) {
	mods := []*Module{
		{Name: "a", Path: "kernel/a.ko", Depends: []string{"b", "c"}},
		{Name: "b", Path: "kernel/b.ko", Depends: []string{"c"}},
		{Name: "c", Path: "kernel/c.ko"},
		{Name: "d", Path: "kernel/d.ko", Depends: []string{"builtin_one"}},
	}
	want := `kernel/a.ko: kernel/b.ko kernel/c.ko
kernel/b.ko: kernel/c.ko
kernel/c.ko:
kernel/d.ko:
`
	if got := ModulesDep(mods); got != want {
		t.Errorf("modules.dep:\n%s\nwant:\n%s", got, want)
	}
}

func TestResolveDebs(t *testing.T) {
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("apt-get not installed")
	}
	ds, err := resolveDebs(context.Background(), "amd64", "busybox-static", "zlib1g")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"busybox-static", "zlib1g"} {
		if ds[i].Package != want || !strings.HasPrefix(ds[i].Filename, want+"_") || len(ds[i].SHA256) != 64 {
			t.Errorf("resolveDebs[%d] = %+v", i, ds[i])
		}
	}
	if _, err := resolveDebs(context.Background(), "amd64", "no-such-package-mobykit"); err == nil {
		t.Error("an unknown package was resolved")
	}
}
