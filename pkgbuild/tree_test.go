package pkgbuild

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"
	"time"
)

func TestTreeTar(t *testing.T) {
	build := func(order []string) []byte {
		tr := NewTree()
		for _, o := range order {
			switch o {
			case "file":
				tr.File("/usr/bin/x", 0o755, []byte("x"))
			case "link":
				tr.Symlink("/bin/sh", "busybox")
			case "dir":
				tr.Dir("/tmp", 0o1777)
			}
		}
		b, err := tr.Tar(time.Unix(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a := build([]string{"file", "link", "dir"})
	b := build([]string{"dir", "link", "file"})
	if !bytes.Equal(a, b) {
		t.Fatal("tar depends on insertion order")
	}
	var names []string
	r := tar.NewReader(bytes.NewReader(a))
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: owner %d:%d time %v", h.Name, h.Uid, h.Gid, h.ModTime)
		}
		names = append(names, h.Name)
	}
	want := []string{"bin/", "bin/sh", "tmp/", "usr/", "usr/bin/", "usr/bin/x"}
	if len(names) != len(want) {
		t.Fatalf("names = %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("names = %v, want %v", names, want)
		}
	}
}

func TestTreeRefusesFileAsParent(t *testing.T) {
	tr := NewTree()
	tr.File("/a", 0o644, nil)
	tr.File("/a/b", 0o644, nil)
	if _, err := tr.Tar(time.Unix(0, 0)); err == nil {
		t.Fatal("a file under a regular file was accepted")
	}
}

func TestTreeRefusesRoot(t *testing.T) {
	if err := NewTree().File("/", 0o644, nil); err == nil {
		t.Fatal("writing / as a file was accepted")
	}
}
