package discovery

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/mobykit/mobykit/spi"
)

// Dir returns the plugin directory: $INFRAKIT_PLUGINS_DIR, else $INFRAKIT_HOME/plugins, else
// ~/.infrakit/plugins. It does not create it.
func Dir() (string, error) {
	if d := os.Getenv("INFRAKIT_PLUGINS_DIR"); d != "" {
		return d, nil
	}
	if h := os.Getenv("INFRAKIT_HOME"); h != "" {
		return filepath.Join(h, "plugins"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("discovery: no INFRAKIT_PLUGINS_DIR, INFRAKIT_HOME or home directory: %w", err)
	}
	return filepath.Join(home, ".infrakit", "plugins"), nil
}

// EnsureDir returns Dir(), created with owner-only permissions if it did not exist.
func EnsureDir() (string, error) {
	d, err := Dir()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(d, 0o700); err != nil {
		return "", fmt.Errorf("discovery: creating plugin directory %s: %w", d, err)
	}
	return d, nil
}

// NotFoundError is returned when no plugin has the name; its text is InfraKit's.
type NotFoundError struct{ Name string }

func (e *NotFoundError) Error() string { return "plugin not found:" + e.Name }

// Plugin is one entry of the plugin directory.
type Plugin struct {
	// Name is the lookup name (the socket's file name).
	Name string
	// Address is the socket path, or the URL read from Name.listen (tcp://host:port).
	Address string
	// PID is the PID recorded in Name.pid, 0 if there is none.
	PID int
}

// TCP reports whether the plugin is reached over TCP (the .listen variant).
func (p Plugin) TCP() bool { return strings.Contains(p.Address, "://") }

// List returns the plugins in dir sorted by name: every unix socket, and every N.listen file.
// Other files are skipped. A missing directory has no plugins.
func List(dir string) ([]Plugin, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("discovery: reading plugin directory %s: %w", dir, err)
	}
	var out []Plugin
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(dir, name)
		switch {
		case e.Type()&os.ModeSocket != 0:
			if strings.HasPrefix(name, ".") { // a socket being created (spi/rpc.Listen)
				continue
			}
			out = append(out, Plugin{Name: name, Address: path, PID: readPID(dir, name)})
		case strings.HasSuffix(name, ".listen") && e.Type().IsRegular():
			n := strings.TrimSuffix(name, ".listen")
			addr, err := readListen(path)
			if err != nil {
				return nil, err
			}
			out = append(out, Plugin{Name: n, Address: addr, PID: readPID(dir, n)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func readListen(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("discovery: reading %s: %w", path, err)
	}
	addr := strings.TrimSpace(string(b))
	if !strings.HasPrefix(addr, "tcp://") && !strings.HasPrefix(addr, "http://") {
		return "", fmt.Errorf("discovery: %s: %q is not a tcp:// URL", path, addr)
	}
	return addr, nil
}

// readPID returns the PID in dir/name.pid, 0 if absent or unreadable.
func readPID(dir, name string) int {
	pid, _ := ReadPID(dir, name)
	return pid
}

const maxPIDFile = 32

// ReadPID returns the PID recorded in dir/name.pid. The file must be a regular file (a
// symlink is not followed) of a few bytes.
func ReadPID(dir, name string) (int, error) {
	path := filepath.Join(dir, name+".pid")
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return 0, fmt.Errorf("discovery: %s is a symlink, not a pid file", path)
		}
		return 0, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return 0, err
	} else if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("discovery: %s is not a regular file (%s)", path, fi.Mode().Type())
	}
	// A PID and a newline fit in far less than maxPIDFile bytes; a longer file is not ours.
	b := make([]byte, maxPIDFile)
	n, err := io.ReadFull(f, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("discovery: reading %s: %w", path, err)
	}
	pid, perr := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if perr != nil || pid <= 0 || n == maxPIDFile {
		return 0, fmt.Errorf("discovery: %s does not hold a PID: %q", path, b[:n])
	}
	return pid, nil
}

// Find resolves a lookup name (no subtype) in dir to an address for spi/rpc's clients. The
// directory is read again on every call, as InfraKit does.
func Find(dir, lookup string) (string, error) {
	if lookup == "" || strings.ContainsAny(lookup, `/\`) || lookup == "." || lookup == ".." {
		return "", &NotFoundError{Name: lookup}
	}
	path := filepath.Join(dir, lookup)
	if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		return path, nil
	}
	if addr, err := readListen(path + ".listen"); err == nil {
		return addr, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	return "", &NotFoundError{Name: lookup}
}

// Lookup resolves a plugin name "lookup[/subtype]" in dir: the address of the lookup's socket
// (or TCP URL), and the subtype to send as "Type".
func Lookup(dir string, name spi.PluginName) (address, subtype string, err error) {
	lookup, subtype := name.Split()
	address, err = Find(dir, lookup)
	if err != nil {
		var nf *NotFoundError
		if errors.As(err, &nf) {
			return "", "", &NotFoundError{Name: string(name)}
		}
		return "", "", err
	}
	return address, subtype, nil
}

// FindDefault is Find in Dir(), in the shape group.RPCPlugins.Find wants.
func FindDefault(lookup string) (string, error) {
	dir, err := Dir()
	if err != nil {
		return "", err
	}
	return Find(dir, lookup)
}

// ProcessAlive reports whether a process with this PID exists (signal 0 succeeds or is
// refused for permission reasons).
func ProcessAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	return !Zombie(pid)
}

// Zombie reports whether pid has exited but not been reaped yet: it still answers kill(pid, 0),
// yet serves nothing, so its socket and pid file are stale.
func Zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z'
	}
	return false
}
