package assembler

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/mobykit/mobykit/assembler/fstree"
	"github.com/mobykit/mobykit/assembler/initrd"
	"github.com/mobykit/mobykit/assembler/layer"
)

const kernelBytes = "MZ-not-really-a-kernel"

// pushFixture pushes a kernel, an init image and two container images to
// the registry at host and returns a spec using them.
func pushFixture(t testing.TB, host string) string {
	t.Helper()
	modules := tarBytes(t, []tf{
		{name: "lib/", typ: tar.TypeDir},
		{name: "lib/modules/", typ: tar.TypeDir},
		{name: "lib/modules/6.1.0/", typ: tar.TypeDir},
		{name: "lib/modules/6.1.0/virtio.ko", data: "module"},
	})
	push(t, host+"/kernel:6.1", testImage(t, nil, []tf{
		{name: "kernel", data: kernelBytes},
		{name: "kernel.tar", data: string(modules)},
		{name: "System.map", data: "map"},
	}))
	push(t, host+"/init:1", testImage(t, nil,
		[]tf{
			{name: "bin/", typ: tar.TypeDir},
			{name: "bin/busybox", data: "BUSYBOX", mode: 0o755},
			{name: "bin/sh", typ: tar.TypeLink, link: "bin/busybox"},
			{name: "init", typ: tar.TypeSymlink, link: "/bin/busybox"},
			{name: "etc/", typ: tar.TypeDir},
			{name: "etc/resolv.conf", data: "nameserver 8.8.8.8\n"},
			{name: "etc/hostname", data: "docker"},
			{name: "etc/old", data: "old"},
		},
		[]tf{
			{name: "etc/.wh.old"},
			{name: "etc/new", data: "new", mode: 0o600},
		}))
	push(t, host+"/app:1", testImage(t, func(c *v1.Config) { c.Cmd = []string{"/bin/app"} }, []tf{
		{name: "bin/", typ: tar.TypeDir},
		{name: "bin/app", data: "APP", mode: 0o755},
	}))
	push(t, host+"/web:1", testImage(t, func(c *v1.Config) {
		c.Cmd = []string{"/bin/web"}
		c.Labels = map[string]string{"org.mobyproject.config": `{"readonly": true}`}
	}, []tf{
		{name: "bin/", typ: tar.TypeDir},
		{name: "bin/web", data: "WEB", mode: 0o755},
	}))
	return fmt.Sprintf(`kernel:
  image: %[1]s/kernel:6.1
  cmdline: "console=ttyS0"
init:
  - %[1]s/init:1
onboot:
  - name: first
    image: %[1]s/app:1
  - name: second
    image: %[1]s/app:1
services:
  - name: web
    image: %[1]s/web:1
files:
  - path: etc/motd
    contents: "hello"
    mode: "0644"
`, host)
}

type fixture struct {
	dir, spec, cache string
}

func newFixture(t testing.TB, host string) *fixture {
	dir := t.TempDir()
	return &fixture{dir: dir, spec: writeSpec(t, dir, "test.yml", pushFixture(t, host)), cache: filepath.Join(dir, "cache")}
}

func (f *fixture) build(t testing.TB, out string, mod func(*Options)) *Result {
	t.Helper()
	o := Options{Name: "test", OutputDir: filepath.Join(f.dir, out), CacheDir: f.cache, Formats: []string{"kernel+initrd"}}
	if mod != nil {
		mod(&o)
	}
	res, err := BuildFiles(context.Background(), []string{f.spec}, o)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return res
}

