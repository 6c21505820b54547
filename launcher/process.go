package launcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/discovery"
	"github.com/mobykit/mobykit/spi/rpc"
)

// DetachOptions says how to start a plugin in the background.
type DetachOptions struct {
	// Command returns the command line (executable first) that runs one spec in the
	// foreground, e.g. {"/usr/bin/mobykit", "plugin", "start", "group"}.
	Command func(Spec) []string
	// Wait is how long to wait for the socket to answer (default 15s).
	Wait time.Duration
	// Env ("KEY=value") is added to the environment the processes inherit: settings to keep
	// off their command lines, such as the group store's credentials.
	Env []string
}

// Detach starts each spec as its own background process (a new session, output appended to
// <dir>/<name>.log) and waits until its socket answers. A process that exits before that is
// reported with the end of its log.
func Detach(ctx context.Context, dir string, specs []Spec, o DetachOptions) error {
	if o.Wait == 0 {
		o.Wait = 15 * time.Second
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("launcher: creating plugin directory %s: %w", dir, err)
	}
	for _, s := range specs {
		if err := detachOne(ctx, dir, s, o); err != nil {
			return err
		}
	}
	return nil
}

func detachOne(ctx context.Context, dir string, s Spec, o DetachOptions) error {
	argv := o.Command(s)
	logPath := filepath.Join(dir, s.Name+".log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("launcher: opening log %s: %w", logPath, err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(append(os.Environ(), o.Env...), "INFRAKIT_PLUGINS_DIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("launcher: starting %s (%s): %w", s, strings.Join(argv, " "), err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	sock := filepath.Join(dir, s.Name)
	deadline := time.NewTimer(o.Wait)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("launcher: %s exited before serving (%v); log %s:\n%s", s, err, logPath, tail(logPath, 2048))
		case <-deadline.C:
			return fmt.Errorf("launcher: %s (pid %d) does not answer on %s after %s; log %s", s, cmd.Process.Pid, sock, o.Wait, logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if pid, err := discovery.ReadPID(dir, s.Name); err == nil && pid == cmd.Process.Pid {
				if _, lerr := os.Stat(sock + ".listen"); rpc.Alive(sock) || lerr == nil {
					return nil
				}
			}
		}
	}
}

func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		f.Seek(-n, 2)
	}
	b := make([]byte, n)
	k, _ := f.Read(b)
	return string(b[:k])
}

// ErrNotRunning is returned by Stop when no live process serves the name.
var ErrNotRunning = errors.New("plugin is not running")

