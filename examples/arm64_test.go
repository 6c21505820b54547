package examples

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/mobykit/mobykit/assembler"
	"github.com/mobykit/mobykit/assembler/image"
	"github.com/mobykit/mobykit/internal/testenv"
	"github.com/mobykit/mobykit/pkgbuild"
	"github.com/mobykit/mobykit/vm/qemu"
)

// helloImages are the recipes examples/hello.yml uses.
var helloImages = []string{"kernel", "init", "runc", "sysctl", "dhcpcd", "hello", "getty"}

// TestHelloBootsArm64 is issue 15's arm64 check: the images hello.yml uses are built for
// linux/amd64 and linux/arm64 as multi-platform images (the arm64 kernel from Debian's
// cloud-arm64 package, runc cross-compiled with cgo, busybox from the arm64 archive),
// hello.yml is assembled for arm64, and the result boots under qemu-system-aarch64 (virt
// machine, TCG, AAVMF UEFI firmware) to its service marker, then powers off through the
// ACPI power button. One boot, 512 MiB.
func TestHelloBootsArm64(t *testing.T) {
	if testing.Short() {
		t.Skip("builds arm64 images and boots a VM under TCG; skipped with -short")
	}
	testenv.RequireTool(t, "qemu-system-aarch64", "qemu-system-arm")
	testenv.RequireTool(t, "aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu libc6-dev-arm64-cross")
	code, _ := qemu.DefaultFirmware("aarch64")
	if _, err := os.Stat(code); err != nil {
		t.Skipf("AAVMF firmware absent (apt-get install qemu-efi-aarch64): %v", err)
	}
	cacheDir := buildImages(t) // amd64: what the other tests use; reused below
	c, err := image.OpenCache(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	b := &pkgbuild.Builder{Cache: c, WorkDir: filepath.Join(testenv.CacheDir(), "pkgbuild"),
		Arches: []string{"amd64", "arm64"}, Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
	ctx := context.Background()
	for _, n := range helloImages {
		r, err := pkgbuild.LoadRecipe(filepath.Join("..", "images", n))
		if err != nil {
			t.Fatal(err)
		}
		res, err := b.Build(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Platforms) != 2 || res.Platforms[0].Platform != "linux/amd64" || res.Platforms[1].Platform != "linux/arm64" {
			t.Fatalf("%s: platforms %+v, want linux/amd64 and linux/arm64", res.Ref, res.Platforms)
		}
		if !res.Platforms[0].Cached {
			t.Errorf("%s: the amd64 image buildImages made was built again", res.Ref)
		}
	}

	out := t.TempDir()
	start := time.Now()
	res, err := assembler.BuildFiles(ctx, []string{"hello.yml"}, assembler.Options{
		Name: "hello", OutputDir: out, CacheDir: cacheDir, Arch: "arm64",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("hello.yml for arm64 in %.1fs: initramfs %.1f MB", time.Since(start).Seconds(), float64(res.InitrdSize)/1e6)
	k, err := os.ReadFile(filepath.Join(out, "hello-kernel"))
	if err != nil {
		t.Fatal(err)
	}
	// arm64 boot protocol: "ARM\x64" at offset 56 of an Image
	if len(k) < 64 || !bytes.Equal(k[56:60], []byte("ARM\x64")) {
		t.Fatalf("hello-kernel is not an arm64 Image (%d bytes, % x...)", len(k), k[:min(len(k), 64)])
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	vctx, cancel := context.WithCancel(ctx)
	defer cancel()
	v := &vm{cancel: cancel, exited: make(chan struct{})}
	bootStart := time.Now()
	v.con = newConsole(r, bootStart)
	go func() {
		// hello-cmdline says console=ttyS0: Run maps it to the virt machine's ttyAMA0
		err := qemu.Run(vctx, qemu.RunOptions{
			Path: filepath.Join(out, "hello"), Arch: "arm64", UEFI: true, Accel: "tcg", CPUs: 1, MemoryMB: 512,
			StateDir: filepath.Join(out, "state"), Stdin: devnull, Stdout: w, Stderr: w, Grace: 60 * time.Second,
		})
		w.Close()
		v.err = err
		close(v.exited)
	}()
	defer func() {
		cancel()
		select {
		case <-v.exited:
		case <-time.After(90 * time.Second):
		}
		if t.Failed() || testing.Verbose() {
			t.Logf("console:\n%s", v.con)
		}
	}()
	at := 0
	for _, s := range []struct{ what, re string }{
		{"kernel booted on arm64", `Machine model: linux,dummy-virt|Booting Linux on physical CPU|Linux version .*cloud-arm64`},
		{"init started", `mobykit init: init started`},
		{"onboot marker", `HELLO-ONBOOT: onboot container ran`},
		{"service marker", `hello: HELLO-SERVICE: service running`},
	} {
		i, when, err := v.con.expect(at, regexp.MustCompile(s.re), 240*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		t.Logf("%6.2fs %s", when.Seconds(), s.what)
		at = i + 1
	}
	// ACPI power button (the firmware's ACPI tables make the kernel's button driver see it)
	cancel()
	if _, when, err := v.con.expect(at, regexp.MustCompile(`mobykit init: power off now`), 90*time.Second); err != nil {
		t.Fatalf("power off: %v", err)
	} else {
		t.Logf("%6.2fs power off", when.Seconds())
	}
	select {
	case <-v.exited:
		if v.err != nil {
			t.Errorf("qemu: %v", v.err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("QEMU still running 60s after the guest said it powers off")
	}
}
