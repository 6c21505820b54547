package assembler

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mobykit/mobykit/assembler/fstree"
	"github.com/mobykit/mobykit/assembler/image"
	"github.com/mobykit/mobykit/assembler/initrd"
	"github.com/mobykit/mobykit/assembler/layer"
)

// verifyInitrd checks a built initramfs against the model of the kernel's
// unpacker: no entry is created through a symlink, under a parent not yet
// created, or over a non-empty directory. It also checks, on the entries
// as read, that no name has a symlink among its ancestors.
func verifyInitrd(t *testing.T, p string) map[string]cpioEntry {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := initrd.Decompress(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := initrd.Verify(initrd.NewReader(zr)); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	ents, _ := readInitrd(t, p)
	for name := range ents {
		for d := filepath.Dir(name); d != "."; d = filepath.Dir(d) {
			if e, ok := ents[d]; ok && e.h.Mode&fstree.TypeMask == fstree.TypeSymlink {
				t.Errorf("%s is below the symlink %s -> %s", name, d, e.h.Linkname)
			}
		}
	}
	return ents
}

// TestBuildSymlinkOverWrittenDir: images whose layers write a/x and then
// make a a symlink to /etc (in one layer, or in the next) build, through
// the registry and the real build path, into an initramfs where a is the
// symlink and nothing is below it: the kernel would otherwise write /etc/x
// of the VM.
func TestBuildSymlinkOverWrittenDir(t *testing.T) {
	host := memRegistry(t)
	f := newFixture(t, host)
	wrote := []tf{{name: "a/x", data: "x"}, {name: "a/b/", typ: tar.TypeDir}, {name: "a/b/y", data: "y"}, {name: "keep", data: "k"}}
	link := tf{name: "a", typ: tar.TypeSymlink, link: "/etc"}
	push(t, host+"/next:1", testImage(t, nil, wrote, []tf{link}))
	push(t, host+"/same:1", testImage(t, nil, append(append([]tf{}, wrote...), link)))
	push(t, host+"/file:1", testImage(t, nil, wrote, []tf{{name: "a", data: "now a file"}}))
	spec := strings.Replace(string(mustRead(t, f.spec)), "files:\n", fmt.Sprintf(`  - name: next
    image: %[1]s/next:1
  - name: same
    image: %[1]s/same:1
  - name: file
    image: %[1]s/file:1
files:
`, host), 1)
	writeSpec(t, f.dir, "test.yml", spec)
	f.build(t, "out", nil)
	ents := verifyInitrd(t, filepath.Join(f.dir, "out", "test-initrd.img"))
	for _, name := range []string{"next", "same"} {
		root := "containers/services/" + name + "/lower/"
		if e := ents[root+"a"]; e.h.Mode&fstree.TypeMask != fstree.TypeSymlink || e.h.Linkname != "/etc" {
			t.Errorf("%sa = %+v, want the symlink to /etc", root, e.h)
		}
		if _, ok := ents[root+"keep"]; !ok {
			t.Errorf("%skeep missing", root)
		}
	}
	if e := ents["containers/services/file/lower/a"]; e.data != "now a file" {
		t.Errorf("file's a = %q", e.data)
	}
	for name := range ents {
		if strings.Contains(name, "/lower/a/") {
			t.Errorf("%s survived the replacement of its directory", name)
		}
	}
}

// TestBuildHostileLayerBounds: a gzip bomb and an image of too many
// entries are refused through the build, naming the image and the layer.
func TestBuildHostileLayerBounds(t *testing.T) {
	host := memRegistry(t)
	f := newFixture(t, host)
	var many []tf
	for i := range 50 {
		many = append(many, tf{name: fmt.Sprintf("f%d", i)})
	}
	push(t, host+"/many:1", testImage(t, nil, []tf{{name: "small"}}, many))
	push(t, host+"/bomb:1", testImage(t, nil, []tf{{name: "zeros", data: string(make([]byte, 4<<20))}}))
	for _, tc := range []struct {
		image, layer string
		o            func(*Options)
		want         error
	}{
		{"bomb:1", "layer 0", func(o *Options) { o.MaxLayerSize = 1 << 20 }, image.ErrLayerTooLarge},
		{"many:1", "layer 1", func(o *Options) { o.LayerLimits = layer.Limits{MaxEntries: 40} }, layer.ErrLimit},
	} {
		t.Run(tc.image, func(t *testing.T) {
			spec := writeSpec(t, f.dir, "h.yml", fmt.Sprintf("onboot:\n  - name: h\n    image: %s/%s\n", host, tc.image))
			o := Options{Name: "h", OutputDir: filepath.Join(f.dir, "h"), CacheDir: f.cache}
			tc.o(&o)
			_, err := BuildFiles(context.Background(), []string{spec}, o)
			if !errors.Is(err, tc.want) {
				t.Fatalf("want %v, got %v", tc.want, err)
			}
			if want := fmt.Sprintf("image %s/%s %s", host, tc.image, tc.layer); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %q", err, want)
			}
		})
	}
}

// TestFixupsReplaceSymlinkedDirs: an image whose etc and dev are symlinks
// to the VM's own would have the fix-ups write /etc/hosts of the VM; the
// fix-ups replace them by directories first.
func TestFixupsReplaceSymlinkedDirs(t *testing.T) {
	fs := layer.New()
	var b strings.Builder
	tw := tar.NewWriter(&b)
	for _, l := range []struct{ name, to string }{{"etc", "/etc"}, {"dev", "/"}} {
		tw.WriteHeader(&tar.Header{Name: l.name, Typeflag: tar.TypeSymlink, Linkname: l.to, Mode: 0o777})
	}
	tw.WriteHeader(&tar.Header{Name: "sys", Typeflag: tar.TypeReg, Mode: 0o644})
	tw.Close()
	if err := fs.Apply("img layer 0", strings.NewReader(b.String()), int64(b.Len())); err != nil {
		t.Fatal(err)
	}
	if err := fixups(fs, "", bytesObject); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"etc", "dev", "dev/pts", "sys"} {
		if n := fs.Get(d); n == nil || !n.IsDir() {
			t.Errorf("%s = %+v, want a directory", d, n)
		}
	}
	for _, n := range fs.Nodes() {
		for d := filepath.Dir(n.Name); d != "."; d = filepath.Dir(d) {
			if p := fs.Get(d); p == nil || !p.IsDir() {
				t.Errorf("%s is below %+v", n.Name, p)
			}
		}
	}
}
