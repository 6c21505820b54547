package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strconv"
)

// File is LinuxKit's JSON userdata document: a map from name to Entry, expanded under the root.
//
//	{"ssh": {"entries": {"sshd_config": {"perm": "0600", "content": "PermitRootLogin yes"}}},
//	 "hostname": {"content": "node1"}}
type File map[string]Entry

// Entry is either a file (Content set) or a directory (Entries set, possibly empty); having
// both or neither is an error. Perm is an octal string; it defaults to "0644" for files and
// "0755" for directories.
type Entry struct {
	Perm    string           `json:"perm,omitempty"`
	Content *string          `json:"content,omitempty"`
	Entries map[string]Entry `json:"entries,omitempty"`
}

// reserved names cannot be replaced by a JSON entry at the top level: the raw userdata must
// stay in place, and provider says where it came from.
var reserved = []string{UserdataFile, ProviderFile}

// ProcessUserdata does what LinuxKit's processUserData does: it always writes data to
// "userdata", and if data is a JSON object in the File format it expands it into files and
// directories. A document that is not such JSON is not an error (userdata may be anything).
// Entries that are invalid (bad name, bad perm, both or neither of content/entries, a clash
// with an existing file) are skipped and reported, joined, in the returned error; the rest
// are still written. The returned error is non-nil only for such skips or a failure to write
// the raw userdata.
func (d *Dir) ProcessUserdata(data []byte) error {
	if err := d.WriteFile(UserdataFile, data, 0o644); err != nil {
		return err
	}
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		slog.Debug("userdata is not a JSON config document; kept raw only", "err", err)
		return nil
	}
	return d.Expand(f)
}

// Expand writes the entries of f under the root, in sorted name order, and returns every
// skipped entry's reason joined.
func (d *Dir) Expand(f File) error {
	var errs []error
	for _, name := range sortedKeys(f) {
		if slices.Contains(reserved, name) {
			errs = append(errs, fmt.Errorf("config: entry %q: name is reserved for the agent", name))
			continue
		}
		d.expand("", name, f[name], &errs)
	}
	return errors.Join(errs...)
}

func (d *Dir) expand(parent, name string, e Entry, errs *[]error) {
	if err := CheckName(name); err != nil {
		*errs = append(*errs, fmt.Errorf("config: entry under %q: %w", "/"+parent, err))
		return
	}
	rel := path.Join(parent, name)
	switch {
	case e.Content != nil && e.Entries == nil:
		mode, err := ParsePerm(e.Perm, 0o644)
		if err != nil {
			*errs = append(*errs, fmt.Errorf("config: entry %s: %w", rel, err))
			return
		}
		if err := d.writeAtomic(rel, []byte(*e.Content), mode); err != nil {
			*errs = append(*errs, err)
		}
	case e.Content == nil && e.Entries != nil:
		mode, err := ParsePerm(e.Perm, 0o755)
		if err != nil {
			*errs = append(*errs, fmt.Errorf("config: entry %s: %w", rel, err))
			return
		}
		if err := d.Mkdir(rel, mode); err != nil {
			*errs = append(*errs, err)
			return
		}
		for _, child := range sortedKeys(e.Entries) {
			d.expand(rel, child, e.Entries[child], errs)
		}
	default:
		*errs = append(*errs, fmt.Errorf("config: entry %s: exactly one of content and entries must be set", rel))
	}
}

// ParsePerm parses an octal permission string such as "0600"; "" gives def. Only permission
// bits (at most 0777) are accepted: setuid, setgid and sticky bits are refused.
func ParsePerm(s string, def fs.FileMode) (fs.FileMode, error) {
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil {
		return 0, fmt.Errorf("perm %q: not an octal number: %w", s, err)
	}
	if v > 0o777 {
		return 0, fmt.Errorf("perm %q: only permission bits (0000-0777) are allowed", s)
	}
	return fs.FileMode(v), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
