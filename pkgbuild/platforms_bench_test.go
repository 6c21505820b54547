package pkgbuild

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/mobykit/mobykit/assembler/image"
	"github.com/mobykit/mobykit/internal/testenv"
)

// buildAllImages builds every recipe under ../images into a fresh cache, for arches, and
// returns how long it took. WorkDir is the test cache's, so Debian packages and scratch
// modules are the ones earlier runs fetched.
func buildAllImages(b *testing.B, arches ...string) time.Duration {
	b.Helper()
	c, err := image.OpenCache(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	bl := &Builder{Cache: c, WorkDir: filepath.Join(testenv.CacheDir(), "pkgbuild"), Arch: arches[0], Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if len(arches) > 1 {
		bl.Arches = arches
	}
	dirs, err := filepath.Glob("../images/*/" + RecipeFile)
	if err != nil || len(dirs) == 0 {
		b.Fatalf("no recipes under ../images: %v", err)
	}
	start := time.Now()
	for _, f := range dirs {
		r, err := LoadRecipe(filepath.Dir(f))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := bl.Build(context.Background(), r); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

// BenchmarkPkgBuildPlatforms prints the time of `pkg build images/*` for linux/amd64 alone and
// for linux/amd64,linux/arm64, into empty image caches with warm Debian and Go caches (a first
// multi-platform build warms them), and their ratio (issue 15's aim: under 2).
//
//	go test ./pkgbuild -run '^$' -bench PkgBuildPlatforms -benchtime 1x
func BenchmarkPkgBuildPlatforms(b *testing.B) {
	testenv.RequireTool(b, "apt-get", "apt")
	testenv.RequireTool(b, "aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu libc6-dev-arm64-cross")
	buildAllImages(b, "amd64", "arm64") // warm: .deb files, scratch modules, Go build cache
	var one, both time.Duration
	for i := 0; i < b.N; i++ {
		one += buildAllImages(b, "amd64")
		both += buildAllImages(b, "amd64", "arm64")
	}
	n := float64(b.N)
	b.ReportMetric(one.Seconds()/n, "s-amd64")
	b.ReportMetric(both.Seconds()/n, "s-amd64+arm64")
	b.ReportMetric(both.Seconds()/one.Seconds(), "ratio")
	b.Logf("pkg build images/*: amd64 %.1fs, amd64+arm64 %.1fs, ratio %.2f", one.Seconds()/n, both.Seconds()/n, both.Seconds()/one.Seconds())
}