func TestBuildLayout(t *testing.T) {
	f := newFixture(t, memRegistry(t))
	res := f.build(t, "out", nil)
	out := filepath.Join(f.dir, "out")
	if got := string(mustRead(t, filepath.Join(out, "test-kernel"))); got != kernelBytes {
		t.Fatalf("kernel = %q", got)
	}
	if got := string(mustRead(t, filepath.Join(out, "test-cmdline"))); got != "console=ttyS0" {
		t.Fatalf("cmdline = %q", got)
	}
	ents := verifyInitrd(t, filepath.Join(out, "test-initrd.img"))
	type want struct {
		mode uint32
		data string
		link string
	}
	dir := want{mode: fstree.TypeDir | 0o755}
	for p, w := range map[string]want{
		"boot":                        dir,
		"lib/modules/6.1.0/virtio.ko": {mode: fstree.TypeReg | 0o644, data: "module"},
		"bin/busybox":                 {mode: fstree.TypeReg | 0o755, data: "BUSYBOX"},
		"init":                        {mode: fstree.TypeSymlink | 0o777, link: "/bin/busybox"},
		"etc/resolv.conf":             {mode: fstree.TypeSymlink | 0o777, link: "/run/resolvconf/resolv.conf"},
		"etc/hosts":                   {mode: fstree.TypeReg | 0o644, data: hostsContent},
		"etc/mtab":                    {mode: fstree.TypeSymlink | 0o777, link: "/proc/mounts"},
		"etc/new":                     {mode: fstree.TypeReg | 0o600, data: "new"},
		"etc/motd":                    {mode: fstree.TypeReg | 0o644, data: "hello"},
		"dev":                         dir, "dev/pts": dir, "dev/shm": dir, "proc": dir, "sys": dir,
		"containers":                                        dir,
		"containers/onboot":                                 dir,
		"containers/onboot/000-first":                       dir,
		"containers/onboot/000-first/lower":                 dir,
		"containers/onboot/000-first/lower/bin/app":         {mode: fstree.TypeReg | 0o755, data: "APP"},
		"containers/onboot/000-first/lower/etc/resolv.conf": {mode: fstree.TypeReg | 0o644, data: resolvContent},
		"containers/onboot/000-first/tmp":                   dir,
		"containers/onboot/000-first/rootfs":                dir,
		"containers/onboot/001-second":                      dir,
		"containers/onboot/001-second/tmp":                  dir,
		"containers/onboot/001-second/rootfs":               dir,
		"containers/services/web":                           dir,
		"containers/services/web/rootfs/bin/web":            {mode: fstree.TypeReg | 0o755, data: "WEB"},
	} {
		e, ok := ents[p]
		if !ok {
			t.Errorf("%s missing", p)
			continue
		}
		if e.h.Mode != w.mode || (w.data != "" && e.data != w.data) || e.h.Linkname != w.link {
			t.Errorf("%s: mode %o data %q link %q; want mode %o data %q link %q", p, e.h.Mode, e.data, e.h.Linkname, w.mode, w.data, w.link)
		}
	}
	for _, p := range []string{"etc/old", "etc/hostname", "kernel", "kernel.tar", "System.map", "containers/onboot/001-second/lower", "containers/services/web/lower", "containers/services/web/tmp"} {
		if _, ok := ents[p]; ok {
			t.Errorf("%s should not be in the initramfs", p)
		}
	}
	// Hard links share an inode and the content.
	bb, sh := ents["bin/busybox"].h, ents["bin/sh"].h
	if bb.Ino != sh.Ino || bb.NLink != 2 || sh.NLink != 2 {
		t.Errorf("bin/sh is not a hard link of bin/busybox: %+v %+v", bb, sh)
	}
	// The second container shares the first one's lower directory.
	for _, name := range []string{"containers/onboot/000-first", "containers/onboot/001-second", "containers/services/web"} {
		for _, f := range []string{"config.json", "runtime.json"} {
			e, ok := ents[name+"/"+f]
			if !ok {
				t.Fatalf("%s/%s missing", name, f)
			}
			if e.h.Mode != fstree.TypeReg|0o644 || !json.Valid([]byte(e.data)) {
				t.Errorf("%s/%s: mode %o, valid JSON %v", name, f, e.h.Mode, json.Valid([]byte(e.data)))
			}
		}
	}
	rt := ents["containers/onboot/001-second/runtime.json"].data
	if !strings.Contains(rt, "lowerdir=/containers/onboot/000-first/lower") {
		t.Errorf("second container does not overlay the first one's copy:\n%s", rt)
	}
	if rt := ents["containers/services/web/runtime.json"].data; !strings.Contains(rt, `"/containers/services/web/rootfs"`) || !strings.Contains(rt, "bind") {
		t.Errorf("read-only container runtime.json lacks its rootfs bind:\n%s", rt)
	}
	if res.Segments != 6 || res.Reused != 0 {
		t.Errorf("segments %d reused %d; want 6 (kernel, init, two root filesystems, generated files, SBOM) and 0", res.Segments, res.Reused)
	}
}

