// Command assembler benchmarks `mobykit build` on a spec whose images hold
// about 100 MB of files (kernel, init, four services; text-like and binary
// files, about 130 MB of initramfs, like the LinuxKit comparison in issue 2).
//
// It starts Debian's docker-registry on loopback (or, without it, an
// in-memory registry), pushes generated images, then runs the mobykit
// binary given with -mobykit for each scenario and prints wall seconds,
// MB/s (uncompressed initramfs per second), the initramfs size and the
// peak RSS of the build process:
//
//	cold         empty cache: pull from the registry, unpack, compress
//	warm         images cached, compressed parts dropped: unpack + compress
//	rebuild      everything cached (the usual warm rebuild)
//	incremental  one file of the spec's files: changed
//	service      one service image changed (a new tag with one new layer)
//
// each with gzip, zstd and lz4. Then, with the gzip cache warm, every output format (-formats)
// next to kernel+initrd: seconds, CPU seconds, peak RSS and the size of what it wrote. A
// stand-in bootloader image (random bytes of ISOLINUX's sizes) serves the BIOS formats: the
// bytes are never booted here, only written.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/pgzip"
)

var (
	mobykit = flag.String("mobykit", "mobykit", "mobykit binary to run")
	scale   = flag.Float64("scale", 1, "multiply the amount of data")
	keep    = flag.Bool("keep", false, "keep the work directory")
	formats = flag.String("formats", "kernel+initrd,tar,tar-kernel-initrd,kernel+squashfs,kernel+erofs,kernel+iso,iso-bios,raw-bios,qcow2-bios,vmdk,vhd,dynamic-vhd,aws,gcp,docker", "formats to time on a warm cache (comma-separated; empty: none)")
	only    = flag.Bool("formats-only", false, "time only the formats (gzip), not the compression scenarios")
)

func main() {
	flag.Parse()
	work, err := os.MkdirTemp("", "mobykit-bench-")
	check(err)
	if !*keep {
		defer os.RemoveAll(work)
	}
	host, stop := startRegistry(work)
	defer stop()

	rng := rand.New(rand.NewSource(1))
	vocab := makeVocab(rng)
	mb := func(n float64) int { return int(n * *scale * 1e6) }
	var total int
	pushImg := func(ref string, layers ...[]file) {
		img := empty.Image
		for _, l := range layers {
			b := tarOf(l)
			total += len(b)
			layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
			check(err)
			img, err = mutate.AppendLayers(img, layer)
			check(err)
		}
		cf, err := img.ConfigFile()
		check(err)
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", "amd64"
		cf.Config.Cmd = []string{"/bin/sh"}
		img, err = mutate.ConfigFile(img, cf)
		check(err)
		r, err := name.ParseReference(ref)
		check(err)
		check(remote.Write(r, img))
	}
	t0 := time.Now()
	modules := tarOf(files(rng, vocab, "lib/modules/6.1.0/kernel", mb(12), 0.2))
	pushImg(host+"/bench/kernel:1", []file{{name: "kernel", data: binary(rng, mb(8), 0.9)}, {name: "kernel.tar", data: modules}})
	pushImg(host+"/bench/init:1", files(rng, vocab, "", mb(12), 0.3))
	var base []file
	for i := 0; i < 4; i++ {
		base = files(rng, vocab, "usr", mb(13), 0.35)
		pushImg(fmt.Sprintf("%s/bench/svc%d:1", host, i), base, files(rng, vocab, "opt/app", mb(6), 0.3))
	}
	// the changed service: the same base layer, a new top layer
	pushImg(host+"/bench/svc3:2", base, files(rng, vocab, "opt/app", mb(6), 0.3))
	log.Printf("pushed %.0f MB of layers to %s in %.1fs", float64(total)/1e6, host, time.Since(t0).Seconds())

	spec := func(motd, svc3 string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "kernel:\n  image: %s/bench/kernel:1\n  cmdline: console=ttyS0\ninit:\n  - %s/bench/init:1\nservices:\n", host, host)
		for i := 0; i < 4; i++ {
			tag := "1"
			if i == 3 {
				tag = svc3
			}
			fmt.Fprintf(&b, "  - name: svc%d\n    image: %s/bench/svc%d:%s\n", i, host, i, tag)
		}
		fmt.Fprintf(&b, "files:\n  - path: etc/motd\n    contents: %q\n", motd)
		return b.String()
	}
	write := func(p, s string) { check(os.WriteFile(p, []byte(s), 0o644)) }
	specA := filepath.Join(work, "bench.yml")
	fmt.Printf("%-22s %8s %8s %9s %10s %10s %9s\n", "scenario", "seconds", "cpu s", "MB/s", "initrd MB", "cpio MB", "RSS MB")
	pushImg(host+"/bench/bootloader:1", []file{
		{name: "isolinux.bin", data: binary(rng, 40<<10, 1)},
		{name: "isohdpfx.bin", data: binary(rng, 432, 1)},
		{name: "ldlinux.c32", data: binary(rng, 120<<10, 1)},
	})
	comps := []string{"gzip", "zstd", "lz4"}
	if *only {
		comps = nil
		write(specA, spec("hello", "1"))
		measure("cold gzip", filepath.Join(work, "cache-gzip"), filepath.Join(work, "out-gzip"), "gzip", specA)
	}
	for _, comp := range comps {
		cache := filepath.Join(work, "cache-"+comp)
		out := filepath.Join(work, "out-"+comp)
		run := func(label string) {
			write(specA, spec("hello", "1"))
			measure(label+" "+comp, cache, out, comp, specA)
		}
		run("cold")
		check(os.RemoveAll(filepath.Join(cache, "segments")))
		run("warm")
		run("rebuild")
		write(specA, spec("changed", "1"))
		measure("incremental "+comp, cache, out, comp, specA)
		write(specA, spec("changed", "2"))
		measure("service "+comp, cache, out, comp, specA)
	}
	if *formats != "" {
		write(specA, spec("hello", "1"))
		cache := filepath.Join(work, "cache-gzip")
		measure("warm gzip", cache, filepath.Join(work, "out-gzip"), "gzip", specA) // segments reused from here on
		fmt.Printf("\n%-22s %8s %8s %9s %10s\n", "format (warm, gzip)", "seconds", "cpu s", "RSS MB", "output MB")
		for _, f := range strings.Split(*formats, ",") {
			measureFormat(f, cache, filepath.Join(work, "fmt"), host, specA)
		}
	}
}

