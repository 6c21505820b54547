package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mobykit/mobykit/group/types"
	"github.com/mobykit/mobykit/internal/atomicfile"
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
	// Destroying is set, durably, before DestroyGroup destroys the first member. The record is
	// deleted only once every member is gone; a controller that loads a record marked
	// Destroying finishes the destroy.
	Destroying bool `json:",omitempty"`
	// Source is where the record was loaded from (its file), for error messages; not stored.
	Source string `json:"-"`
}

// Rollout is the durable part of a rolling update; everything else (which members are new,
// which are healthy) is observed again from the plugins after a restart.
type Rollout struct {
	// Phase: spi.PhaseIdle, PhaseRolling, PhaseRollingBack or PhasePaused.
	Phase spi.RolloutPhase
	// Resume is the phase a paused rollout goes back to (rolling or rolling-back).
	Resume spi.RolloutPhase `json:",omitempty"`
	// TargetHash and PreviousHash are the config hashes rolled to and from.
	TargetHash   string `json:",omitempty"`
	PreviousHash string `json:",omitempty"`
	// Message says why the rollout is paused or what it last did.
	Message string `json:",omitempty"`
	// Started is when the rollout began; Updated when this record last changed.
	Started time.Time `json:",omitzero"`
	Updated time.Time `json:",omitzero"`
}

// Check refuses a rollout no controller writes: an unknown phase, or a Resume phase that is not
// a rollout's. A record from before phases were checked with no phase at all is idle.
func (r *Rollout) Check() error {
	switch r.Phase {
	case "":
		r.Phase = spi.PhaseIdle
	case spi.PhaseIdle, spi.PhaseRolling, spi.PhaseRollingBack, spi.PhasePaused:
	default:
		return fmt.Errorf("rollout phase %q: want %s, %s, %s or %s", r.Phase,
			spi.PhaseIdle, spi.PhaseRolling, spi.PhaseRollingBack, spi.PhasePaused)
	}
	if r.Resume != "" && !r.Resume.Rolling() {
		return fmt.Errorf("rollout resume phase %q: want %s or %s", r.Resume, spi.PhaseRolling, spi.PhaseRollingBack)
	}
	return nil
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
// temporary file in the same directory that is synced and renamed over the old one, and the
// directory is synced after every rename and remove, so a crash leaves either the old or the new
// record, never a torn one, and a deleted record stays deleted.
//
// The directory is opened as an os.Root: no file name, symbolic link or record content can make
// the store read or write outside it. Records are hostile input on load: a file that is not a
// regular file, larger than MaxRecordSize, not a record, or whose group ID does not match its
// name or is not a valid group ID is an error naming the file.
type FileStore struct {
	dir  string
	root *os.Root
	mu   sync.Mutex
}

var _ Store = (*FileStore)(nil)

// MaxRecordSize bounds a stored record (a group spec, the spec it replaced and the rollout).
const MaxRecordSize = 8 << 20

// maxFileName is the longest file name most file systems take.
const maxFileName = 255

// NewFileStore opens (creating, mode 0700) the directory dir.
func NewFileStore(dir string) (*FileStore, error) {
	if err := atomicfile.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("group store %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("group store %s: %w", dir, err)
	}
	return &FileStore{dir: dir, root: root}, nil
}

// Dir is the store's directory.
func (s *FileStore) Dir() string { return s.dir }

// Close releases the directory; the store must not be used afterwards.
func (s *FileStore) Close() error { return s.root.Close() }

// fileName maps a group ID to a file name that stays inside the directory: every byte that is
// not unreserved is %-escaped, and the ".json" suffix means "." and ".." never name a
// directory. It refuses IDs types.ValidateID refuses and names too long for a file system.
func fileName(id spi.GroupID) (string, error) {
	if err := types.ValidateID(id); err != nil {
		return "", fmt.Errorf("group store: %w", err)
	}
	name := url.PathEscape(string(id)) + ".json"
	if len(name) > maxFileName {
		return "", fmt.Errorf("group store: group ID %q makes a file name longer than %d bytes", id, maxFileName)
	}
	return name, nil
}

// List reads every record in the directory. Names not ending in ".json" (temporary files
// among them) are not records and are skipped.
func (s *FileStore) List(ctx context.Context) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.root.Open(".")
	if err != nil {
		return nil, fmt.Errorf("group store %s: %w", s.dir, err)
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("group store %s: %w", s.dir, err)
	}
	var out []Record
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		r, err := s.read(e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	sortRecords(out)
	return out, nil
}

// read loads and checks one record file.
func (s *FileStore) read(name string) (Record, error) {
	path := filepath.Join(s.dir, name)
	bad := func(format string, a ...any) (Record, error) {
		return Record{}, fmt.Errorf("group store record %s: %w", path, fmt.Errorf(format, a...))
	}
	// Lstat first: opening a FIFO would block, and a symbolic link is not a record.
	st, err := s.root.Lstat(name)
	if err != nil {
		return bad("%w", err)
	}
	if !st.Mode().IsRegular() {
		return bad("not a regular file (%s)", st.Mode().Type())
	}
	f, err := s.root.Open(name)
	if err != nil {
		return bad("%w", err)
	}
	defer f.Close()
	if fst, err := f.Stat(); err != nil || !os.SameFile(st, fst) {
		return bad("replaced while being read")
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxRecordSize+1))
	if err != nil {
		return bad("%w", err)
	}
	if len(b) > MaxRecordSize {
		return bad("larger than %d bytes", MaxRecordSize)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return bad("truncated or corrupt: %w", err)
	}
	want, err := fileName(r.ID)
	if err != nil {
		return bad("%w", err)
	}
	if want != name {
		return bad("holds group %q, which belongs in %s", r.ID, want)
	}
	if r.Spec.ID != r.ID {
		return bad("holds group %q with a spec for group %q", r.ID, r.Spec.ID)
	}
	r.Source = path
	return r, nil
}

// Put writes r atomically.
func (s *FileStore) Put(ctx context.Context, r Record) error {
	name, err := fileName(r.ID)
	if err != nil {
		return err
	}
	r.Source = ""
	b, err := json.Marshal(r) // compact: Properties blobs stay byte-identical
	if err != nil {
		return fmt.Errorf("group store: encode group %s: %w", r.ID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := atomicfile.WriteFileIn(s.root, name, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("group store: group %s: %w", r.ID, err)
	}
	return nil
}

// Delete removes the record of id.
func (s *FileStore) Delete(ctx context.Context, id spi.GroupID) error {
	name, err := fileName(id)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := atomicfile.RemoveIn(s.root, name); err != nil && !errors.Is(err, fs.ErrNotExist) {
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

// SortRecords orders records as List returns them: by Seq, then ID.
func SortRecords(rs []Record) { sortRecords(rs) }

func sortRecords(rs []Record) {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Seq != rs[j].Seq {
			return rs[i].Seq < rs[j].Seq
		}
		return rs[i].ID < rs[j].ID
	})
}