func TestBuildReproducible(t *testing.T) {
	host := memRegistry(t)
	f := newFixture(t, host)
	cold := f.build(t, "cold", nil)
	warm := f.build(t, "warm", nil)
	if warm.Reused != warm.Segments {
		t.Errorf("warm build reused %d of %d segments", warm.Reused, warm.Segments)
	}
	// A fresh cache (everything pulled and written again) gives the same bytes.
	f2 := *f
	f2.cache = filepath.Join(f.dir, "cache2")
	fresh := f2.build(t, "fresh", nil)
	if fresh.Reused != 0 {
		t.Errorf("fresh cache reused %d segments", fresh.Reused)
	}
	for _, name := range []string{"test-kernel", "test-initrd.img", "test-cmdline"} {
		a := mustRead(t, filepath.Join(f.dir, "cold", name))
		for _, other := range []string{"warm", "fresh"} {
			if !bytes.Equal(a, mustRead(t, filepath.Join(f.dir, other, name))) {
				t.Errorf("%s differs between the cold and %s builds", name, other)
			}
		}
	}
	_ = cold
	// Incremental: one file changed rewrites one segment only.
	spec := string(mustRead(t, f.spec))
	writeSpec(t, f.dir, "test.yml", strings.Replace(spec, `contents: "hello"`, `contents: "changed"`, 1))
	inc := f.build(t, "inc", nil)
	if inc.Reused != inc.Segments-1 {
		t.Errorf("incremental build reused %d of %d segments, want all but one", inc.Reused, inc.Segments)
	}
	ents, _ := readInitrd(t, filepath.Join(f.dir, "inc", "test-initrd.img"))
	if ents["etc/motd"].data != "changed" {
		t.Errorf("etc/motd = %q after the change", ents["etc/motd"].data)
	}
	// zstd and SOURCE_DATE_EPOCH give different but again reproducible bytes.
	epoch := int64(1700000000)
	z1 := f.build(t, "z1", func(o *Options) { o.Compression = initrd.Zstd; o.MTime = &epoch })
	z2 := f.build(t, "z2", func(o *Options) { o.Compression = initrd.Zstd; o.MTime = &epoch })
	if z2.Reused != z2.Segments || z1.Reused != 0 {
		t.Errorf("zstd builds reused %d/%d then %d/%d", z1.Reused, z1.Segments, z2.Reused, z2.Segments)
	}
	if !bytes.Equal(mustRead(t, filepath.Join(f.dir, "z1", "test-initrd.img")), mustRead(t, filepath.Join(f.dir, "z2", "test-initrd.img"))) {
		t.Error("zstd builds differ")
	}
	ents, _ = readInitrd(t, filepath.Join(f.dir, "z1", "test-initrd.img"))
	if ents["etc/motd"].h.MTime != epoch {
		t.Errorf("mtime %d, want %d", ents["etc/motd"].h.MTime, epoch)
	}
	// lz4 too: the segments' legacy streams, concatenated with nothing
	// between them, are one stream that reads back whole.
	l1 := f.build(t, "l1", func(o *Options) { o.Compression = initrd.Lz4 })
	l2 := f.build(t, "l2", func(o *Options) { o.Compression = initrd.Lz4 })
	if l2.Reused != l2.Segments || l1.Reused != 0 {
		t.Errorf("lz4 builds reused %d/%d then %d/%d", l1.Reused, l1.Segments, l2.Reused, l2.Segments)
	}
	lz := mustRead(t, filepath.Join(f.dir, "l1", "test-initrd.img"))
	if !bytes.Equal(lz, mustRead(t, filepath.Join(f.dir, "l2", "test-initrd.img"))) {
		t.Error("lz4 builds differ")
	}
	if !bytes.HasPrefix(lz, []byte{0x02, 0x21, 0x4c, 0x18}) {
		t.Errorf("lz4 initramfs starts with %x, not the legacy magic", lz[:4])
	}
	lents, lorder := readInitrd(t, filepath.Join(f.dir, "l1", "test-initrd.img"))
	gents, gorder := readInitrd(t, filepath.Join(f.dir, "inc", "test-initrd.img"))
	if !slices.Equal(lorder, gorder) || !maps.EqualFunc(lents, gents, func(a, b cpioEntry) bool { return a == b }) {
		t.Error("the lz4 initramfs holds other entries than the gzip one")
	}
}

