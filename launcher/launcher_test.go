package launcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mobykit/mobykit/launcher/instancefile"
	"github.com/mobykit/mobykit/launcher/vanilla"
	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/discovery"
	"github.com/mobykit/mobykit/spi/rpc"
)

func init() {
	Register("test-file", func(ctx context.Context, o Options) ([]rpc.Plugin, error) {
		p, err := instancefile.New(o.StateDir)
		if err != nil {
			return nil, err
		}
		return []rpc.Plugin{rpc.Instance(p)}, nil
	}, DefaultName("file"), Describe("instances as files (test)"))
	Register("test-vanilla", func(ctx context.Context, o Options) ([]rpc.Plugin, error) {
		return []rpc.Plugin{rpc.Flavor(vanilla.Flavor{})}, nil
	})
	Register("test-broken", func(ctx context.Context, o Options) ([]rpc.Plugin, error) {
		return nil, errors.New("no backend configured")
	})
}

// When the test binary is re-executed as a detached plugin, it runs the plugin instead.
func TestMain(m *testing.M) {
	if kind := os.Getenv("LAUNCHER_TEST_GOPLUGIN"); kind != "" && servedByGoPlugin() {
		if err := serveGoPlugin(kind); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	if spec := os.Getenv("LAUNCHER_TEST_START"); spec != "" {
		os.Exit(startAndReport(spec))
	}
	if spec := os.Getenv("LAUNCHER_TEST_RUN"); spec != "" {
		s, err := ParseSpec(spec)
		if err == nil {
			ctx, stop := signalContext()
			err = Run(ctx, os.Getenv("INFRAKIT_PLUGINS_DIR"), []Spec{s})
			stop()
		}
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "launch")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	t.Setenv("INFRAKIT_HOME", d)
	return filepath.Join(d, "plugins")
}

func TestParseSpec(t *testing.T) {
	cases := []struct{ in, kind, name, err string }{
		{"test-file", "test-file", "file", ""},
		{"test-file:other", "test-file", "other", ""},
		{"test-vanilla", "test-vanilla", "test-vanilla", ""},
		{"nosuch", "", "", "unknown plugin kind"},
		{"test-file:../x", "", "", "invalid plugin name"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			s, err := ParseSpec(c.in)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || s.Kind != c.kind || s.Name != c.name {
				t.Fatalf("got %+v %v", s, err)
			}
		})
	}
	defer func() {
		if recover() == nil {
			t.Error("duplicate registration did not panic")
		}
	}()
	Register("test-file", func(context.Context, Options) ([]rpc.Plugin, error) { return nil, nil })
}

