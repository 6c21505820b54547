package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is the record of a hypervisor process, written to ProcessFile when it starts. It is
// enough to find the process again from another process (a restarted plugin) and to tell it
// apart from an unrelated process that reused the PID: the kernel's start time of the PID and a
// marker (normally the state folder's path) that must appear in its command line.
type Process struct {
	PID int
	// StartTime is field 22 of /proc/PID/stat (clock ticks since boot) when the process started.
	StartTime uint64
	// Marker must appear as one of the process's arguments, or inside one.
	Marker string
	// Argv is the command line it was started with, for people reading the state folder.
	Argv []string
	// Started is the wall-clock start time.
	Started time.Time
}

// StartOptions says how to start a hypervisor process.
type StartOptions struct {
	Argv []string
	Dir  string   // working directory ("" = current)
	Env  []string // nil = inherit
	// Marker must appear in Argv; it identifies the process as this VM's later on.
	Marker string
	// Stdin, Stdout and Stderr; nil means /dev/null. For a detached VM pass files, never
	// pipes: a pipe breaks when the caller exits, and the VM must outlive it.
	Stdin          *os.File
	Stdout, Stderr *os.File
	// Foreground keeps the process in the caller's session (for `mobykit run`, so that ^C and
	// the terminal reach it). Otherwise it gets its own session and survives the caller.
	Foreground bool
}

// Start starts a process as described and returns its record. Unless Foreground is set, the
// process runs in its own session and is reaped by a background goroutine while the caller
// lives, and by init (or the nearest subreaper) after.
func Start(o StartOptions) (*Process, *exec.Cmd, error) {
	if len(o.Argv) == 0 {
		return nil, nil, errors.New("start: empty command line")
	}
	if o.Marker != "" && !containsMarker(o.Argv, o.Marker) {
		return nil, nil, fmt.Errorf("start %s: marker %q not in its command line", o.Argv[0], o.Marker)
	}
	cmd := exec.Command(o.Argv[0], o.Argv[1:]...)
	cmd.Dir = o.Dir
	cmd.Env = o.Env
	if o.Stdin != nil {
		cmd.Stdin = o.Stdin
	}
	if o.Stdout != nil {
		cmd.Stdout = o.Stdout
	}
	if o.Stderr != nil {
		cmd.Stderr = o.Stderr
	}
	if !o.Foreground {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", o.Argv[0], err)
	}
	p := &Process{PID: cmd.Process.Pid, Marker: o.Marker, Argv: o.Argv, Started: time.Now().UTC()}
	st, err := readStat(p.PID)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, nil, fmt.Errorf("start %s: read its /proc entry: %w", o.Argv[0], err)
	}
	p.StartTime = st.startTime
	if o.Marker != "" {
		// The exec has happened when cmd.Start returns, but the kernel may not have laid out
		// the new command line yet (it reads as empty for a moment): wait for it, so that
		// Alive, which looks for the marker there, is right from the start.
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
			if args, err := readArgs(p.PID); err == nil && containsMarker(args, o.Marker) {
				break
			}
			if st, err := readStat(p.PID); err != nil || st.state == 'Z' || st.state == 'X' {
				break // it has exited already: Alive says so, and the caller reports it
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				return nil, nil, fmt.Errorf("start %s: its command line never showed the marker %q", o.Argv[0], o.Marker)
			}
		}
	}
	if !o.Foreground {
		go cmd.Wait() // reap it while we live; exit status is observed through Alive
	}
	return p, cmd, nil
}

func containsMarker(argv []string, marker string) bool {
	for _, a := range argv {
		if strings.Contains(a, marker) {
			return true
		}
	}
	return false
}

// stat is what the process check needs from the kernel: the state ('Z' for a zombie) and
// the start time, in a unit that only has to be stable for the life of the process (clock
// ticks since boot on Linux, microseconds since the epoch on macOS). readStat and readArgs
// are per platform (procfs on Linux, sysctl on macOS for HyperKit).
type stat struct {
	state     byte
	startTime uint64
}

