package pkgbuild

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/mobykit/mobykit/assembler/image"
)

func TestParsePlatforms(t *testing.T) {
	got, err := ParsePlatforms("linux/arm64,linux/amd64", "linux/arm64")
	if err != nil || !reflect.DeepEqual(got, []string{"amd64", "arm64"}) {
		t.Fatalf("ParsePlatforms = %v, %v", got, err)
	}
	for _, bad := range []string{"", "amd64", "darwin/arm64", "linux/sparc", "linux/arm64/v8/x"} {
		if _, err := ParsePlatforms(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestDebianPackageFor: {multiarch} becomes the target's triplet and an architecture's own
// extract entries are added to the common ones, for that architecture only.
func TestDebianPackageFor(t *testing.T) {
	r, err := ParseRecipe("r.yml", []byte(`debian:
  - package: libc6
    extract:
      lib/{multiarch}/: /lib/{multiarch}
    arches:
      amd64: {lib64/: /lib64}
      arm64: {lib/ld-linux-aarch64.so.1: /lib/ld-linux-aarch64.so.1}
`))
	if err != nil {
		t.Fatal(err)
	}
	d := r.Debian[0]
	if got := d.For("amd64").Extract; !reflect.DeepEqual(got, map[string]string{"lib/x86_64-linux-gnu/": "/lib/x86_64-linux-gnu", "lib64/": "/lib64"}) {
		t.Errorf("amd64: %v", got)
	}
	if got := d.For("arm64").Extract; !reflect.DeepEqual(got, map[string]string{"lib/aarch64-linux-gnu/": "/lib/aarch64-linux-gnu", "lib/ld-linux-aarch64.so.1": "/lib/ld-linux-aarch64.so.1"}) {
		t.Errorf("arm64: %v", got)
	}
	if len(d.Extract) != 1 {
		t.Errorf("For changed the recipe: %v", d.Extract)
	}
}

func TestRecipePlatformFieldsRejected(t *testing.T) {
	for name, y := range map[string]string{
		"platforms":        "platforms: [amd64, vax]\n",
		"kernel arch":      "kernel: {package: k, arches: {vax: {package: k2}}}\n",
		"kernel arch pkg":  "kernel: {package: k, arches: {arm64: {modules: [x]}}}\n",
		"debian arch":      "debian: [{package: p, arches: {vax: {a: /a}}}]\n",
		"debian arch path": "debian: [{package: p, arches: {arm64: {a: rel}}}]\n",
		"debian arch dots": "debian: [{package: p, arches: {arm64: {../a: /a}}}]\n",
	} {
		if _, err := ParseRecipe("r.yml", []byte(y)); err == nil {
			t.Errorf("%s: %q accepted", name, y)
		}
	}
	r, err := ParseRecipe("r.yml", []byte("kernel: {package: k-amd64, modules: [a], arches: {arm64: {package: k-arm64, modules: [b]}}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p, m := r.Kernel.For("arm64"); p != "k-arm64" || !reflect.DeepEqual(m, []string{"b"}) {
		t.Errorf("arm64 kernel: %s %v", p, m)
	}
	if p, m := r.Kernel.For("amd64"); p != "k-amd64" || !reflect.DeepEqual(m, []string{"a"}) {
		t.Errorf("amd64 kernel: %s %v", p, m)
	}
}

// helloBinary returns the ELF machine of /hello in img.
func helloMachine(t *testing.T, img v1.Image) elf.Machine {
	t.Helper()
	ls, err := img.Layers()
	if err != nil || len(ls) != 1 {
		t.Fatalf("layers: %v %v", ls, err)
	}
	rc, err := ls[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatal("no /hello in the image")
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimPrefix(h.Name, "/") == "hello" {
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			f, err := elf.NewFile(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			return f.Machine
		}
	}
}

// TestBuildMultiPlatform builds a Go recipe for linux/amd64 and linux/arm64: one tag for both,
// each platform's image holds a binary for its machine and says its architecture, the index
// digest the build reports is the one a push to a registry produces, a single-platform build
// afterwards reuses the image, and a recipe restricted to amd64 builds for amd64 alone or
// fails naming the recipe.
func TestBuildMultiPlatform(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles a Go program")
	}
	r, err := LoadRecipe("testdata/hello")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	b := newBuilder(t, t.TempDir())
	b.Arches = []string{"amd64", "arm64"}
	res, err := b.Build(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := b.Tag(ctx, r)
	if err != nil || res.Ref != "mobykit/hello:"+tag {
		t.Fatalf("Tag = %s, %v; built %s", tag, err, res.Ref)
	}
	if len(res.Platforms) != 2 {
		t.Fatalf("platforms: %+v", res.Platforms)
	}
	single := map[string]string{}
	for _, arch := range []string{"amd64", "arm64"} {
		sb := newBuilder(t, t.TempDir())
		sb.Arch = arch
		st, err := sb.Tag(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		single[arch] = "mobykit/hello:" + st
		if st == tag {
			t.Errorf("the multi-platform tag equals the %s one", arch)
		}
	}
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for i, arch := range []string{"amd64", "arm64"} {
		pr := res.Platforms[i]
		if pr.Platform != "linux/"+arch || pr.Ref != single[arch] || pr.Cached {
			t.Errorf("platform %d: %+v, want linux/%s %s", i, pr, arch, single[arch])
		}
		for _, ref := range []string{res.Ref, res.Latest, pr.Ref} {
			nr, err := name.ParseReference(ref)
			if err != nil {
				t.Fatal(err)
			}
			img, ok := b.Cache.Lookup(nr, v1.Platform{OS: "linux", Architecture: arch})
			if !ok {
				t.Fatalf("%s (%s) not in the cache", ref, arch)
			}
			if d, _ := img.Digest(); d != pr.Digest {
				t.Errorf("%s (%s): digest %s, want %s", ref, arch, d, pr.Digest)
			}
			cf, err := img.ConfigFile()
			if err != nil || cf.Architecture != arch {
				t.Errorf("%s (%s): config architecture %v, %v", ref, arch, cf, err)
			}
			if m := helloMachine(t, img); m != want[arch] {
				t.Errorf("%s (%s): /hello is for %s", ref, arch, m)
			}
		}
	}

	// the index a push makes is the one the build reported
	s := httptest.NewServer(registry.New())
	defer s.Close()
	u, _ := url.Parse(s.URL)
	ps, err := b.Push(ctx, r, image.NewResolver(b.Cache), u.Host)
	if err != nil {
		t.Fatal(err)
	}
	if ps[0].Digest != res.Digest || len(ps[0].Platforms) != 2 {
		t.Errorf("pushed %+v, build reported index %s", ps[0], res.Digest)
	}
	pushed, err := name.ParseReference(u.Host + "/mobykit/hello:" + tag)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(pushed)
	if err != nil || !desc.MediaType.IsIndex() || desc.Digest != res.Digest {
		t.Errorf("registry holds %v (%v), want the index %s", desc, err, res.Digest)
	}

	// a later single-platform build finds its image
	sb := newBuilder(t, t.TempDir())
	sb.Cache, sb.Arch = b.Cache, "arm64"
	sres, err := sb.Build(ctx, r)
	if err != nil || !sres.Cached || sres.Digest != res.Platforms[1].Digest {
		t.Errorf("arm64 build after the multi-platform one: %+v, %v", sres, err)
	}
	// and a second multi-platform build is cached
	again, err := b.Build(ctx, r)
	if err != nil || !again.Cached || again.Digest != res.Digest {
		t.Errorf("second multi-platform build: %+v, %v", again, err)
	}

	// a recipe for amd64 only
	r.Platforms = []string{"amd64"}
	only, err := b.Build(ctx, r)
	if err != nil || len(only.Platforms) != 1 || only.Platforms[0].Platform != "linux/amd64" {
		t.Fatalf("amd64-only recipe: %+v, %v", only, err)
	}
	sb.Arch = "arm64"
	if _, err := sb.Build(ctx, r); err == nil || !strings.Contains(err.Error(), "image hello: built only for amd64") {
		t.Errorf("arm64 build of an amd64-only recipe: %v", err)
	}
}