func TestBuildOffline(t *testing.T) {
	host := memRegistry(t)
	f := newFixture(t, host)
	f.build(t, "a", nil)
	// Point the images at a registry that does not answer: the cache holds
	// everything, so the build needs no network.
	res := f.build(t, "b", func(o *Options) { o.Transport = failingTransport{} })
	if res.Reused != res.Segments {
		t.Errorf("offline build reused %d of %d", res.Reused, res.Segments)
	}
	// With pull, the registry is asked and the failure shows.
	_, err := BuildFiles(context.Background(), []string{f.spec}, Options{Name: "c", OutputDir: filepath.Join(f.dir, "c"), CacheDir: f.cache, Pull: true, Transport: failingTransport{}})
	if err == nil {
		t.Fatal("pull through a failing transport succeeded")
	}
}

func TestBuildSizeLimit(t *testing.T) {
	f := newFixture(t, memRegistry(t))
	_, err := BuildFiles(context.Background(), []string{f.spec}, Options{Name: "t", OutputDir: filepath.Join(f.dir, "o"), CacheDir: f.cache, SizeLimit: 4096})
	if !errors.Is(err, initrd.ErrTooLarge) {
		t.Fatalf("want ErrTooLarge, got %v", err)
	}
	// Cached segments are checked too: the sum is over the limit.
	f.build(t, "ok", nil)
	_, err = BuildFiles(context.Background(), []string{f.spec}, Options{Name: "t", OutputDir: filepath.Join(f.dir, "o"), CacheDir: f.cache, SizeLimit: 4096})
	if !errors.Is(err, initrd.ErrTooLarge) {
		t.Fatalf("cached: want ErrTooLarge, got %v", err)
	}
}

func TestBuildRefusesEscape(t *testing.T) {
	host := memRegistry(t)
	f := newFixture(t, host)
	push(t, host+"/evil:1", testImage(t, nil,
		[]tf{{name: "lib", typ: tar.TypeSymlink, link: "/"}},
		[]tf{{name: "lib/etc/shadow", data: "pwned"}}))
	spec := writeSpec(t, f.dir, "evil.yml", fmt.Sprintf("onboot:\n  - name: evil\n    image: %s/evil:1\n", host))
	out := filepath.Join(f.dir, "evil")
	_, err := BuildFiles(context.Background(), []string{spec}, Options{Name: "evil", OutputDir: out, CacheDir: f.cache})
	if !errors.Is(err, layer.ErrUnsafe) {
		t.Fatalf("want ErrUnsafe, got %v", err)
	}
	for _, s := range []string{host + "/evil:1", "lib/etc/shadow"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %q", err, s)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "evil-initrd.img")); err == nil {
		t.Error("an initramfs was written despite the error")
	}
}

func TestFormats(t *testing.T) {
	f := newFixture(t, memRegistry(t))
	res := f.build(t, "out", func(o *Options) { o.Formats = []string{"kernel+initrd", "tar", "tar-kernel-initrd"} })
	if len(res.Outputs) != 5 {
		t.Fatalf("outputs %v", res.Outputs)
	}
	tarEntries := func(p string) map[string]string {
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		tr := tar.NewReader(fh)
		out := map[string]string{}
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			var b bytes.Buffer
			b.ReadFrom(tr)
			out[h.Name] = b.String()
			if h.Typeflag == tar.TypeLink {
				out[h.Name] = "link:" + h.Linkname
			}
		}
		return out
	}
	fs := tarEntries(filepath.Join(f.dir, "out", "test.tar"))
	for p, want := range map[string]string{"boot/kernel": kernelBytes, "boot/cmdline": "console=ttyS0", "etc/motd": "hello", "bin/sh": "link:bin/busybox", "containers/services/web/rootfs/bin/web": "WEB"} {
		if fs[p] != want {
			t.Errorf("tar %s = %q, want %q", p, fs[p], want)
		}
	}
	kit := tarEntries(filepath.Join(f.dir, "out", "test-initrd.tar"))
	initrdImg := string(mustRead(t, filepath.Join(f.dir, "out", "test-initrd.img")))
	if kit["kernel"] != kernelBytes || kit["cmdline"] != "console=ttyS0" || kit["initrd.img"] != initrdImg {
		t.Errorf("tar-kernel-initrd entries wrong: %v", sortedKeys(kit))
	}
	if _, err := BuildFiles(context.Background(), []string{f.spec}, Options{Formats: []string{"floppy"}, CacheDir: f.cache}); err == nil || !strings.Contains(err.Error(), "floppy") {
		t.Errorf("unknown format: %v", err)
	}
}