// parseStat parses Linux's /proc/PID/stat. The command name (field 2) is in parentheses and
// may itself contain spaces and parentheses, so fields are counted from the last ')'.
func parseStat(b []byte) (stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, errors.New("malformed /proc stat: no ')'")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field 22 (starttime) is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return stat{}, fmt.Errorf("malformed /proc stat: %d fields after the command name", len(f))
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return stat{}, fmt.Errorf("malformed /proc stat start time %q: %w", f[19], err)
	}
	return stat{state: f[0][0], startTime: st}, nil
}

// Alive reports whether the recorded process is still running and is still the one that was
// started: same PID, same kernel start time, not a zombie, and the marker in its command line.
func (p *Process) Alive() bool {
	if p == nil || p.PID <= 0 {
		return false
	}
	st, err := readStat(p.PID)
	if err != nil || st.state == 'Z' || st.state == 'X' || st.startTime != p.StartTime {
		return false
	}
	if p.Marker == "" {
		return true
	}
	args, err := readArgs(p.PID)
	if err != nil {
		return false
	}
	return containsMarker(args, p.Marker)
}

// Signal sends sig to the process if it is still the recorded one.
func (p *Process) Signal(sig syscall.Signal) error {
	if !p.Alive() {
		return nil
	}
	if err := syscall.Kill(p.PID, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %v to pid %d: %w", sig, p.PID, err)
	}
	return nil
}

// Wait polls until the process is gone or ctx is done.
func (p *Process) Wait(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for p.Alive() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// Stopped says how Shutdown ended a process.
type Stopped int

const (
	// AlreadyGone: the process had exited before Shutdown looked.
	AlreadyGone Stopped = iota
	// Graceful: the process exited within the grace period after the graceful request.
	Graceful
	// Terminated: the process needed SIGTERM.
	Terminated
	// Killed: the process needed SIGKILL.
	Killed
)

func (s Stopped) String() string {
	switch s {
	case AlreadyGone:
		return "already gone"
	case Graceful:
		return "shut down gracefully"
	case Terminated:
		return "terminated with SIGTERM"
	case Killed:
		return "killed with SIGKILL"
	}
	return fmt.Sprintf("Stopped(%d)", int(s))
}

// Stop ends the process: it calls graceful (when not nil) to ask the guest to power off and
// waits up to grace for the process to exit, then sends SIGTERM and waits up to 2 s, then
// SIGKILL. A process already gone is not an error.
func (p *Process) Stop(ctx context.Context, graceful func(context.Context) error, grace time.Duration) error {
	_, err := p.Shutdown(ctx, graceful, grace)
	return err
}

// Shutdown is Stop that also says how the process ended, so that a caller can tell a guest
// that powered off when asked from one that had to be killed.
func (p *Process) Shutdown(ctx context.Context, graceful func(context.Context) error, grace time.Duration) (Stopped, error) {
	if !p.Alive() {
		return AlreadyGone, nil
	}
	asked := false
	if graceful != nil && grace > 0 {
		gctx, cancel := context.WithTimeout(ctx, grace)
		err := graceful(gctx)
		if err != nil {
			slog.Debug("graceful shutdown request failed; will signal", "pid", p.PID, "err", err)
		}
		asked = err == nil
		if asked && p.Wait(gctx) == nil {
			cancel()
			return Graceful, nil
		}
		cancel()
	}
	if !p.Alive() { // it exited on its own, or just after the grace period, unsignalled
		if asked {
			return Graceful, nil
		}
		return AlreadyGone, nil
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return Terminated, err
	}
	tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := p.Wait(tctx)
	cancel()
	if err == nil {
		return Terminated, nil
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return Killed, err
	}
	kctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := p.Wait(kctx); err != nil {
		return Killed, fmt.Errorf("pid %d still running after SIGKILL: %w", p.PID, err)
	}
	return Killed, nil
}
