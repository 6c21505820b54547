package examples

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mobykit/mobykit/assembler"
	"github.com/mobykit/mobykit/assembler/image"
	"github.com/mobykit/mobykit/assembler/initrd"
	"github.com/mobykit/mobykit/internal/testenv"
	"github.com/mobykit/mobykit/pkgbuild"
	mvm "github.com/mobykit/mobykit/vm"
	"github.com/mobykit/mobykit/vm/qemu"
)

var images struct {
	sync.Mutex
	dir string
}

// buildImages builds every recipe under ../images into a cache kept between test runs (images
// are tagged by their inputs, so a stale one is never reused) and returns the cache folder.
// It builds once per test binary.
func buildImages(t testing.TB) string {
	t.Helper()
	images.Lock()
	defer images.Unlock()
	if images.dir != "" {
		return images.dir
	}
	testenv.RequireTool(t, "apt-get", "apt")
	testenv.RequireTool(t, "gcc", "gcc libc6-dev")
	cacheDir := filepath.Join(testenv.CacheDir(), "oci")
	c, err := image.OpenCache(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	b := &pkgbuild.Builder{Cache: c, WorkDir: filepath.Join(testenv.CacheDir(), "pkgbuild"), Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
	dirs, err := filepath.Glob("../images/*/" + pkgbuild.RecipeFile)
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no recipes under ../images: %v", err)
	}
	for _, f := range dirs {
		r, err := pkgbuild.LoadRecipe(filepath.Dir(f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Build(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	images.dir = cacheDir
	return cacheDir
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// console collects a VM's serial output line by line, with the time each line arrived.
type console struct {
	mu    sync.Mutex
	lines []consoleLine
	more  chan struct{}
	done  chan struct{}
	start time.Time
}

type consoleLine struct {
	at   time.Duration
	text string
}

func newConsole(f *os.File, start time.Time) *console {
	c := &console{more: make(chan struct{}, 1), done: make(chan struct{}), start: start}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			c.mu.Lock()
			c.lines = append(c.lines, consoleLine{time.Since(c.start), strings.TrimRight(sc.Text(), "\r")})
			c.mu.Unlock()
			select {
			case c.more <- struct{}{}:
			default:
			}
		}
	}()
	return c
}

// expect waits until a line after index from matches re, and returns its index and time.
func (c *console) expect(from int, re *regexp.Regexp, timeout time.Duration) (int, time.Duration, error) {
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		for i := from; i < len(c.lines); i++ {
			if re.MatchString(c.lines[i].text) {
				at := c.lines[i].at
				c.mu.Unlock()
				return i, at, nil
			}
		}
		c.mu.Unlock()
		select {
		case <-c.more:
		case <-c.done:
			c.mu.Lock()
			n := len(c.lines)
			c.mu.Unlock()
			if n == from || !re.MatchString(c.lines[n-1].text) {
				return 0, 0, fmt.Errorf("console ended before a line matching %q", re)
			}
		case <-deadline:
			return 0, 0, fmt.Errorf("no line matching %q within %s", re, timeout)
		}
	}
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, l := range c.lines {
		fmt.Fprintf(&b, "%7.2fs %s\n", l.at.Seconds(), l.text)
	}
	return b.String()
}

// vm is a booted QEMU with its console.
type vm struct {
	con    *console
	cancel context.CancelFunc
	exited chan struct{} // closed when qemu.Run returned, with its error in err
	err    error
}

// boot starts prefix-kernel/-initrd.img under TCG with a user-mode NIC.
func boot(t testing.TB, prefix string, publish ...qemu.Forward) *vm {
	t.Helper()
	return bootWithDisks(t, prefix, nil, publish...)
}

// bootWithDisks is boot with disks attached (virtio: /dev/vda, /dev/vdb, ...).
func bootWithDisks(t testing.TB, prefix string, disks []mvm.DiskSpec, publish ...qemu.Forward) *vm {
	t.Helper()
	testenv.RequireQEMU(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	v := &vm{cancel: cancel, exited: make(chan struct{})}
	start := time.Now()
	v.con = newConsole(r, start)
	go func() {
		err := qemu.Run(ctx, qemu.RunOptions{
			Path: prefix, Accel: "tcg", CPUs: 1, MemoryMB: 1024,
			StateDir: prefix + "-state", Stdin: devnull, Stdout: w, Stderr: w, Publish: publish, Disks: disks,
			Grace: 60 * time.Second,
		})
		w.Close()
		v.err = err
		close(v.exited)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-v.exited:
		case <-time.After(90 * time.Second):
		}
		devnull.Close()
	})
	return v
}

// TestHelloBoots is the end-to-end check of the system images: build them, build
// examples/hello.yml, boot it in QEMU (TCG) and watch the console for the boot sequence, a
// service restart, and a clean power-off after an ACPI shutdown request.
func TestHelloBoots(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	testenv.RequireQEMU(t)
	cacheDir := buildImages(t)
	out := t.TempDir()
	res, err := assembler.BuildFiles(context.Background(), []string{"hello.yml"}, assembler.Options{
		Name: "hello", OutputDir: out, CacheDir: cacheDir,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("hello.yml: initramfs %.1f MB (%.1f MB uncompressed)", float64(res.InitrdSize)/1e6, float64(res.UncompressedSize)/1e6)
	if res.InitrdSize > 15e6 {
		t.Errorf("hello.yml initramfs is %d bytes, want under 15 MB", res.InitrdSize)
	}

	checkUnpackable(t, filepath.Join(out, "hello-initrd.img"))

	v := boot(t, filepath.Join(out, "hello"))
	defer func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("console:\n%s", v.con)
		}
	}()
	steps := []struct {
		what string
		re   string
	}{
		{"init started", `mobykit init: init started`},
		{"onboot marker (and the hostname init set from the NIC's address)", `HELLO-ONBOOT: onboot container ran .*host mobykit-[0-9a-f]{12}\)`},
		{"onboot done", `mobykit init: onboot 002-hello done`},
		{"service marker", `hello: HELLO-SERVICE: service running`},
		{"flaky service ran", `flaky: HELLO-FLAKY`},
		{"flaky service exit noticed", `mobykit init: service flaky exited: exit status 3; restarting`},
		{"flaky service restarted", `flaky: HELLO-FLAKY`},
	}
	at := 0
	for _, s := range steps {
		i, when, err := v.con.expect(at, regexp.MustCompile(s.re), 90*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		t.Logf("%6.2fs %s", when.Seconds(), s.what)
		at = i + 1
	}
	// ACPI power button, as `mobykit run` sends it on ^C: QMP system_powerdown.
	v.cancel()
	for _, s := range []struct{ what, re string }{
		{"shutdown requested", `mobykit init: power off requested \(ACPI power button\)`},
		{"service stopped", `mobykit init: service hello stopped`},
		{"onshutdown marker", `HELLO-ONSHUTDOWN: onshutdown container ran`},
		{"power off", `mobykit init: power off now`},
	} {
		i, when, err := v.con.expect(at, regexp.MustCompile(s.re), 60*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		t.Logf("%6.2fs %s", when.Seconds(), s.what)
		at = i + 1
	}
	select {
	case <-v.exited:
		if v.err != nil && !errors.Is(v.err, context.Canceled) {
			t.Errorf("qemu: %v", v.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("QEMU still running 30s after the guest said it powers off")
	}
	if _, _, err := v.con.expect(0, regexp.MustCompile(`(?i)kernel panic|failed to start|onboot .* failed`), 0); err == nil {
		t.Errorf("console shows a failure")
	}
}

// checkUnpackable reports entries of an initramfs whose parent folder no earlier entry created:
// the kernel's unpacker does not create missing parents, so such entries are silently lost.
func checkUnpackable(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dr, err := initrd.Decompress(f)
	if err != nil {
		t.Fatal(err)
	}
	defer dr.Close()
	r := initrd.NewReader(dr)
	dirs := map[string]bool{".": true}
	var lost []string
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if !dirs[filepath.Dir(h.Name)] {
			lost = append(lost, h.Name)
		}
		if h.Mode&0o170000 == 0o040000 {
			dirs[h.Name] = true
		}
	}
	if len(lost) > 0 {
		if len(lost) > 5 {
			lost = append(lost[:5], "...")
		}
		t.Errorf("%s: the kernel will drop entries written before their parent folder (an assembler bug): %s", path, strings.Join(lost, ", "))
	}
}
