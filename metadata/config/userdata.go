package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	if len(data) > MaxData {
		return fmt.Errorf("config: userdata not expanded: %w", &TooLargeError{Source: "userdata", Size: int64(len(data)), Limit: MaxData})
	}
	// Bound the document's shape before decoding it, so that a small document of many tiny or
	// deeply nested entries cannot cost more memory than its entries are allowed to.
	if isJSON, err := checkShape(data); !isJSON {
		slog.Debug("userdata is not a JSON config document; kept raw only", "err", err)
		return nil
	} else if err != nil {
		return fmt.Errorf("config: userdata not expanded (kept raw in %s): %w", UserdataFile, err)
	}
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		slog.Debug("userdata is not a JSON config document; kept raw only", "err", err)
		return nil
	}
	return d.Expand(f)
}

// checkShape reads the JSON document's tokens without decoding it and reports whether it is
// JSON at all and, if it is, an error when it holds more than MaxEntries entries (objects at
// an entry's depth) or nests entries deeper than MaxDepth.
func checkShape(data []byte) (isJSON bool, err error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	depth, entries := 0, 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
			// The document is an object of entries; an entry's children are in the object
			// under its "entries": entries sit at even depths, level depth/2.
			if depth/2 > MaxDepth {
				return true, fmt.Errorf("entries nest deeper than %d levels", MaxDepth)
			}
			if depth%2 == 0 {
				if entries++; entries > MaxEntries {
					return true, fmt.Errorf("more than %d entries", MaxEntries)
				}
			}
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
}

// budget counts what an expansion has written, against MaxEntries and MaxData.
type budget struct {
	entries int
	bytes   int64
	full    bool
}

// Expand writes the entries of f under the root, in sorted name order, and returns every
// skipped entry's reason joined. At most MaxEntries entries, MaxDepth levels and MaxData bytes
// of content are written; the entries beyond are skipped and reported.
func (d *Dir) Expand(f File) error {
	var errs []error
	b := &budget{}
	for _, name := range sortedKeys(f) {
		if slices.Contains(reserved, name) {
			errs = append(errs, fmt.Errorf("config: entry %q: name is reserved for the agent", name))
			continue
		}
		d.expand("", name, f[name], 1, b, &errs)
	}
	return errors.Join(errs...)
}

func (d *Dir) expand(parent, name string, e Entry, level int, b *budget, errs *[]error) {
	if b.full {
		return
	}
	if err := CheckName(name); err != nil {
		*errs = append(*errs, fmt.Errorf("config: entry under %q: %w", "/"+parent, err))
		return
	}
	rel := path.Join(parent, name)
	if level > MaxDepth {
		*errs = append(*errs, fmt.Errorf("config: entry %s: deeper than %d levels; skipped", rel, MaxDepth))
		return
	}
	if b.entries++; b.entries > MaxEntries {
		b.full = true
		*errs = append(*errs, fmt.Errorf("config: entry %s: more than %d entries; it and the rest are skipped", rel, MaxEntries))
		return
	}
	switch {
	case e.Content != nil && e.Entries == nil:
		mode, err := ParsePerm(e.Perm, 0o644)
		if err != nil {
			*errs = append(*errs, fmt.Errorf("config: entry %s: %w", rel, err))
			return
		}
		if b.bytes += int64(len(*e.Content)); b.bytes > MaxData {
			b.full = true
			*errs = append(*errs, fmt.Errorf("config: entry %s: content past %d bytes in all; it and the rest are skipped", rel, MaxData))
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
			d.expand(rel, child, e.Entries[child], level+1, b, errs)
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
