package pkgbuild

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/mobykit/mobykit/assembler/bundle"
	"github.com/mobykit/mobykit/assembler/image"
)

func newBuilder(t *testing.T, cacheDir string) *Builder {
	t.Helper()
	c, err := image.OpenCache(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	return &Builder{Cache: c, WorkDir: t.TempDir(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// TestBuildReproducible builds the same recipe into two caches: same tag, same digest; a
// second build into the same cache is skipped; changing an input changes the tag.
func TestBuildReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go program")
	}
	r, err := LoadRecipe("testdata/hello")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cache1 := t.TempDir()
	b1 := newBuilder(t, cache1)
	res1, err := b1.Build(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if res1.Cached || res1.Ref != "mobykit/hello:"+res1.Ref[len("mobykit/hello:"):] || res1.Latest != "mobykit/hello:latest" {
		t.Fatalf("first build: %+v", res1)
	}
	res2, err := newBuilder(t, t.TempDir()).Build(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Ref != res1.Ref || res2.Digest != res1.Digest {
		t.Fatalf("rebuild differs: %s %s vs %s %s", res1.Ref, res1.Digest, res2.Ref, res2.Digest)
	}
	res3, err := b1.Build(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if !res3.Cached || res3.Digest != res1.Digest {
		t.Fatalf("second build into the same cache: %+v", res3)
	}

	for _, ref := range []string{res1.Ref, res1.Latest} {
		nr, err := name.ParseReference(ref)
		if err != nil {
			t.Fatal(err)
		}
		img, ok := b1.Cache.Lookup(nr, v1.Platform{OS: "linux", Architecture: "amd64"})
		if !ok {
			t.Fatalf("%s not in the cache", ref)
		}
		if d, err := img.Digest(); err != nil || d != res1.Digest {
			t.Fatalf("%s: digest %s, %v", ref, d, err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if got := cf.Config.Labels[bundle.ConfigLabel]; got != `{"net":"host","readonly":true}` {
			t.Errorf("label = %q", got)
		}
		if cf.Config.Entrypoint[0] != "/hello" || cf.Architecture != "amd64" || !cf.Created.Time.Equal(Epoch) {
			t.Errorf("config = %+v", cf)
		}
	}

	// any change to the recipe changes the tag
	tag1, err := b1.Tag(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	r2 := *r
	r2.raw = append(append([]byte(nil), r.raw...), "# changed\n"...)
	tag2, err := b1.Tag(ctx, &r2)
	if err != nil {
		t.Fatal(err)
	}
	if tag1 == tag2 || "mobykit/hello:"+tag1 != res1.Ref {
		t.Errorf("tags: %s, changed %s, built %s", tag1, tag2, res1.Ref)
	}
}
