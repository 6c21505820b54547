package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mobykit/mobykit/spi"
)

// Record is one group's durable state.
type Record struct {
	// ID is the group ID (Spec.ID).
	ID spi.GroupID
	// Seq orders groups by first commit; InspectGroups lists them in this order.
	Seq uint64
	// Spec is the committed spec the controller converges to.
	Spec spi.GroupSpec
	// Previous is the last committed spec with a different config hash: what a rollback goes
	// back to. Nil until the config changes once.
	Previous *spi.GroupSpec `json:",omitempty"`
	// Rollout is the progress of the current (or last) rolling update.
	Rollout Rollout
}

// Rollout is the durable part of a rolling update; everything else (which members are new,
// which are healthy) is observed again from the plugins after a restart.
type Rollout struct {
	// Phase: "idle", "rolling", "rolling-back" or "paused" (see package plan).
	Phase string
	// Resume is the phase a paused rollout goes back to ("rolling" or "rolling-back").
	Resume string `json:",omitempty"`
	// TargetHash and PreviousHash are the config hashes rolled to and from.
	TargetHash   string `json:",omitempty"`
	PreviousHash string `json:",omitempty"`
	// Message says why the rollout is paused or what it last did.
	Message string `json:",omitempty"`
	// Started is when the rollout began; Updated when this record last changed.
	Started time.Time `json:",omitzero"`
	Updated time.Time `json:",omitzero"`
}

// Store persists Records. Implementations are safe for concurrent use.
type Store interface {
	// List returns every record, ordered by Seq.
	List(ctx context.Context) ([]Record, error)
	// Put creates or replaces the record for r.ID.
	Put(ctx context.Context, r Record) error
	// Delete removes the record for id; deleting a missing record is not an error.
	Delete(ctx context.Context, id spi.GroupID) error
}

// EnvDir names the environment variable that overrides the file store's directory.
const EnvDir = "MOBYKIT_GROUP_DIR"

// DefaultDir is $MOBYKIT_GROUP_DIR, else $INFRAKIT_HOME/groups when INFRAKIT_HOME is set (so a
// controller started for one InfraKit home never picks up another's groups), else
// ~/.mobykit/groups.
func DefaultDir() (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		return d, nil
	}
	if h := os.Getenv("INFRAKIT_HOME"); h != "" {
		return filepath.Join(h, "groups"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("group store directory: %w", err)
	}
	return filepath.Join(home, ".mobykit", "groups"), nil
}

// FileStore keeps one <escaped group ID>.json per group in a directory. Writes go to a
// temporary file in the same directory that is synced and renamed over the old one, so a crash
// leaves either the old or the new record, never a torn one.
type FileStore struct {
	dir string
	mu  sync.Mutex
}

var _ Store = (*FileStore)(nil)

// NewFileStore opens (creating, mode 0700) the directory dir.
func NewFileStore(dir string) (*FileStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("group store %s: %w", dir, err)
	}
	return &FileStore{dir: dir}, nil
}

// Dir is the store's directory.
func (s *FileStore) Dir() string { return s.dir }

// fileName maps a group ID to a file name that stays inside the directory: every byte that is
// not unreserved, "/" included, is %-escaped, and the ".json" suffix means "." and ".." never
// name a directory.
func fileName(id spi.GroupID) string {
	return url.PathEscape(string(id)) + ".json"
}

// List reads every record in the directory.
func (s *FileStore) List(ctx context.Context) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("group store %s: %w", s.dir, err)
	}
	var out []Record
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(s.dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("group store: %w", err)
		}
		var r Record
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("group store record %s: %w", path, err)
		}
		if fileName(r.ID) != e.Name() {
			return nil, fmt.Errorf("group store record %s holds group %q", path, r.ID)
		}
		out = append(out, r)
	}
	sortRecords(out)
	return out, nil
}

// Put writes r atomically.
func (s *FileStore) Put(ctx context.Context, r Record) error {
	if r.ID == "" {
		return errors.New("group store: record without a group ID")
	}
	b, err := json.Marshal(r) // compact: Properties blobs stay byte-identical
	if err != nil {
		return fmt.Errorf("group store: encode group %s: %w", r.ID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	final := filepath.Join(s.dir, fileName(r.ID))
	tmp, err := os.CreateTemp(s.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("group store: write group %s: %w", r.ID, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("group store: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("group store: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("group store: close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return fmt.Errorf("group store: write group %s: %w", r.ID, err)
	}
	return nil
}

// Delete removes the record of id.
func (s *FileStore) Delete(ctx context.Context, id spi.GroupID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	path := filepath.Join(s.dir, fileName(id))
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("group store: delete group %s: %w", id, err)
	}
	return nil
}

// Memory is an in-memory Store for tests and for a controller that must forget everything.
type Memory struct {
	mu sync.Mutex
	m  map[spi.GroupID][]byte
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{m: map[spi.GroupID][]byte{}} }

// List returns copies of the records.
func (s *Memory) List(ctx context.Context) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Record
	for _, b := range s.m {
		var r Record
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	sortRecords(out)
	return out, nil
}

// Put stores a copy of r (encoded, so that later changes to r's slices do not leak in).
func (s *Memory) Put(ctx context.Context, r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("group store: encode group %s: %w", r.ID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[r.ID] = b
	return nil
}

// Delete removes id.
func (s *Memory) Delete(ctx context.Context, id spi.GroupID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
	return nil
}

func sortRecords(rs []Record) {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Seq != rs[j].Seq {
			return rs[i].Seq < rs[j].Seq
		}
		return rs[i].ID < rs[j].ID
	})
}
