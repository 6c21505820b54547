package discovery

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/rpc"
)

func tempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "disc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func TestDirPrecedence(t *testing.T) {
	t.Setenv("HOME", "/home/u")
	t.Setenv("INFRAKIT_PLUGINS_DIR", "")
	t.Setenv("INFRAKIT_HOME", "")
	cases := []struct{ pluginsDir, home, want string }{
		{"/p", "/h", "/p"},
		{"", "/h", "/h/plugins"},
		{"", "", "/home/u/.infrakit/plugins"},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			t.Setenv("INFRAKIT_PLUGINS_DIR", c.pluginsDir)
			t.Setenv("INFRAKIT_HOME", c.home)
			got, err := Dir()
			if err != nil || got != c.want {
				t.Fatalf("Dir() = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

// bindStale leaves a socket file nobody listens on, as a killed process does.
func bindStale(t *testing.T, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
}

// deadPID returns the PID of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	return cmd.Process.Pid
}

func TestListFindLookup(t *testing.T) {
	dir := tempDir(t)
	bindStale(t, filepath.Join(dir, "file"))
	bindStale(t, filepath.Join(dir, ".tmpsock"))
	os.WriteFile(filepath.Join(dir, "file.pid"), []byte("123\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "remote.listen"), []byte("tcp://127.0.0.1:24864\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600)
	os.Mkdir(filepath.Join(dir, "subdir"), 0o700)

	ps, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Plugin{
		{Name: "file", Address: filepath.Join(dir, "file"), PID: 123},
		{Name: "remote", Address: "tcp://127.0.0.1:24864"},
	}
	if len(ps) != len(want) || ps[0] != want[0] || ps[1] != want[1] {
		t.Fatalf("List = %+v, want %+v", ps, want)
	}
	if !ps[1].TCP() || ps[0].TCP() {
		t.Error("TCP() wrong")
	}
	cases := []struct {
		name           spi.PluginName
		addr, sub, err string
	}{
		{"file", filepath.Join(dir, "file"), "", ""},
		{"file/compute", filepath.Join(dir, "file"), "compute", ""},
		{"file/a/b", filepath.Join(dir, "file"), "a/b", ""},
		{"remote/x", "tcp://127.0.0.1:24864", "x", ""},
		{"nosuchflavor", "", "", "plugin not found:nosuchflavor"},
		{"notes.txt", "", "", "plugin not found:notes.txt"},
		{"../etc", "", "", "plugin not found:../etc"},
		{"", "", "", "plugin not found:"},
	}
	for _, c := range cases {
		t.Run(string(c.name), func(t *testing.T) {
			addr, sub, err := Lookup(dir, c.name)
			if c.err != "" {
				var nf *NotFoundError
				if err == nil || err.Error() != c.err || !errors.As(err, &nf) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || addr != c.addr || sub != c.sub {
				t.Fatalf("Lookup = %q %q %v", addr, sub, err)
			}
		})
	}
	if ps, err := List(filepath.Join(dir, "absent")); err != nil || len(ps) != 0 {
		t.Fatalf("missing dir: %v %v", ps, err)
	}
}

func TestTakeCleansStaleAndNeverStealsLive(t *testing.T) {
	dir := tempDir(t)
	me := os.Getpid()

	// Stale: pid file of a dead process and a socket nobody answers on.
	bindStale(t, filepath.Join(dir, "p"))
	os.WriteFile(filepath.Join(dir, "p.pid"), []byte(strconv.Itoa(deadPID(t))), 0o600)
	c, err := Take(dir, "p", me)
	if err != nil {
		t.Fatalf("stale files not cleaned: %v", err)
	}
	if _, err := os.Stat(c.Socket); !os.IsNotExist(err) {
		t.Fatalf("stale socket still there: %v", err)
	}
	if pid, err := ReadPID(dir, "p"); err != nil || pid != me {
		t.Fatalf("pid file: %d %v", pid, err)
	}
	fi, _ := os.Stat(c.PIDFile)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("pid file mode %o", fi.Mode().Perm())
	}
	srv, err := rpc.Start(c.Socket, rpc.Flavor(nil))
	if err != nil {
		t.Fatal(err)
	}

	// Live by pid (another live process: our parent).
	os.WriteFile(filepath.Join(dir, "q.pid"), []byte(strconv.Itoa(os.Getppid())), 0o600)
	if _, err := Take(dir, "q", me); !errors.Is(err, ErrRunning) {
		t.Fatalf("live pid: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "q.pid")); err != nil {
		t.Fatal("live pid file removed")
	}
	// Live by socket, even without pid file.
	os.Remove(c.PIDFile)
	if _, err := Take(dir, "p", me+1); !errors.Is(err, ErrRunning) {
		t.Fatalf("live socket: %v", err)
	}
	if !rpc.Alive(c.Socket) {
		t.Fatal("live socket was disturbed")
	}
	srv.Close()
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
	if ps, _ := List(dir); len(ps) != 0 {
		t.Fatalf("after release: %+v", ps)
	}
	if _, err := Take(dir, "../x", me); err == nil {
		t.Fatal("a name with a path accepted")
	}
}

func TestFindReachesServer(t *testing.T) {
	dir := tempDir(t)
	c, err := Take(dir, "vanilla", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	srv, err := rpc.Start(c.Socket, rpc.Flavor(okFlavor{}))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr, sub, err := Lookup(dir, "vanilla")
	if err != nil {
		t.Fatal(err)
	}
	if err := rpc.NewFlavorClient(addr, sub).Validate(context.Background(), nil, spi.Allocation{Size: 1}); err != nil {
		t.Fatal(err)
	}
}

type okFlavor struct{}

func (okFlavor) Validate(context.Context, spi.Any, spi.Allocation) error { return nil }
func (okFlavor) Prepare(_ context.Context, _ spi.Any, s spi.Spec, _ spi.Allocation, _ spi.Index) (spi.Spec, error) {
	return s, nil
}
func (okFlavor) Healthy(context.Context, spi.Any, spi.Description) (spi.Health, error) {
	return spi.Healthy, nil
}
func (okFlavor) Drain(context.Context, spi.Any, spi.Description) error { return nil }

// TestReusedPIDIsStale: a pid file older than the live process it names was left by a dead
// plugin whose PID has been reused; it must not block a start.
func TestReusedPIDIsStale(t *testing.T) {
	dir := tempDir(t)
	path := filepath.Join(dir, "r.pid")
	os.WriteFile(path, []byte(strconv.Itoa(os.Getppid())), 0o600)
	if _, live, err := Live(dir, "r"); err != nil || !live {
		t.Fatalf("fresh pid file of a live process: live=%v %v", live, err)
	}
	old := time.Now().Add(-24 * 365 * time.Hour)
	os.Chtimes(path, old, old)
	if _, ok := processStart(os.Getppid()); !ok {
		t.Skip("no /proc start times here")
	}
	if _, live, err := Live(dir, "r"); err != nil || live {
		t.Fatalf("pid file older than its process counted live: %v %v", live, err)
	}
	if _, err := Take(dir, "r", os.Getpid()); err != nil {
		t.Fatalf("reused pid blocked the claim: %v", err)
	}
}

// TestTakeHeldNamesHolder: a second claim while the first holds the lock fails with a
// *HeldError naming the plugin and the holder's PID, and leaves every file of the holder.
func TestTakeHeldNamesHolder(t *testing.T) {
	dir := tempDir(t)
	c, err := Take(dir, "g", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	srv, err := rpc.Start(c.Socket, rpc.Flavor(okFlavor{}))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	_, err = Take(dir, "g", 4242)
	var held *HeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrRunning) || held.PID != os.Getpid() {
		t.Fatalf("second claim: %v", err)
	}
	want := "plugin g is already running (pid " + strconv.Itoa(os.Getpid()) + " holds " + filepath.Join(dir, "g.lock") + ")"
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
	if pid, err := ReadPID(dir, "g"); err != nil || pid != os.Getpid() || !rpc.Alive(c.Socket) {
		t.Fatalf("holder's files disturbed: pid %d %v, alive %v", pid, err, rpc.Alive(c.Socket))
	}
}

// TestLockFileSymlinkRefused: a NAME.lock planted as a symlink is not followed (the file it
// points to is neither created, truncated nor locked).
func TestLockFileSymlinkRefused(t *testing.T) {
	dir := tempDir(t)
	target := filepath.Join(dir, "precious")
	os.WriteFile(target, []byte("keep me"), 0o600)
	os.Symlink(target, filepath.Join(dir, "s.lock"))
	if _, err := Take(dir, "s", os.Getpid()); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("symlinked lock file accepted: %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep me" {
		t.Fatalf("symlink target changed: %q", b)
	}
	os.Symlink(filepath.Join(dir, "absent"), filepath.Join(dir, "t.lock"))
	if _, err := Take(dir, "t", os.Getpid()); err == nil {
		t.Fatal("dangling symlinked lock file accepted")
	}
	if _, err := os.Lstat(filepath.Join(dir, "absent")); !os.IsNotExist(err) {
		t.Fatalf("dangling symlink's target created: %v", err)
	}
}

// TestPIDFileSymlinkNotRead: a pid file that is a symlink (to a file naming a live process) is
// not a pid file: it does not make the name look live.
func TestPIDFileSymlinkNotRead(t *testing.T) {
	dir := tempDir(t)
	other := filepath.Join(dir, "other")
	os.WriteFile(other, []byte(strconv.Itoa(os.Getppid())), 0o600)
	os.Symlink(other, filepath.Join(dir, "l.pid"))
	if _, err := ReadPID(dir, "l"); err == nil {
		t.Fatal("symlinked pid file read")
	}
	if _, _, err := Live(dir, "l"); err == nil {
		t.Fatal("symlinked pid file counted")
	}
}
