package examples

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/mobykit/mobykit/assembler"
	"github.com/mobykit/mobykit/assembler/initrd"
	"github.com/mobykit/mobykit/internal/testenv"
	"github.com/mobykit/mobykit/vm/vmtest"
)

// bootTime boots prefix and returns how long after QEMU's start a console line matched re.
func bootTime(b *testing.B, prefix string, re *regexp.Regexp) time.Duration {
	v := boot(b, prefix)
	_, at, err := v.con.expect(0, re, 120*time.Second)
	if err != nil {
		b.Fatalf("%v\nconsole:\n%s", err, v.con)
	}
	if testing.Verbose() {
		b.Logf("console:\n%s", v.con)
	}
	v.cancel()
	<-v.exited
	return at
}

// BenchmarkBootBaseline is the yardstick of the boot target: a busybox /init that prints a
// line (and powers off), on the same kernel and QEMU settings as BenchmarkBootHello.
func BenchmarkBootBaseline(b *testing.B) {
	testenv.RequireQEMU(b)
	dir := b.TempDir()
	r := vmtest.NewBusybox(b, "echo BASELINE-READY\npoweroff -f\n")
	r.Write(b, filepath.Join(dir, "base-initrd.img"))
	link(b, testenv.Kernel(b), filepath.Join(dir, "base-kernel"))
	if err := os.WriteFile(filepath.Join(dir, "base-cmdline"), []byte("console=ttyS0"), 0o644); err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		total += bootTime(b, filepath.Join(dir, "base"), regexp.MustCompile(`BASELINE-READY`))
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s-to-line")
}

// BenchmarkBootHello builds examples/hello.yml and reports the time from QEMU's start to the
// first service running (init prints "service NAME started" once runc has started it) and to
// every service of hello.yml running, and the initramfs size, for gzip (the default), zstd, lz4
// and no compression (the kernel then copies instead of inflating: the figure shows what the
// decompression costs under emulation).
func BenchmarkBootHello(b *testing.B) {
	testenv.RequireQEMU(b)
	cacheDir := buildImages(b)
	services := []string{"flaky", "getty", "hello"} // hello.yml's services
	for _, comp := range []initrd.Compression{initrd.Gzip, initrd.Zstd, initrd.Lz4, initrd.None} {
		b.Run(string(comp), func(b *testing.B) {
			out := b.TempDir()
			res, err := assembler.BuildFiles(context.Background(), []string{"hello.yml"}, assembler.Options{
				Name: "hello", OutputDir: out, CacheDir: cacheDir, Compression: comp,
			})
			if err != nil {
				b.Fatal(err)
			}
			var first, all time.Duration
			for i := 0; i < b.N; i++ {
				v := boot(b, filepath.Join(out, "hello"))
				at := make([]time.Duration, len(services))
				// not anchored: a service's output (getty's prompt) may precede init's line
				for j, name := range services {
					_, at[j], err = v.con.expect(0, regexp.MustCompile(`mobykit init: service `+name+` started`), 120*time.Second)
					if err != nil {
						b.Fatalf("%v\nconsole:\n%s", err, v.con)
					}
				}
				if testing.Verbose() {
					b.Logf("console:\n%s", v.con)
				}
				v.cancel()
				<-v.exited
				first += slices.Min(at)
				all += slices.Max(at)
			}
			b.ReportMetric(first.Seconds()/float64(b.N), "s-to-first-service")
			b.ReportMetric(all.Seconds()/float64(b.N), "s-to-all-services")
			b.ReportMetric(float64(res.InitrdSize)/1e6, "MB-initramfs")
		})
	}
}

// link puts src at dst (a symlink), as a boot prefix wants PREFIX-kernel.
func link(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.Symlink(src, dst); err != nil {
		t.Fatal(err)
	}
}
