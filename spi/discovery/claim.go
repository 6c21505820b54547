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

// Claim is a name taken in the plugin directory by this process: its pid file is written.
type Claim struct {
	Dir, Name string
	// Socket is the path to serve on (rpc.Listen creates it with mode 0600).
	Socket string
	// PIDFile is dir/name.pid, holding this process's PID.
	PIDFile string
}

// Take claims name in dir for this process (pid). If name.pid names a live process (see Live), or the
// socket answers, the name is in use and ErrRunning is returned: a live plugin is never
// stolen. A pid file of a dead process, a socket nobody answers on and a stale .listen file
// are removed first (deploykit#475). The pid file is created exclusively, so two processes
// claiming the same name at once cannot both win.
func Take(dir, name string, pid int) (*Claim, error) {
	if name == "" || name == "." || name == ".." || filepath.Base(name) != name {
		return nil, fmt.Errorf("discovery: invalid plugin name %q", name)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("discovery: creating plugin directory %s: %w", dir, err)
	}
	c := &Claim{Dir: dir, Name: name, Socket: filepath.Join(dir, name), PIDFile: filepath.Join(dir, name+".pid")}
	if old, live, err := Live(dir, name); err == nil {
		if live && old != pid {
			return nil, fmt.Errorf("discovery: %s: %w (pid %d in %s)", name, ErrRunning, old, c.PIDFile)
		}
		slog.Info("removing stale plugin pid file", "plugin", name, "pid", old, "file", c.PIDFile)
	} else if !errors.Is(err, os.ErrNotExist) {
		slog.Warn("removing unreadable plugin pid file", "plugin", name, "file", c.PIDFile, "err", err)
	}
	if fi, err := os.Lstat(c.Socket); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("discovery: %s exists and is not a socket", c.Socket)
		}
		if rpc.Alive(c.Socket) {
			return nil, fmt.Errorf("discovery: %s: %w (socket %s answers)", name, ErrRunning, c.Socket)
		}
		slog.Info("removing stale plugin socket", "plugin", name, "socket", c.Socket)
		if err := os.Remove(c.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("discovery: removing stale socket %s: %w", c.Socket, err)
		}
	}
	_ = os.Remove(c.PIDFile)
	_ = os.Remove(c.Socket + ".listen")
	f, err := os.OpenFile(c.PIDFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("discovery: %s: %w (another process claimed it just now)", name, ErrRunning)
		}
		return nil, fmt.Errorf("discovery: writing %s: %w", c.PIDFile, err)
	}
	_, werr := f.WriteString(strconv.Itoa(pid) + "\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(c.PIDFile)
		return nil, fmt.Errorf("discovery: writing %s: %w", c.PIDFile, werr)
	}
	return c, nil
}

// Release removes the pid file (and the socket, if the server left it).
func (c *Claim) Release() error {
	var errs []error
	for _, p := range []string{c.PIDFile, c.Socket, c.Socket + ".listen"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
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
