package examples

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mobykit/mobykit/assembler"
	"github.com/mobykit/mobykit/assembler/image"
	"github.com/mobykit/mobykit/internal/testenv"
	"github.com/mobykit/mobykit/pkgbuild"
)

// uploadCounter counts the blob uploads started through it (POST .../blobs/uploads/).
type uploadCounter struct {
	mu sync.Mutex
	n  int
}

func (u *uploadCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/blobs/uploads/") {
		u.mu.Lock()
		u.n++
		u.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(r)
}

func (u *uploadCounter) take() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := u.n
	u.n = 0
	return n
}

// TestPushedImagesBuildHello pushes the system images to the test run's docker-registry,
// builds examples/hello.yml from the registry alone (an empty cache, the spec's images pointed
// at the registry), and checks the output is byte for byte the build from the local cache,
// every image pulled with the digest that was pushed; a second push uploads no blob.
func TestPushedImagesBuildHello(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the system images and uses docker-registry")
	}
	cacheDir := buildImages(t)
	cache, err := image.OpenCache(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	// A repository path of its own per run: the shared registry may hold an earlier run's blobs.
	var nonce [4]byte
	rand.Read(nonce[:])
	registry := testenv.Registry(t) + "/testpushedimagesbuildhello-" + hex.EncodeToString(nonce[:])

	uploads := &uploadCounter{}
	pusher := image.NewResolver(cache, image.WithTransport(uploads))
	b := &pkgbuild.Builder{Cache: cache, WorkDir: filepath.Join(testenv.CacheDir(), "pkgbuild")}
	recipes, err := filepath.Glob("../images/*/" + pkgbuild.RecipeFile)
	if err != nil || len(recipes) == 0 {
		t.Fatalf("no recipes under ../images: %v", err)
	}
	pushedImages := map[string]map[string]bool{} // destination reference -> image manifest digests
	pushAll := func() map[string]string {
		pushed := map[string]string{} // destination reference -> digest
		for _, f := range recipes {
			r, err := pkgbuild.LoadRecipe(filepath.Dir(f))
			if err != nil {
				t.Fatal(err)
			}
			ps, err := b.Push(context.Background(), r, pusher, registry)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range ps {
				pushed[p.Ref] = p.Digest.String()
				if p.SBOMs != len(p.Images) {
					t.Errorf("pushed %s with %d SBOMs for %d images", p.Ref, p.SBOMs, len(p.Images))
				}
				pushedImages[p.Ref] = map[string]bool{}
				for _, d := range p.Images {
					pushedImages[p.Ref][d.String()] = true
				}
			}
		}
		return pushed
	}
	pushed := pushAll()
	if n := uploads.take(); n == 0 {
		t.Fatal("the first push to a new repository uploaded no blob")
	}

	out := t.TempDir()
	build := func(dir, specPath, cacheDir string) []byte {
		t.Helper()
		if _, err := assembler.BuildFiles(context.Background(), []string{specPath}, assembler.Options{
			Name: "hello", OutputDir: filepath.Join(out, dir), CacheDir: cacheDir,
		}); err != nil {
			t.Fatalf("build %s: %v", dir, err)
		}
		var all []byte
		for _, n := range []string{"hello-kernel", "hello-initrd.img", "hello-cmdline"} {
			data, err := os.ReadFile(filepath.Join(out, dir, n))
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, data...)
		}
		return all
	}
	spec, err := os.ReadFile("hello.yml")
	if err != nil {
		t.Fatal(err)
	}
	// Both builds name the exact tags that were pushed (mobykit/NAME:HASH), not :latest: the
	// cache is shared with other test processes, which may tag another build of an image
	// latest meanwhile (another checkout's recipes).
	pinned := string(spec)
	for ref := range pushed {
		local := strings.TrimPrefix(ref, registry+"/")
		name, tag, _ := strings.Cut(local, ":")
		if tag != "latest" {
			pinned = strings.ReplaceAll(pinned, name+":latest", local)
		}
	}
	if strings.Contains(pinned, ":latest") {
		t.Fatalf("hello.yml names an image that was not pushed:\n%s", pinned)
	}
	localSpec := filepath.Join(out, "hello-local.yml")
	if err := os.WriteFile(localSpec, []byte(pinned), 0o644); err != nil {
		t.Fatal(err)
	}
	local := build("local", localSpec, cacheDir)

	remoteSpec := filepath.Join(out, "hello.yml")
	moved := strings.ReplaceAll(pinned, "image: mobykit/", "image: "+registry+"/mobykit/")
	moved = strings.ReplaceAll(moved, "  - mobykit/", "  - "+registry+"/mobykit/")
	if strings.Contains(moved, " mobykit/") {
		t.Fatalf("hello.yml still names an image outside the registry:\n%s", moved)
	}
	if err := os.WriteFile(remoteSpec, []byte(moved), 0o644); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(out, "fresh-cache")
	if !bytes.Equal(build("remote", remoteSpec, fresh), local) {
		t.Fatal("hello.yml built from the registry differs from the build from the local cache")
	}
	// What the fresh cache pulled is exactly what was pushed.
	fc, err := image.OpenCache(fresh)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := fc.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) == 0 {
		t.Fatal("the registry build left nothing in its cache")
	}
	// Each image was pulled with the manifest digest pushed, and with its SBOM (the
	// attestation manifest next to it in the pushed index).
	sboms := 0
	for _, e := range ents {
		if e.Subject != "" {
			sboms++
			if !pushedImages[e.Ref][e.Subject] {
				t.Errorf("pulled an SBOM of %s for %s, not an image pushed", e.Ref, e.Subject)
			}
			continue
		}
		if !pushedImages[e.Ref][e.Digest.String()] {
			t.Errorf("pulled %s as %s; pushed %v", e.Ref, e.Digest, pushedImages[e.Ref])
		}
	}
	if sboms == 0 {
		t.Error("the registry build pulled no SBOM")
	}

	if again := pushAll(); len(again) != len(pushed) {
		t.Fatalf("second push: %d references, first %d", len(again), len(pushed))
	}
	if n := uploads.take(); n != 0 {
		t.Errorf("second push of the same images started %d blob uploads, want 0", n)
	}
}
