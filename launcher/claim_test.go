package launcher

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/discovery"
	"github.com/mobykit/mobykit/spi/rpc"
)

// startAndReport is this test binary re-executed with LAUNCHER_TEST_START=spec: it starts the
// plugin in INFRAKIT_PLUGINS_DIR, prints "READY <pid>" once it serves, and stops on SIGTERM.
// Before starting it prints "WAITING" and waits for its stdin to close, so that a test can
// release several processes at the same instant.
func startAndReport(spec string) int {
	s, err := ParseSpec(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signalContext()
	defer stop()
	fmt.Println("WAITING")
	_, _ = io.Copy(io.Discard, os.Stdin)
	r, err := Start(ctx, os.Getenv("INFRAKIT_PLUGINS_DIR"), s)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("READY %d\n", os.Getpid())
	<-ctx.Done()
	if err := r.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

type startOutcome struct {
	i              int
	waiting, ready bool
	err            error
}

// TestConcurrentStartOneWinner starts eight processes claiming one name at the same moment,
// fifty times over. Exactly one must serve; the others must fail naming the plugin and the
// winner's PID, without touching the winner's socket, which must still answer.
func TestConcurrentStartOneWinner(t *testing.T) {
	const procs, rounds = 8, 50
	dir := testDir(t)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "vanilla")
	for round := 0; round < rounds; round++ {
		cmds := make([]*exec.Cmd, procs)
		stdins := make([]io.WriteCloser, procs)
		stderrs := make([]*bytes.Buffer, procs)
		outcomes := make(chan startOutcome, 2*procs)
		for i := range cmds {
			cmd := exec.Command(exe, "-test.run=^$")
			cmd.Env = append(os.Environ(), "LAUNCHER_TEST_START=test-vanilla:vanilla", "INFRAKIT_PLUGINS_DIR="+dir)
			stderrs[i] = new(bytes.Buffer)
			cmd.Stderr = stderrs[i]
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if stdins[i], err = cmd.StdinPipe(); err != nil {
				t.Fatal(err)
			}
			cmds[i] = cmd
			go func(i int) {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					if sc.Text() == "WAITING" {
						outcomes <- startOutcome{i: i, waiting: true}
					}
					if strings.HasPrefix(sc.Text(), "READY ") {
						outcomes <- startOutcome{i: i, ready: true}
						return
					}
				}
				outcomes <- startOutcome{i: i, err: cmd.Wait()}
			}(i)
		}
		for _, cmd := range cmds {
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
		}
		winner := -1
		var losers []int
		timeout := time.After(2 * time.Minute) // a hang guard only
		for n, waiting := 0, 0; n < procs; {
			select {
			case o := <-outcomes:
				if o.waiting {
					// Release them all together once every one waits.
					if waiting++; waiting == procs {
						for _, w := range stdins {
							w.Close()
						}
					}
					continue
				}
				n++
				if !o.ready {
					losers = append(losers, o.i)
					continue
				}
				if winner >= 0 {
					t.Errorf("round %d: two processes serve vanilla: pids %d and %d", round, cmds[winner].Process.Pid, cmds[o.i].Process.Pid)
					cmds[o.i].Process.Signal(syscall.SIGTERM)
					cmds[o.i].Wait()
					continue
				}
				winner = o.i
			case <-timeout:
				for _, c := range cmds {
					c.Process.Kill()
				}
				t.Fatalf("round %d: processes neither served nor exited", round)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: nobody won; stderr of the first: %s", round, stderrs[losers[0]])
		}
		wpid := cmds[winner].Process.Pid
		want := fmt.Sprintf("plugin vanilla is already running (pid %d holds %s)", wpid, filepath.Join(dir, "vanilla.lock"))
		for _, i := range losers {
			if cmds[i].ProcessState.ExitCode() != 1 || !strings.Contains(stderrs[i].String(), want) {
				t.Errorf("round %d: loser pid %d exited %d with %q, want an error containing %q",
					round, cmds[i].Process.Pid, cmds[i].ProcessState.ExitCode(), stderrs[i], want)
			}
		}
		if pid, err := discovery.ReadPID(dir, "vanilla"); err != nil || pid != wpid {
			t.Errorf("round %d: pid file holds %d (%v), winner is %d", round, pid, err, wpid)
		}
		if err := rpc.NewFlavorClient(sock, "").Validate(context.Background(), nil, spi.Allocation{Size: 1}); err != nil {
			t.Errorf("round %d: the winner's socket does not answer: %v", round, err)
		}
		cmds[winner].Process.Signal(syscall.SIGTERM)
		cmds[winner].Wait()
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("round %d: files left after the winner stopped: %v", round, ents)
		}
		if t.Failed() {
			return
		}
	}
}