// measureFormat builds spec as format f with everything cached and prints the time, CPU time,
// peak RSS and bytes written (allocated: disk images are sparse where they hold nothing).
func measureFormat(f, cache, out, host, spec string) {
	check(os.RemoveAll(out))
	cmd := exec.Command(*mobykit, "build", "--cache", cache, "--dir", out, "--name", "bench", "--format", f,
		"--bootloader", host+"/bench/bootloader:1", spec)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t := time.Now()
	if err := cmd.Run(); err != nil {
		// a row, not log.Fatal: the registry must still be stopped, the other formats timed
		fmt.Printf("%-22s failed: %v: %s\n", f, err, strings.TrimSpace(stderr.String()))
		return
	}
	d := time.Since(t).Seconds()
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	var rss float64
	if i := strings.Index(stderr.String(), "peak RSS "); i >= 0 {
		fmt.Sscanf(stderr.String()[i+len("peak RSS "):], "%f", &rss)
	}
	var size int64
	ents, err := os.ReadDir(out)
	check(err)
	for _, e := range ents {
		fi, err := e.Info()
		check(err)
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			size += st.Blocks * 512
		}
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	fmt.Printf("%-22s %8.2f %8.2f %9.0f %10.1f\n", f, d, cpu, rss, float64(size)/1e6)
}

