package discovery

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mobykit/mobykit/spi/rpc"
)

// HeldError is returned when another process holds a plugin name's lock: that process serves
// the name (or is starting to). It wraps ErrRunning.
type HeldError struct {
	Name string
	// Lock is the path of the lock file, <dir>/<name>.lock.
	Lock string
	// PID is the holder's PID as it recorded it in the lock file, 0 if it has not yet.
	PID int
}

func (e *HeldError) Error() string {
	holder := "another process"
	if e.PID > 0 {
		holder = "pid " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("plugin %s is already running (%s holds %s)", e.Name, holder, e.Lock)
}

func (e *HeldError) Unwrap() error { return ErrRunning }

// Lock is the exclusive hold of a plugin name: flock(LOCK_EX) on <dir>/<name>.lock. The kernel
// drops it when the holder exits, however it exits, so a crash never leaves a name taken; while
// it is held, no other process may create or remove the name's socket or pid file. The file
// holds the holder's PID, so that a refused start can name it.
type Lock struct {
	Name, Path string
	f          *os.File
}

// holderWait is how long TryLock waits for a holder that has just taken the lock to record
// its PID before reporting it as "another process".
const holderWait = time.Second

// ValidName reports whether n can name a plugin: one path element, no leading dot.
func ValidName(n string) error {
	if n == "" || n == "." || n == ".." || strings.HasPrefix(n, ".") || filepath.Base(n) != n || strings.ContainsAny(n, `/\`+"\x00") {
		return fmt.Errorf("discovery: invalid plugin name %q", n)
	}
	return nil
}

// TryLock takes the lock of name in dir for the process pid without waiting. If another
// process holds it, the error is a *HeldError (errors.Is ErrRunning) naming its PID. The lock
// file is opened without following symlinks and must be a regular file.
func TryLock(dir, name string, pid int) (*Lock, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name+".lock")
	// The file may be unlinked by its holder between our open and our flock (Unlock removes
	// it); then we hold a lock on a file nobody else can see, so open it again.
	for attempt := 0; attempt < 100; attempt++ {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o600)
		if err != nil {
			if errors.Is(err, syscall.ELOOP) {
				return nil, fmt.Errorf("discovery: lock file %s is a symlink; refusing it", path)
			}
			return nil, fmt.Errorf("discovery: opening lock file %s: %w", path, err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("discovery: lock file %s: %w", path, err)
		}
		if !fi.Mode().IsRegular() {
			f.Close()
			return nil, fmt.Errorf("discovery: lock file %s is not a regular file (%s)", path, fi.Mode().Type())
		}
		if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			if errors.Is(err, syscall.EWOULDBLOCK) {
				holder := lockHolder(f, holderWait)
				f.Close()
				return nil, &HeldError{Name: name, Lock: path, PID: holder}
			}
			f.Close()
			return nil, fmt.Errorf("discovery: locking %s: %w", path, err)
		}
		if cur, err := os.Lstat(path); err != nil || !os.SameFile(fi, cur) {
			f.Close()
			continue
		}
		err = f.Truncate(0)
		if err == nil {
			_, err = f.WriteAt([]byte(strconv.Itoa(pid)+"\n"), 0)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("discovery: writing lock file %s: %w", path, err)
		}
		return &Lock{Name: name, Path: path, f: f}, nil
	}
	return nil, fmt.Errorf("discovery: lock file %s keeps being replaced", path)
}

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// lockHolder reads the PID the holder wrote into the lock file, waiting up to wait for it to
// do so (it writes right after taking the lock). 0 if none appears.
func lockHolder(f *os.File, wait time.Duration) int {
	deadline := time.Now().Add(wait)
	for {
		buf := make([]byte, 32)
		n, _ := f.ReadAt(buf, 0)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n]))); err == nil && pid > 0 {
			return pid
		}
		if time.Now().After(deadline) {
			return 0
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Unlock removes the lock file (while still holding it, and only if the path still names the
// file locked) and releases the lock.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	var err error
	if fi, serr := l.f.Stat(); serr == nil {
		if cur, lerr := os.Lstat(l.Path); lerr == nil && os.SameFile(fi, cur) {
			if rerr := os.Remove(l.Path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = fmt.Errorf("discovery: removing lock file %s: %w", l.Path, rerr)
			}
		}
	}
	if cerr := l.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("discovery: closing lock file %s: %w", l.Path, cerr)
	}
	l.f = nil
	return err
}

// RemoveStale removes what a dead server of the name left in dir, and nothing else. It must be
// called with the lock held, so that no live mobykit server can own these files:
//
//   - <name>.pid, if it is a regular file holding the PID of a process that is gone (or
//     whose PID was reused);
//   - <name>, if it is a socket (not a symlink, file or directory) that nobody answers on;
//   - <name>.listen, if it is a regular file and the pid file beside it was stale.
//
// A pid file of a live process (a server that does not take the lock) is left alone and
// reported as ErrRunning.
func (l *Lock) RemoveStale(dir string) error {
	name := l.Name
	pidPath := filepath.Join(dir, name+".pid")
	pidRemoved := false
	if fi, err := os.Lstat(pidPath); err == nil && fi.Mode().IsRegular() {
		pid, live, err := Live(dir, name)
		switch {
		case err != nil:
			// Not a PID we wrote: not ours to remove.
		case live && pid != os.Getpid():
			return fmt.Errorf("discovery: %s: %w (pid %d in %s)", name, ErrRunning, pid, pidPath)
		default:
			if err := os.Remove(pidPath); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("discovery: removing stale pid file %s: %w", pidPath, err)
			}
			pidRemoved = true
		}
	}
	sock := filepath.Join(dir, name)
	if fi, err := os.Lstat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 && !rpc.Alive(sock) {
		if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("discovery: removing stale socket %s: %w", sock, err)
		}
	}
	listen := sock + ".listen"
	if fi, err := os.Lstat(listen); err == nil && fi.Mode().IsRegular() && pidRemoved {
		if err := os.Remove(listen); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("discovery: removing stale %s: %w", listen, err)
		}
	}
	return nil
}