// deadPID returns the PID of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatalf("running true: %v", err)
	}
	return cmd.Process.Pid
}

// stalePID leaves <dir>/<name>.pid naming a dead process, as a killed plugin does.
func stalePID(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".pid"), []byte(fmt.Sprintf("%d\n", deadPID(t))), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestStopLeavesRegularFile: `plugin stop N` with a stale N.pid must not delete a regular file
// named N (it is not a socket the plugin made).
func TestStopLeavesRegularFile(t *testing.T) {
	dir := testDir(t)
	stalePID(t, dir, "notes")
	path := filepath.Join(dir, "notes")
	os.WriteFile(path, []byte("mine"), 0o600)
	if err := Stop(dir, "notes", time.Second); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("stop: %v", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "mine" {
		t.Fatalf("regular file removed or changed: %q %v", b, err)
	}
	if _, err := os.Lstat(path + ".pid"); !os.IsNotExist(err) {
		t.Fatalf("stale pid file not removed: %v", err)
	}
}

// TestStopLeavesDirectory: nor an (empty) directory named N.
func TestStopLeavesDirectory(t *testing.T) {
	dir := testDir(t)
	stalePID(t, dir, "box")
	path := filepath.Join(dir, "box")
	os.Mkdir(path, 0o700)
	if err := Stop(dir, "box", time.Second); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("stop: %v", err)
	}
	if fi, err := os.Lstat(path); err != nil || !fi.IsDir() {
		t.Fatalf("directory removed: %v", err)
	}
}

// TestStopLeavesSymlinkTarget: nor a symlink named N, nor what it points to (a stale socket
// elsewhere), nor a pid file that is a symlink.
func TestStopLeavesSymlinkTarget(t *testing.T) {
	dir := testDir(t)
	stalePID(t, dir, "link")
	elsewhere := t.TempDir()
	target := filepath.Join(elsewhere, "sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: target, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	path := filepath.Join(dir, "link")
	os.Symlink(target, path)
	if err := Stop(dir, "link", time.Second); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("stop: %v", err)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("symlink removed: %v", err)
	}
	if fi, err := os.Lstat(target); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("symlink target removed: %v", err)
	}

	// A pid file that is a symlink to a file holding a dead PID is not the plugin's.
	pidTarget := filepath.Join(elsewhere, "pid")
	os.WriteFile(pidTarget, []byte(fmt.Sprintf("%d\n", deadPID(t))), 0o600)
	os.Symlink(pidTarget, filepath.Join(dir, "lp.pid"))
	if err := Stop(dir, "lp", time.Second); err == nil {
		t.Fatal("stop through a symlinked pid file succeeded")
	}
	if _, err := os.Lstat(filepath.Join(dir, "lp.pid")); err != nil {
		t.Fatalf("symlinked pid file removed: %v", err)
	}
	if _, err := os.Lstat(pidTarget); err != nil {
		t.Fatalf("pid file's symlink target removed: %v", err)
	}
}

// TestStopRefusesPathName: a name with a path in it is refused before any file is touched
// (`plugin stop ../x` removed ../x.pid and ../x).
func TestStopRefusesPathName(t *testing.T) {
	dir := testDir(t)
	parent := filepath.Dir(dir)
	stalePID(t, parent, "x")
	os.WriteFile(filepath.Join(parent, "x"), []byte("outside"), 0o600)
	if err := Stop(dir, "../x", time.Second); err == nil || !strings.Contains(err.Error(), "invalid plugin name") {
		t.Fatalf("stop ../x: %v", err)
	}
	for _, n := range []string{"x", "x.pid"} {
		if _, err := os.Lstat(filepath.Join(parent, n)); err != nil {
			t.Fatalf("%s outside the plugin directory removed: %v", n, err)
		}
	}
}

// TestStopLeavesNewServer: stopping a plugin removes its socket and pid file, but never those
// of a server that holds the name's lock; the stale socket of a dead one is removed.
func TestStopLeavesNewServer(t *testing.T) {
	dir := testDir(t)
	stalePID(t, dir, "v")
	sock := filepath.Join(dir, "v")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if err := Stop(dir, "v", time.Second); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("stop: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("stale socket and pid file not removed: %v", ents)
	}
	r, err := Start(context.Background(), dir, Spec{Kind: "test-vanilla", Name: "v"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	if err := removeStale(dir, "v"); err != nil {
		t.Fatal(err)
	}
	if !rpc.Alive(sock) {
		t.Fatal("cleanup removed a live server's socket")
	}
	if pid, err := discovery.ReadPID(dir, "v"); err != nil || pid != os.Getpid() {
		t.Fatalf("cleanup removed a live server's pid file: %v", err)
	}
}