func measure(label, cache, out, comp, spec string) {
	cmd := exec.Command(*mobykit, "build", "--cache", cache, "--dir", out, "--name", "bench", "--compress", comp, spec)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t := time.Now()
	if err := cmd.Run(); err != nil {
		log.Fatalf("%s: %v\n%s", label, err, stderr.String())
	}
	d := time.Since(t).Seconds()
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	// The rusage peak of a child started by this (large) process includes
	// this process's memory; mobykit prints its own (VmHWM).
	var rss float64
	if i := strings.Index(stderr.String(), "peak RSS "); i >= 0 {
		fmt.Sscanf(stderr.String()[i+len("peak RSS "):], "%f", &rss)
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	st, err := os.Stat(filepath.Join(out, "bench-initrd.img"))
	check(err)
	var cpio float64
	// "built NAME in 1.23s: initramfs 49.0 MB (130.2 MB uncompressed), ..."
	if i := strings.Index(stderr.String(), "("); i >= 0 {
		fmt.Sscanf(stderr.String()[i+1:], "%f", &cpio)
	}
	fmt.Printf("%-22s %8.2f %8.2f %9.1f %10.1f %10.1f %9.0f\n", label, d, cpu, cpio/d, float64(st.Size())/1e6, cpio, rss)
	if strings.HasPrefix(label, "cold gzip") {
		fmt.Printf("  (the same cpio as one pgzip stream at the default level, as LinuxKit writes it: %.1f MB)\n", oneStream(filepath.Join(out, "bench-initrd.img"))/1e6)
	}
}

// oneStream returns the size of the initramfs's cpio data compressed as a
// single pgzip stream with default settings, the way LinuxKit compresses.
func oneStream(p string) float64 {
	f, err := os.Open(p)
	check(err)
	defer f.Close()
	zr, err := pgzip.NewReader(f)
	check(err)
	var n countWriter
	zw := pgzip.NewWriter(&n)
	_, err = io.Copy(zw, zr)
	check(err)
	check(zw.Close())
	return float64(n)
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

type file struct {
	name string
	data []byte
}

func tarOf(fs []file) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range fs {
		parts := strings.Split(f.name, "/")
		for i := 1; i < len(parts); i++ {
			d := strings.Join(parts[:i], "/") + "/"
			if !dirs[d] {
				dirs[d] = true
				check(tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755}))
			}
		}
		check(tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg}))
		_, err := tw.Write(f.data)
		check(err)
	}
	check(tw.Close())
	return buf.Bytes()
}

func makeVocab(rng *rand.Rand) []string {
	v := make([]string, 4000)
	for i := range v {
		n := 2 + rng.Intn(9)
		b := make([]byte, n)
		for j := range b {
			b[j] = byte('a' + rng.Intn(26))
		}
		v[i] = string(b)
	}
	return v
}

// files makes files totalling size bytes under dir: a share binFrac of
// them binary (mostly incompressible), the rest text.
func files(rng *rand.Rand, vocab []string, dir string, size int, binFrac float64) []file {
	var out []file
	for i := 0; size > 0; i++ {
		n := int(200 * (1 + rng.ExpFloat64()*40)) // mean ~8 KB, long tail
		if rng.Intn(50) == 0 {
			n = 200_000 + rng.Intn(1_500_000)
		}
		if n > size {
			n = size
		}
		size -= n
		var data []byte
		if rng.Float64() < binFrac {
			data = binary(rng, n, 0.6)
		} else {
			data = text(rng, vocab, n)
		}
		out = append(out, file{name: filepath.Join(dir, fmt.Sprintf("d%02d/f%05d", i%37, i)), data: data})
	}
	return out
}

func text(rng *rand.Rand, vocab []string, n int) []byte {
	b := make([]byte, 0, n+16)
	for len(b) < n {
		b = append(b, vocab[int(rng.ExpFloat64()*300)%len(vocab)]...)
		if rng.Intn(12) == 0 {
			b = append(b, '\n')
		} else {
			b = append(b, ' ')
		}
	}
	return b[:n]
}

// binary returns n bytes, a share random of them random and the rest runs.
func binary(rng *rand.Rand, n int, random float64) []byte {
	b := make([]byte, n)
	for i := 0; i < n; {
		run := 64 + rng.Intn(4096)
		if i+run > n {
			run = n - i
		}
		if rng.Float64() < random {
			rng.Read(b[i : i+run])
		} else {
			c := byte(rng.Intn(4))
			for j := i; j < i+run; j++ {
				b[j] = c
			}
		}
		i += run
	}
	return b
}

func startRegistry(work string) (string, func()) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		log.Printf("docker-registry not installed: using the in-memory registry")
		s := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		u, _ := url.Parse(s.URL)
		return u.Host, s.Close
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	addr := l.Addr().String()
	l.Close()
	cfg := filepath.Join(work, "registry.yml")
	check(os.WriteFile(cfg, []byte(fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(work, "registry"), addr)), 0o644))
	cmd := exec.Command(bin, "serve", cfg)
	check(cmd.Start())
	for i := 0; i < 100; i++ {
		if r, err := http.Get("http://" + addr + "/v2/"); err == nil {
			r.Body.Close()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return addr, func() { cmd.Process.Kill(); cmd.Wait() }
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

var _ = v1.Hash{}
