package spec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

type origins struct{}

// Parse parses one spec file strictly. filename is used in error messages
// and to resolve relative `files: source:` paths.
func Parse(filename string, data []byte) (*Moby, error) {
	return nil, errors.New("spec.Parse: not implemented yet")
}

// Load reads and parses each path, merges them in order and validates the
// result.
func Load(paths ...string) (*Moby, error) {
	var m *Moby
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read spec: %w", err)
		}
		n, err := Parse(p, data)
		if err != nil {
			return nil, err
		}
		if m == nil {
			m = n
			continue
		}
		if m, err = Merge(m, n); err != nil {
			return nil, err
		}
	}
	if m == nil {
		return nil, errors.New("no spec files given")
	}
	return m, m.Validate()
}

// Merge appends over to base as LinuxKit's AppendConfig does.
func Merge(base, over *Moby) (*Moby, error) {
	return nil, errors.New("spec.Merge: not implemented yet")
}

// Validate checks names and image references.
func (m *Moby) Validate() error { return nil }

// Bytes returns the YAML of the merged, defaulted spec.
func (m *Moby) Bytes() ([]byte, error) { return nil, errors.New("not implemented yet") }

// ImageRefs returns every image reference used, sorted and unique.
func (m *Moby) ImageRefs() []string {
	set := map[string]bool{}
	if m.Kernel.Image != "" {
		set[m.Kernel.Image] = true
	}
	for _, i := range m.Init {
		set[i] = true
	}
	for _, l := range [][]*Image{m.Onboot, m.Onshutdown, m.Services} {
		for _, i := range l {
			set[i.Image] = true
		}
	}
	for _, v := range m.Volumes {
		if v.Image != "" {
			set[v.Image] = true
		}
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// FileEntries turns `files:` into entries to write. baseDir is used for
// relative sources of files that were not parsed from a file.
func (m *Moby) FileEntries(baseDir string) ([]FileEntry, error) {
	_ = filepath.Join
	return nil, errors.New("not implemented yet")
}
