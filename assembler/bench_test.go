package assembler

import (
	"archive/tar"
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mobykit/mobykit/assembler/initrd"
)

// BenchmarkBuild measures builds of a spec with ~24 MB of files from the
// in-memory registry (bench/assembler.sh runs the full ~100 MB scenario
// through the CLI and a real registry). MB/s is of uncompressed initramfs.
func BenchmarkBuild(b *testing.B) {
	host := memRegistry(b)
	rng := rand.New(rand.NewSource(1))
	var spec strings.Builder
	fmt.Fprintf(&spec, "services:\n")
	for i := 0; i < 4; i++ {
		var files []tf
		for j := 0; j < 600; j++ {
			data := make([]byte, 10000)
			for k := range data {
				data[k] = byte('a' + rng.Intn(8))
			}
			files = append(files, tf{name: fmt.Sprintf("usr/d%d/f%d", j%10, j), data: string(data)})
		}
		push(b, fmt.Sprintf("%s/b%d:1", host, i), testImage(b, nil, append([]tf{{name: "usr/", typ: tar.TypeDir}}, files...)))
		fmt.Fprintf(&spec, "  - name: s%d\n    image: %s/b%d:1\n", i, host, i)
	}
	dir := b.TempDir()
	specFile := writeSpec(b, dir, "b.yml", spec.String()+"files:\n  - path: etc/motd\n    contents: \"0\"\n")
	for _, comp := range []initrd.Compression{initrd.Gzip, initrd.Zstd, initrd.Lz4} {
		run := func(b *testing.B, cache string, before func(i int)) {
			var size int64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if before != nil {
					before(i)
				}
				b.StartTimer()
				res, err := BuildFiles(context.Background(), []string{specFile}, Options{Name: "b", OutputDir: filepath.Join(dir, "out"), CacheDir: cache, Compression: comp})
				if err != nil {
					b.Fatal(err)
				}
				size = res.UncompressedSize
			}
			b.SetBytes(size)
		}
		b.Run("cold-"+string(comp), func(b *testing.B) {
			cache := filepath.Join(dir, "cold-"+string(comp))
			run(b, cache, func(int) { os.RemoveAll(cache) })
		})
		cache := filepath.Join(dir, "warm-"+string(comp))
		b.Run("warm-"+string(comp), func(b *testing.B) {
			run(b, cache, func(int) { os.RemoveAll(filepath.Join(cache, "segments")) })
		})
		b.Run("rebuild-"+string(comp), func(b *testing.B) { run(b, cache, nil) })
		b.Run("incremental-"+string(comp), func(b *testing.B) {
			run(b, cache, func(i int) {
				writeSpec(b, dir, "b.yml", spec.String()+fmt.Sprintf("files:\n  - path: etc/motd\n    contents: \"%d\"\n", i+1))
			})
		})
	}
}