func TestAPKDatabaseMerged(t *testing.T) {
	host := memRegistry(t)
	f := newFixture(t, host)
	push(t, host+"/init2:1", testImage(t, nil, []tf{{name: "lib/apk/db/installed", data: "P:runc\nV:1\n"}}))
	push(t, host+"/init3:1", testImage(t, nil, []tf{{name: "lib/apk/db/installed", data: "P:containerd\nV:2\n"}}))
	spec := string(mustRead(t, f.spec))
	spec = strings.Replace(spec, "init:\n", fmt.Sprintf("init:\n  - %[1]s/init2:1\n  - %[1]s/init3:1\n", host), 1)
	writeSpec(t, f.dir, "test.yml", spec)
	f.build(t, "out", nil)
	ents, _ := readInitrd(t, filepath.Join(f.dir, "out", "test-initrd.img"))
	if got, want := ents["lib/apk/db/installed"].data, "P:runc\nV:1\n\n\nP:containerd\nV:2\n\n\n"; got != want {
		t.Fatalf("apk database %q, want %q", got, want)
	}
}

func TestMicrocode(t *testing.T) {
	host := memRegistry(t)
	f := newFixture(t, host)
	push(t, host+"/kernel:ucode", testImage(t, nil, []tf{
		{name: "kernel", data: kernelBytes},
		{name: "ucode.cpio", data: "UCODE-CPIO"},
	}))
	spec := string(mustRead(t, f.spec))
	spec = strings.Replace(spec, "image: "+host+"/kernel:6.1", "image: "+host+"/kernel:ucode\n  tar: none\n  ucode: ucode.cpio", 1)
	writeSpec(t, f.dir, "test.yml", spec)
	f.build(t, "out", func(o *Options) { o.Formats = []string{"kernel+initrd", "tar-kernel-initrd"} })
	img := mustRead(t, filepath.Join(f.dir, "out", "test-initrd.img"))
	if !bytes.HasPrefix(img, []byte("UCODE-CPIO\x1f\x8b")) {
		t.Fatalf("initrd does not start with the microcode then gzip: %q", img[:16])
	}
	ents, _ := readInitrd(t, writeTemp(t, img[len("UCODE-CPIO"):]))
	if _, ok := ents["lib/modules/6.1.0/virtio.ko"]; ok {
		t.Error("modules present although tar: none")
	}
	if _, ok := ents["etc/motd"]; !ok {
		t.Error("etc/motd missing after the microcode")
	}
}

func writeTemp(t *testing.T, b []byte) string {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVolumes(t *testing.T) {
	host := memRegistry(t)
	f := newFixture(t, host)
	spec := string(mustRead(t, f.spec)) + fmt.Sprintf(`volumes:
  - name: data
  - name: tools
    image: %s/app:1
    readonly: true
`, host)
	spec = strings.Replace(spec, "  - name: web\n    image: "+host+"/web:1\n", "  - name: web\n    image: "+host+"/web:1\n    binds.add:\n      - data:/data\n", 1)
	writeSpec(t, f.dir, "test.yml", spec)
	f.build(t, "out", nil)
	ents, _ := readInitrd(t, filepath.Join(f.dir, "out", "test-initrd.img"))
	for _, p := range []string{"containers/volumes/data/lower", "containers/volumes/data/tmp", "containers/volumes/data/merged",
		"containers/volumes/tools/lower/bin/app", "containers/volumes/tools/merged"} {
		if _, ok := ents[p]; !ok {
			t.Errorf("%s missing", p)
		}
	}
	// No tmp/ for the read-only volume: that is how init (like LinuxKit's) knows to mount it
	// read-only.
	if _, ok := ents["containers/volumes/tools/tmp"]; ok {
		t.Error("read-only volume tools has a tmp/ folder: init would mount it read-write")
	}
	if cfg := ents["containers/services/web/config.json"].data; !strings.Contains(cfg, "/containers/volumes/data/merged") {
		t.Errorf("web's bind of volume data does not point at its merged dir:\n%s", cfg)
	}
}

func TestPullErrorNamesUser(t *testing.T) {
	host := memRegistry(t)
	dir := t.TempDir()
	spec := writeSpec(t, dir, "s.yml", fmt.Sprintf("onboot:\n  - name: ghost\n    image: %s/missing:1\n", host))
	_, err := BuildFiles(context.Background(), []string{spec}, Options{OutputDir: dir, CacheDir: filepath.Join(dir, "c")})
	if err == nil || !strings.Contains(err.Error(), "onboot[0] ghost") || !strings.Contains(err.Error(), "missing:1") {
		t.Fatalf("error %v should name onboot[0] ghost and the image", err)
	}
}