// Stop sends SIGTERM to the process serving name in dir and waits (up to timeout, default
// 10s) for it to exit; then SIGKILL. The process is the holder of <dir>/<name>.lock (see
// discovery.TryLock), else the live process of <dir>/<name>.pid (a server that takes no lock).
// A process serving several plugins (one foreground `plugin start a b`) stops them all.
//
// Afterwards, with the name's lock held, it removes what the server left behind: its pid file,
// socket and .listen file, and nothing else (discovery.Lock.RemoveStale): a regular file, a
// directory or a symlink named like the plugin is never removed, and nothing is removed while
// another process holds the lock.
func Stop(dir, name string, timeout time.Duration) error {
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	if err := discovery.ValidName(name); err != nil {
		return fmt.Errorf("launcher: stop: %w", err)
	}
	pidFile := filepath.Join(dir, name+".pid")
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("launcher: %s: %w (no plugin directory %s)", name, ErrNotRunning, dir)
	}
	_, before := os.Lstat(pidFile)
	pid, err := serverPID(dir, name)
	if err != nil {
		return err
	}
	if pid == 0 {
		_, after := os.Lstat(pidFile)
		switch {
		case before != nil:
			return fmt.Errorf("launcher: %s: %w (no %s.pid in %s)", name, ErrNotRunning, name, dir)
		case after == nil:
			return fmt.Errorf("launcher: %s: %w (%s does not hold the PID of a dead plugin; left as is)", name, ErrNotRunning, pidFile)
		default:
			return fmt.Errorf("launcher: %s: %w (its process is gone or the PID reused; stale files removed)", name, ErrNotRunning)
		}
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("launcher: stopping %s (pid %d): %w", name, pid, err)
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !discovery.ProcessAlive(pid) || zombie(pid) {
			return removeStale(dir, name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 40 && discovery.ProcessAlive(pid) && !zombie(pid); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if err := removeStale(dir, name); err != nil {
		return err
	}
	return fmt.Errorf("launcher: %s (pid %d) ignored SIGTERM for %s and was killed", name, pid, timeout)
}

// serverPID returns the PID of the process serving name: the holder of its lock, else a live
// process in its pid file. When nobody serves it, it removes the stale files (under the lock)
// and returns 0.
func serverPID(dir, name string) (int, error) {
	lk, err := discovery.TryLock(dir, name, os.Getpid())
	var held *discovery.HeldError
	if errors.As(err, &held) {
		if held.PID > 0 {
			return held.PID, nil
		}
		if pid, err := discovery.ReadPID(dir, name); err == nil {
			return pid, nil
		}
		return 0, fmt.Errorf("launcher: %w; its pid is not recorded yet", err)
	}
	if err != nil {
		return 0, fmt.Errorf("launcher: %w", err)
	}
	defer lk.Unlock()
	if pid, live, err := discovery.Live(dir, name); err == nil && live {
		return pid, nil
	}
	if err := lk.RemoveStale(dir); err != nil {
		return 0, fmt.Errorf("launcher: %w", err)
	}
	return 0, nil
}

// removeStale cleans up after a stopped server, under the name's lock. If another process
// holds the lock (a new server started meanwhile), nothing is touched.
func removeStale(dir, name string) error {
	lk, err := discovery.TryLock(dir, name, os.Getpid())
	if errors.Is(err, discovery.ErrRunning) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("launcher: %w", err)
	}
	rerr := lk.RemoveStale(dir)
	if err := lk.Unlock(); rerr == nil {
		rerr = err
	}
	if rerr != nil {
		return fmt.Errorf("launcher: %w", rerr)
	}
	return nil
}

// zombie reports whether pid has exited but not been reaped (its parent is still us, e.g. in
// tests).
func zombie(pid int) bool { return discovery.Zombie(pid) }

// Status is one plugin found in the directory.
type Status struct {
	Name    string
	Address string
	PID     int
	// Running: the socket answers (or, for a .listen entry, the process is alive).
	Running bool
	// Interfaces are the keys of the plugin's Handshake.Hello ("Instance/0.6.1"), with the
	// objects served under each ("." or subtypes).
	Interfaces map[string][]string `json:",omitempty"`
	Error      string              `json:",omitempty"`
}

// List returns every plugin in dir with its state; running ones are asked Handshake.Hello.
func List(ctx context.Context, dir string) ([]Status, error) {
	ps, err := discovery.List(dir)
	if err != nil {
		return nil, err
	}
	out := make([]Status, 0, len(ps))
	for _, p := range ps {
		st := Status{Name: p.Name, Address: p.Address, PID: p.PID}
		if !p.TCP() {
			st.Running = rpc.Alive(p.Address)
		} else {
			st.Running = true
		}
		if st.Running {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			hello, err := rpc.NewClient(p.Address, spi.InterfaceSpec{}).Hello(cctx)
			cancel()
			if err != nil {
				st.Error = err.Error()
				if p.TCP() {
					st.Running = false
				}
			} else {
				st.Interfaces = map[string][]string{}
				for k, objs := range hello.Objects {
					for _, o := range objs {
						st.Interfaces[k] = append(st.Interfaces[k], o.Name)
					}
				}
			}
		}
		out = append(out, st)
	}
	return out, nil
}
