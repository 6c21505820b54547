package image

import (
	"archive/tar"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// counting records the registry requests made through it.
type counting struct {
	mu   sync.Mutex
	reqs []string
}

func (c *counting) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.reqs = append(c.reqs, r.Method+" "+r.URL.Path)
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (c *counting) blobGets() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for _, r := range c.reqs {
		if strings.HasPrefix(r, "GET ") && strings.Contains(r, "/blobs/") {
			out[r[strings.LastIndex(r, "/")+1:]]++
		}
	}
	return out
}

func memRegistry(t *testing.T) string {
	s := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(s.Close)
	u, _ := url.Parse(s.URL)
	return u.Host
}

func withPlatform(t *testing.T, img v1.Image, arch string) v1.Image {
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func randomImage(t *testing.T, arch string, layers int64) v1.Image {
	img, err := random.Image(1024, layers)
	if err != nil {
		t.Fatal(err)
	}
	return withPlatform(t, img, arch)
}

func pushRef(t *testing.T, ref string) name.Reference {
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestResolvePlatformAndReuse(t *testing.T) {
	host := memRegistry(t)
	amd, arm := randomImage(t, "amd64", 2), randomImage(t, "arm64", 2)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	if err := remote.WriteIndex(pushRef(t, host+"/multi:1"), idx); err != nil {
		t.Fatal(err)
	}
	// A second image sharing amd's layers plus one more.
	extra, err := random.Layer(512, "application/vnd.oci.image.layer.v1.tar+gzip")
	if err != nil {
		t.Fatal(err)
	}
	shared, err := mutate.AppendLayers(amd, extra)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(pushRef(t, host+"/shared:1"), shared); err != nil {
		t.Fatal(err)
	}

	cache, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tr := &counting{}
	r := NewResolver(cache, WithArch("amd64"), WithTransport(tr))
	got, err := r.Resolve(context.Background(), host+"/multi:1")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := amd.Digest()
	if d, _ := got.Digest(); d != want {
		t.Fatalf("resolved %s, want the amd64 manifest %s", d, want)
	}
	armLayers, _ := arm.Layers()
	for _, l := range armLayers {
		d, _ := l.Digest()
		if cache.hasBlob(d, -1) {
			t.Errorf("arm64 layer %s was fetched", d)
		}
	}
	if _, err := r.Resolve(context.Background(), host+"/shared:1"); err != nil {
		t.Fatal(err)
	}
	for d, n := range tr.blobGets() {
		if n > 1 {
			t.Errorf("blob %s fetched %d times", d, n)
		}
	}
	amdLayers, _ := amd.Layers()
	for _, l := range amdLayers {
		d, _ := l.Digest()
		if tr.blobGets()[d.String()] != 1 {
			t.Errorf("shared layer %s fetched %d times, want once", d, tr.blobGets()[d.String()])
		}
	}
	// Cached now: no request at all.
	before := len(tr.reqs)
	if _, err := r.Resolve(context.Background(), host+"/shared:1"); err != nil {
		t.Fatal(err)
	}
	if len(tr.reqs) != before {
		t.Errorf("a cached image made %d requests", len(tr.reqs)-before)
	}
	// A platform the index lacks is an error naming it.
	if _, err := NewResolver(cache, WithArch("s390x"), WithTransport(tr)).Resolve(context.Background(), host+"/multi:1"); err == nil || !strings.Contains(err.Error(), "s390x") {
		t.Errorf("missing platform: %v", err)
	}
	ents, err := cache.List()
	if err != nil || len(ents) != 2 {
		t.Fatalf("List = %v, %v", ents, err)
	}
	if ents[0].Platform != "linux/amd64" || !strings.HasSuffix(ents[0].Ref, "/multi:1") {
		t.Errorf("entry %+v", ents[0])
	}
	// The cache is a valid OCI layout other tools can read.
	if _, err := layout.ImageIndexFromPath(cache.Dir()); err != nil {
		t.Fatal(err)
	}
	if err := cache.Clean(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := cache.List(); len(ents) != 0 {
		t.Errorf("after Clean: %v", ents)
	}
}

func TestIncompleteCacheRepulls(t *testing.T) {
	host := memRegistry(t)
	img := randomImage(t, "amd64", 1)
	if err := remote.Write(pushRef(t, host+"/a:1"), img); err != nil {
		t.Fatal(err)
	}
	cache, _ := OpenCache(t.TempDir())
	r := NewResolver(cache, WithArch("amd64"))
	if _, err := r.Resolve(context.Background(), host+"/a:1"); err != nil {
		t.Fatal(err)
	}
	ls, _ := img.Layers()
	d, _ := ls[0].Digest()
	os.Remove(cache.blobPath(d))
	if _, ok := cache.Lookup(pushRef(t, host+"/a:1"), r.Platform()); ok {
		t.Fatal("cache with a missing blob reported complete")
	}
	if _, err := r.Resolve(context.Background(), host+"/a:1"); err != nil {
		t.Fatal(err)
	}
	if !cache.hasBlob(d, -1) {
		t.Fatal("missing blob not fetched again")
	}
}

func TestImportExport(t *testing.T) {
	dir := t.TempDir()
	img := randomImage(t, "amd64", 2)
	tag, _ := name.NewTag("example.com/app:1")
	save := filepath.Join(dir, "save.tar")
	if err := tarball.WriteToFile(save, tag, img); err != nil {
		t.Fatal(err)
	}
	cache, _ := OpenCache(filepath.Join(dir, "cache"))
	refs, err := cache.Import(save)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 1 || refs[0] != "example.com/app:1" {
		t.Fatalf("imported %v", refs)
	}
	got, ok := cache.Lookup(tag, v1.Platform{OS: "linux", Architecture: "amd64"})
	if !ok {
		t.Fatal("imported image not found")
	}
	want, _ := img.Digest()
	if d, _ := got.Digest(); d != want {
		t.Errorf("digest %s, want %s", d, want)
	}

	// Export then import into another cache.
	out := filepath.Join(dir, "export.tar")
	if err := cache.Export([]string{"example.com/app:1"}, v1.Platform{OS: "linux", Architecture: "amd64"}, out); err != nil {
		t.Fatal(err)
	}
	other, _ := OpenCache(filepath.Join(dir, "other"))
	if refs, err := other.Import(out); err != nil || len(refs) != 1 {
		t.Fatalf("re-import: %v %v", refs, err)
	}
	if err := cache.Export([]string{"example.com/missing:1"}, v1.Platform{OS: "linux", Architecture: "amd64"}, out); err == nil {
		t.Error("export of a missing image succeeded")
	}

	// An OCI layout tarball with a ref annotation.
	lp, err := layout.Write(filepath.Join(dir, "oci"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{RefAnnotation: "example.com/oci:2"})); err != nil {
		t.Fatal(err)
	}
	ociTar := filepath.Join(dir, "oci.tar")
	tarDir(t, filepath.Join(dir, "oci"), ociTar)
	refs, err = other.Import(ociTar)
	if err != nil || len(refs) != 1 || refs[0] != "example.com/oci:2" {
		t.Fatalf("OCI import: %v %v", refs, err)
	}
	if _, err := other.Import(save + ".missing"); err == nil {
		t.Error("import of a missing file succeeded")
	}
}

func TestImportRefusesEscape(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "evil.tar")
	f, _ := os.Create(p)
	tw := tar.NewWriter(f)
	tw.WriteHeader(&tar.Header{Name: "oci-layout", Size: 2, Mode: 0o644})
	tw.Write([]byte("{}"))
	tw.WriteHeader(&tar.Header{Name: "../escaped", Size: 1, Mode: 0o644})
	tw.Write([]byte("x"))
	tw.Close()
	f.Close()
	cache, _ := OpenCache(filepath.Join(dir, "cache"))
	if _, err := cache.Import(p); err == nil || !strings.Contains(err.Error(), "../escaped") {
		t.Fatalf("want refusal naming the entry, got %v", err)
	}
	if _, err := os.Stat(filepath.Join(os.TempDir(), "escaped")); err == nil {
		t.Error("entry written outside the extraction directory")
	}
}

func tarDir(t *testing.T, src, dst string) {
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	defer tw.Close()
	if err := tw.AddFS(os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

func TestInsecure(t *testing.T) {
	cache, _ := OpenCache(t.TempDir())
	r := NewResolver(cache, WithInsecure("registry.internal:5000"))
	for ref, scheme := range map[string]string{
		"registry.internal:5000/a:1": "http",
		"registry.example.com/a:1":   "https",
		"127.0.0.1:5000/a:1":         "http",
		"localhost:5000/a:1":         "http",
	} {
		pr, err := r.ParseReference(ref)
		if err != nil {
			t.Fatal(err)
		}
		if got := pr.Context().Scheme(); got != scheme {
			t.Errorf("%s: scheme %s, want %s", ref, got, scheme)
		}
	}
	if !IsLoopback("127.0.0.1:5000") || !IsLoopback("localhost") || IsLoopback("10.0.0.1:5000") {
		t.Error("IsLoopback")
	}
}

func TestProgress(t *testing.T) {
	host := memRegistry(t)
	if err := remote.Write(pushRef(t, host+"/p:1"), randomImage(t, "amd64", 2)); err != nil {
		t.Fatal(err)
	}
	cache, _ := OpenCache(t.TempDir())
	var buf strings.Builder
	if _, err := NewResolver(cache, WithArch("amd64"), WithProgress(&buf)).Resolve(context.Background(), host+"/p:1"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "pulling:") || !strings.HasSuffix(buf.String(), "\n") {
		t.Errorf("progress output %q", buf.String())
	}
}

// TestMissingPlatformNamesImage: an image the cache holds for amd64 only, asked for arm64 when
// its registry cannot supply it, fails with an error that names the image, the platform asked
// for and the platforms the cache holds.
func TestMissingPlatformNamesImage(t *testing.T) {
	cache, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	host := memRegistry(t) // empty: the pull fails with "not found"
	ref := host + "/mobykit/init:latest"
	if _, err := cache.Add(pushRef(t, ref), randomImage(t, "amd64", 1), v1.Platform{OS: "linux", Architecture: "amd64"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := NewResolver(cache, WithArch("amd64")).Resolve(context.Background(), ref); err != nil {
		t.Fatalf("amd64 from the cache: %v", err)
	}
	_, err = NewResolver(cache, WithArch("arm64")).Resolve(context.Background(), ref)
	if err == nil {
		t.Fatal("arm64 resolved from an amd64-only cache and an empty registry")
	}
	for _, want := range []string{ref, "no linux/arm64 variant", "holds it for linux/amd64 only", "--platforms linux/amd64,linux/arm64"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// an image the cache does not hold at all keeps the plain pull error
	_, err = NewResolver(cache, WithArch("arm64")).Resolve(context.Background(), host+"/other:1")
	if err == nil || strings.Contains(err.Error(), "variant") {
		t.Errorf("uncached image: %v", err)
	}
}
