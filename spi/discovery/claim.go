package discovery

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"github.com/mobykit/mobykit/spi/rpc"
)

// ErrRunning is returned by Claim when a live process already serves the name.
var ErrRunning = errors.New("plugin is already running")

// Claim is a name taken in the plugin directory by this process: its lock is held for the
// claim's life and its pid file is written.
type Claim struct {
	Dir, Name string
	// Socket is the path to serve on (rpc.Listen creates it with mode 0600).
	Socket string
	// PIDFile is dir/name.pid, holding this process's PID.
	PIDFile string

	lock *Lock
}

// Take claims name in dir for this process (pid). It first takes the name's lock
// (<dir>/<name>.lock, see TryLock): if another process holds it, the error is a *HeldError
// naming that process, and nothing in dir is touched. Under the lock it refuses a name whose
// pid file names another live process or whose socket answers (a server that does not take
// the lock: ErrRunning), refuses a <name> that is not a socket, removes what a dead server
// left (see RemoveStale, deploykit#475), and writes the pid file. Two processes claiming the
// same name at once cannot both win, and the loser never removes the winner's files.
func Take(dir, name string, pid int) (*Claim, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("discovery: creating plugin directory %s: %w", dir, err)
	}
	lock, err := TryLock(dir, name, pid)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	c := &Claim{Dir: dir, Name: name, Socket: filepath.Join(dir, name), PIDFile: filepath.Join(dir, name+".pid"), lock: lock}
	if err := c.prepare(pid); err != nil {
		lock.Unlock()
		return nil, err
	}
	return c, nil
}

// prepare runs under the lock: it checks nothing else serves the name, cleans up after a dead
// server and writes the pid file.
func (c *Claim) prepare(pid int) error {
	if fi, err := os.Lstat(c.Socket); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("discovery: %s exists and is not a socket (%s); not removing it", c.Socket, fi.Mode().Type())
		}
		if rpc.Alive(c.Socket) {
			return fmt.Errorf("discovery: %s: %w (socket %s answers)", c.Name, ErrRunning, c.Socket)
		}
		slog.Info("removing stale plugin socket", "plugin", c.Name, "socket", c.Socket)
	}
	if old, live, err := Live(c.Dir, c.Name); err == nil && !live {
		slog.Info("removing stale plugin pid file", "plugin", c.Name, "pid", old, "file", c.PIDFile)
	}
	if err := c.lock.RemoveStale(c.Dir); err != nil {
		return err
	}
	if fi, err := os.Lstat(c.PIDFile); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("discovery: %s exists and is not a regular file (%s); not replacing it", c.PIDFile, fi.Mode().Type())
	}
	return writeFileAtomic(c.PIDFile, []byte(strconv.Itoa(pid)+"\n"))
}

// writeFileAtomic writes data to a temporary file beside path and renames it into place.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("discovery: writing %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp, 0o600)
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("discovery: writing %s: %w", path, werr)
	}
	return nil
}

// Release removes this claim's files (the pid file, the socket and .listen file if the server
// left them) and then the lock. Only a socket, and only regular files, are removed.
func (c *Claim) Release() error {
	if c.lock == nil {
		return nil
	}
	var errs []error
	remove := func(p string, ok func(os.FileMode) bool) {
		fi, err := os.Lstat(p)
		if err != nil || !ok(fi.Mode()) {
			return
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	regular := func(m os.FileMode) bool { return m.IsRegular() }
	remove(c.PIDFile, regular)
	remove(c.Socket, func(m os.FileMode) bool { return m&os.ModeSocket != 0 })
	remove(c.Socket+".listen", regular)
	if err := c.lock.Unlock(); err != nil {
		errs = append(errs, err)
	}
	c.lock = nil
	return errors.Join(errs...)
}

// WriteListen records a TCP address (tcp://host:port) for name, for the .listen variant.
func (c *Claim) WriteListen(url string) error {
	tmp := c.Socket + ".listen.tmp"
	if err := os.WriteFile(tmp, []byte(url+"\n"), 0o600); err != nil {
		return fmt.Errorf("discovery: writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, c.Socket+".listen"); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("discovery: writing %s.listen: %w", c.Socket, err)
	}
	return nil
}
