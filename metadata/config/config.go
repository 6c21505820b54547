// Package config writes the /run/config tree that LinuxKit-style system containers read: the
// raw userdata, the provider's name, the hostname, ssh/authorized_keys, and, when the userdata
// is a JSON document, the nested files and directories it describes.
//
// Every write goes through an os.Root opened on the config root, so no name, symlink or
// ".." can make a write land outside it, and every file is written to a temporary name and
// renamed into place, so a reader never sees a half-written file.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
)

// DefaultRoot is where LinuxKit's metadata package (and so mobykit's) lays out the data.
const DefaultRoot = "/run/config"

// Well-known names inside the root, the same as LinuxKit's.
const (
	// UserdataFile always holds the raw userdata, whatever its format.
	UserdataFile = "userdata"
	// ProviderFile holds the name of the provider the data came from.
	ProviderFile = "provider"
	// HostnameFile holds the hostname the agent sets.
	HostnameFile = "hostname"
	// SSHDir holds sshd material; AuthorizedKeysFile is the keys file inside it.
	SSHDir             = "ssh"
	AuthorizedKeysFile = "ssh/authorized_keys"
)

// ErrBadName is returned (wrapped) for a name that would escape the root or is not a single
// plain path element: empty, ".", "..", or containing "/" or a NUL byte.
var ErrBadName = errors.New("invalid config entry name")

// Dir is a config root. Its methods are safe for concurrent use.
type Dir struct {
	root *os.Root
	path string
}

// Open creates dir (and its parents, mode 0755) if needed and opens it as a config root.
func Open(dir string) (*Dir, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("config: create root %s: %w", dir, err)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("config: open root %s: %w", dir, err)
	}
	return &Dir{root: r, path: dir}, nil
}

// Path is the directory this Dir writes into.
func (d *Dir) Path() string { return d.path }

// Close releases the root's directory handle.
func (d *Dir) Close() error { return d.root.Close() }

// CheckName reports whether name is usable as one path element inside the root.
func CheckName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("%w: %q", ErrBadName, name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("%w: %q contains '/' or NUL", ErrBadName, name)
	}
	return nil
}

// checkRel validates a slash-separated relative path element by element.
func checkRel(rel string) error {
	if rel == "" || strings.HasPrefix(rel, "/") {
		return fmt.Errorf("%w: %q is not a relative path", ErrBadName, rel)
	}
	for _, el := range strings.Split(rel, "/") {
		if err := CheckName(el); err != nil {
			return fmt.Errorf("path %q: %w", rel, err)
		}
	}
	return nil
}

// WriteFile atomically writes data to rel (a slash-separated path inside the root, each
// element checked with CheckName) with exactly the permission bits perm (no umask), creating
// missing parent directories with mode 0755.
func (d *Dir) WriteFile(rel string, data []byte, perm fs.FileMode) error {
	if err := checkRel(rel); err != nil {
		return fmt.Errorf("config: write %s: %w", rel, err)
	}
	if dir := path.Dir(rel); dir != "." {
		if err := d.root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("config: write %s: create parent: %w", rel, err)
		}
	}
	return d.writeAtomic(rel, data, perm)
}

func (d *Dir) writeAtomic(rel string, data []byte, perm fs.FileMode) error {
	dir, base := path.Split(rel)
	var f *os.File
	var tmp string
	var err error
	for i := 0; i < 100; i++ {
		tmp = fmt.Sprintf("%s.%s.tmp%d", dir, base, i)
		f, err = d.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("config: write %s: create temporary file: %w", rel, err)
	}
	fail := func(step string, err error) error {
		f.Close()
		_ = d.root.Remove(tmp)
		return fmt.Errorf("config: write %s: %s: %w", rel, step, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail("write", err)
	}
	// Chmod through the open descriptor: exact bits whatever the umask, and no path lookup
	// that a symlink swapped in meanwhile could redirect.
	if err := f.Chmod(perm & fs.ModePerm); err != nil {
		return fail("chmod", err)
	}
	if err := f.Sync(); err != nil {
		return fail("sync", err)
	}
	if err := f.Close(); err != nil {
		_ = d.root.Remove(tmp)
		return fmt.Errorf("config: write %s: close: %w", rel, err)
	}
	if err := d.root.Rename(tmp, rel); err != nil {
		_ = d.root.Remove(tmp)
		return fmt.Errorf("config: write %s: rename into place: %w", rel, err)
	}
	return nil
}

// Mkdir creates directory rel (and missing parents, 0755) and sets its permission bits to perm.
func (d *Dir) Mkdir(rel string, perm fs.FileMode) error {
	if err := checkRel(rel); err != nil {
		return fmt.Errorf("config: mkdir %s: %w", rel, err)
	}
	if err := d.root.MkdirAll(rel, 0o755); err != nil {
		return fmt.Errorf("config: mkdir %s: %w", rel, err)
	}
	f, err := d.root.Open(rel)
	if err != nil {
		return fmt.Errorf("config: mkdir %s: open: %w", rel, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("config: mkdir %s: stat: %w", rel, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("config: mkdir %s: exists and is not a directory", rel)
	}
	if err := f.Chmod(perm & fs.ModePerm); err != nil {
		return fmt.Errorf("config: mkdir %s: chmod: %w", rel, err)
	}
	return nil
}

// ReadFile reads rel from inside the root.
func (d *Dir) ReadFile(rel string) ([]byte, error) {
	if err := checkRel(rel); err != nil {
		return nil, fmt.Errorf("config: read %s: %w", rel, err)
	}
	return d.root.ReadFile(rel)
}