// TestRunForeground starts two plugins in this process, uses them through discovery, checks
// a second start of the same name is refused, and that stopping removes every file.
func TestRunForeground(t *testing.T) {
	dir := testDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, dir, []Spec{{Kind: "test-file", Name: "file"}, {Kind: "test-vanilla", Name: "vanilla"}})
	}()
	waitAlive(t, filepath.Join(dir, "file"))
	waitAlive(t, filepath.Join(dir, "vanilla"))
	for _, n := range []string{"file", "vanilla"} {
		fi, err := os.Stat(filepath.Join(dir, n))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("socket %s: %v %v", n, fi.Mode(), err)
		}
		if pid, err := discovery.ReadPID(dir, n); err != nil || pid != os.Getpid() {
			t.Errorf("pid file of %s: %d %v", n, pid, err)
		}
	}
	addr, sub, err := discovery.Lookup(dir, "file")
	if err != nil {
		t.Fatal(err)
	}
	c := rpc.NewInstanceClient(addr, sub)
	id, err := c.Provision(context.Background(), spi.Spec{Tags: map[string]string{"a": "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "state", "file", string(*id))); err != nil {
		t.Errorf("state not under $INFRAKIT_HOME/state/file: %v", err)
	}
	st, err := List(context.Background(), dir)
	if err != nil || len(st) != 2 {
		t.Fatalf("List: %+v %v", st, err)
	}
	if !st[0].Running || st[0].Name != "file" || len(st[0].Interfaces["Instance/0.6.1"]) != 1 || st[1].Interfaces["Flavor/0.1.1"][0] != "." {
		t.Errorf("List: %+v", st)
	}
	// A live plugin is never stolen.
	if _, err := Start(context.Background(), dir, Spec{Kind: "test-file", Name: "file"}); !errors.Is(err, discovery.ErrRunning) {
		t.Fatalf("second start: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files left after stop: %v", ents)
	}
}

func TestRunFailureStopsOthers(t *testing.T) {
	dir := testDir(t)
	err := Run(context.Background(), dir, []Spec{{Kind: "test-vanilla", Name: "vanilla"}, {Kind: "test-broken", Name: "broken"}})
	if err == nil || !strings.Contains(err.Error(), "no backend configured") {
		t.Fatalf("got %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files left: %v", ents)
	}
}

// TestDetachAndStop starts a plugin as a separate process (this test binary re-executed),
// talks to it, stops it by its pid file, and checks stale files of a killed one are handled.
func TestDetachAndStop(t *testing.T) {
	dir := testDir(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	opts := DetachOptions{Wait: 20 * time.Second, Command: func(s Spec) []string {
		return []string{"/usr/bin/env", "LAUNCHER_TEST_RUN=" + s.String(), exe, "-test.run=^$"}
	}, Env: []string{"LAUNCHER_TEST_SECRET=s3cret"}}
	if err := Detach(context.Background(), dir, []Spec{{Kind: "test-file", Name: "file"}}, opts); err != nil {
		t.Fatal(err)
	}
	pid, err := discovery.ReadPID(dir, "file")
	if err != nil || pid == os.Getpid() {
		t.Fatalf("pid %d %v", pid, err)
	}
	// Env reaches the detached process through its environment, not its command line, and
	// this process's own environment is left alone.
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Split(string(environ), "\x00")
	for _, want := range []string{"LAUNCHER_TEST_SECRET=s3cret", "INFRAKIT_PLUGINS_DIR=" + dir} {
		if !slices.Contains(env, want) {
			t.Errorf("detached plugin's environment lacks %s", want)
		}
	}
	if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(cmdline), "s3cret") {
		t.Errorf("DetachOptions.Env on the command line: %q", cmdline)
	}
	if v, ok := os.LookupEnv("LAUNCHER_TEST_SECRET"); ok {
		t.Errorf("Detach set LAUNCHER_TEST_SECRET=%s in the caller's environment", v)
	}
	if err := rpc.NewInstanceClient(filepath.Join(dir, "file"), "").Validate(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if err := Stop(dir, "file", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "file")); !os.IsNotExist(err) {
		t.Fatalf("socket left after stop: %v", err)
	}
	if err := Stop(dir, "file", time.Second); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("stop of a stopped plugin: %v", err)
	}

	// A detached plugin that fails reports its log.
	err = Detach(context.Background(), dir, []Spec{{Kind: "test-broken", Name: "broken"}}, opts)
	if err == nil || !strings.Contains(err.Error(), "no backend configured") {
		t.Fatalf("broken detach: %v", err)
	}

	// Killed with SIGKILL: socket and pid file stay; a new start cleans them up.
	if err := Detach(context.Background(), dir, []Spec{{Kind: "test-vanilla", Name: "vanilla"}}, opts); err != nil {
		t.Fatal(err)
	}
	vpid, _ := discovery.ReadPID(dir, "vanilla")
	p, _ := os.FindProcess(vpid)
	p.Kill()
	for i := 0; i < 100 && discovery.ProcessAlive(vpid) && !zombie(vpid); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(dir, "vanilla.pid")); err != nil {
		t.Fatalf("fixture: pid file gone after SIGKILL: %v", err)
	}
	if err := Detach(context.Background(), dir, []Spec{{Kind: "test-vanilla", Name: "vanilla"}}, opts); err != nil {
		t.Fatalf("restart after a kill: %v", err)
	}
	if err := Stop(dir, "vanilla", 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

func waitAlive(t *testing.T, sock string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if rpc.Alive(sock) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never answered", sock)
}

// TestRunExecutable loads this test binary as a go-plugin executable serving test-file and
// serves it on a socket, reached through discovery like any plugin.
func TestRunExecutable(t *testing.T) {
	dir := testDir(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- RunExecutable(ctx, dir, "ext", []string{"/usr/bin/env", "LAUNCHER_TEST_GOPLUGIN=test-file", exe, "-test.run=^$"})
	}()
	sock := filepath.Join(dir, "ext")
	for i := 0; i < 500 && !rpc.Alive(sock); i++ {
		select {
		case err := <-done:
			t.Fatalf("RunExecutable ended: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	addr, sub, err := discovery.Lookup(dir, "ext")
	if err != nil {
		t.Fatal(err)
	}
	c := rpc.NewInstanceClient(addr, sub)
	id, err := c.Provision(context.Background(), spi.Spec{Tags: map[string]string{"via": "goplugin"}})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := c.DescribeInstances(context.Background(), map[string]string{"via": "goplugin"}, false)
	if err != nil || len(ds) != 1 || ds[0].ID != *id {
		t.Fatalf("describe: %+v %v", ds, err)
	}
	if err := RunExecutable(context.Background(), dir, "ext", []string{"true"}); !errors.Is(err, discovery.ErrRunning) {
		t.Fatalf("second claim of ext: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files left: %v", ents)
	}
}

// TestRunTCP serves on loopback TCP with a .listen file, found through discovery.
func TestRunTCP(t *testing.T) {
	dir := testDir(t)
	r, err := Start(context.Background(), dir, Spec{Kind: "test-vanilla", Name: "tv", Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	addr, _, err := discovery.Lookup(dir, "tv")
	if err != nil || !strings.HasPrefix(addr, "tcp://127.0.0.1:") {
		t.Fatalf("lookup: %q %v", addr, err)
	}
	if err := rpc.NewFlavorClient(addr, "").Validate(context.Background(), nil, spi.Allocation{Size: 1}); err != nil {
		t.Fatal(err)
	}
	st, err := List(context.Background(), dir)
	if err != nil || len(st) != 1 || !st[0].Running || st[0].PID != os.Getpid() {
		t.Fatalf("list: %+v %v", st, err)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files left: %v", ents)
	}
}
