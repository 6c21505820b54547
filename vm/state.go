package vm

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"

	"github.com/mobykit/mobykit/internal/atomicfile"
)

// Names of the files in a VM's state folder.
const (
	SpecFile    = "spec.json"    // the spi.Spec given at Provision
	TagsFile    = "tags.json"    // the current tags (Provision's, merged with Label's)
	ProcessFile = "process.json" // the hypervisor process record (Process)
	ConsoleFile = "console.log"  // the serial console
	LogFile     = "vmm.log"      // the hypervisor's own stdout/stderr
	QMPFile     = "qmp.sock"     // QEMU's QMP socket
	DisksDir    = "disks"        // disks that live and die with the VM
)

// validName is what an instance ID or other state-folder name may look like: no path
// separators, no leading dot, so a name can never point out of the store.
var validName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$`)

// CheckName returns an error when name cannot be used as a folder name inside a store.
func CheckName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("invalid name %q: want letters, digits, '_', '.', ':' or '-', at most 128, not starting with '.' or '-'", name)
	}
	return nil
}

// Dir is one VM's state folder.
type Dir string

// Path returns the path of the named file inside the folder.
func (d Dir) Path(name string) string { return filepath.Join(string(d), name) }

// Name is the folder's base name (the instance ID).
func (d Dir) Name() string { return filepath.Base(string(d)) }

// WriteJSON atomically writes v as indented JSON into the named file.
func (d Dir) WriteJSON(name string, v any) error { return WriteJSON(d.Path(name), v) }

// ReadJSON reads the named JSON file into v.
func (d Dir) ReadJSON(name string, v any) error { return ReadJSON(d.Path(name), v) }

// Store is a folder holding one state folder per VM, named after the VM's ID.
type Store struct {
	Root string
}

// OpenPluginState lays out an instance plugin's state root, as both VM instance plugins keep it
// (instances/<ID>/ per VM, disks/<logical ID>/ for persistent disks): it makes root absolute and
// creates its instances folder, and returns the absolute root and the Store of instances.
//
// State folders hold every VM's userdata (spec.json, the metadata CD) and its sockets, so the
// instances folder is made (or, made by an older version, set to) mode 0700: other local users
// cannot enter it. A root made here is 0700 too.
func OpenPluginState(root string) (string, Store, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return "", Store{}, err
	}
	st := Store{Root: filepath.Join(root, "instances")}
	if err := os.MkdirAll(st.Root, 0o700); err != nil {
		return "", Store{}, err
	}
	if err := os.Chmod(st.Root, 0o700); err != nil {
		return "", Store{}, fmt.Errorf("close %s to other users: %w", st.Root, err)
	}
	return root, st, nil
}

// OpenInstances opens an instance plugin's state root (OpenPluginState) and returns the
// Instances kept there: IDs starting with prefix, VMs run by the Backend that backend makes for
// the absolute root, the Store and the logger. A nil log means slog.Default(). Running VMs
// already recorded there are adopted.
func OpenInstances(root, prefix string, log *slog.Logger, backend func(root string, st Store, log *slog.Logger) Backend) (*Instances, error) {
	root, st, err := OpenPluginState(root)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &Instances{Store: st, Backend: backend(root, st, log), Prefix: prefix, Log: log}, nil
}

// Create makes a new, empty state folder for id, mode 0700 (it holds the VM's userdata). It
// fails if one exists already.
func (s Store) Create(id string) (Dir, error) {
	if err := CheckName(id); err != nil {
		return "", err
	}
	if err := os.MkdirAll(s.Root, 0o700); err != nil {
		return "", fmt.Errorf("create state root %s: %w", s.Root, err)
	}
	p := filepath.Join(s.Root, id)
	if err := os.Mkdir(p, 0o700); err != nil {
		return "", fmt.Errorf("create state folder for %s: %w", id, err)
	}
	return Dir(p), nil
}

// Get returns the state folder of id, or an error wrapping fs.ErrNotExist.
func (s Store) Get(id string) (Dir, error) {
	if err := CheckName(id); err != nil {
		return "", err
	}
	p := filepath.Join(s.Root, id)
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("state folder of %s: %w", id, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("state folder of %s: %s is not a folder", id, p)
	}
	return Dir(p), nil
}

// List returns the IDs of every state folder, sorted. A missing root is an empty store.
func (s Store) List() ([]string, error) {
	ents, err := os.ReadDir(s.Root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list state root %s: %w", s.Root, err)
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && CheckName(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// Remove deletes the state folder of id and everything in it. The folder is first renamed
// to a hidden name, atomically, so that a concurrent List never sees it half deleted.
// Removing a missing folder is not an error.
func (s Store) Remove(id string) error {
	if err := CheckName(id); err != nil {
		return err
	}
	p := filepath.Join(s.Root, id)
	gone, err := os.MkdirTemp(s.Root, ".removing-"+id+"-")
	if errors.Is(err, os.ErrNotExist) {
		return nil // no root, nothing to remove
	}
	if err != nil {
		return fmt.Errorf("remove state folder of %s: %w", id, err)
	}
	defer os.RemoveAll(gone)
	target := filepath.Join(gone, id)
	if err := os.Rename(p, target); errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("remove state folder of %s: %w", id, err)
	}
	if err := os.RemoveAll(gone); err != nil {
		return fmt.Errorf("remove state folder of %s: %w", id, err)
	}
	return nil
}

// WriteJSON atomically writes v as indented JSON to path (temporary file, fsync, rename).
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return WriteFileAtomic(path, append(b, '\n'), 0o644)
}

// WriteFileAtomic writes data to path through a temporary file in the same folder and a rename,
// so readers see either the old or the new content.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return atomicfile.WriteFile(path, data, perm)
}

// ReadJSON decodes the JSON file at path into v.
func ReadJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}
