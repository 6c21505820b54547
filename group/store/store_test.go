package store

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mobykit/mobykit/internal/atomicfile"
	"github.com/mobykit/mobykit/spi"
)

func stores(t *testing.T) map[string]Store {
	fs, err := NewFileStore(filepath.Join(t.TempDir(), "groups"))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]Store{"file": fs, "memory": NewMemory()}
}

func TestStores(t *testing.T) {
	ctx := context.Background()
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			prev := spi.GroupSpec{ID: "a b%c", Properties: json.RawMessage(`{"Allocation":{"Size":1}}`)}
			recs := []Record{
				{ID: "workers", Seq: 2, Spec: spi.GroupSpec{ID: "workers", Properties: json.RawMessage(`{"Allocation":{"Size":2}}`)}},
				{ID: "a b%c", Seq: 1, Spec: prev, Previous: &prev, Rollout: Rollout{Phase: "rolling", TargetHash: "x", Started: time.Unix(100, 0).UTC()}},
				{ID: "...", Seq: 3, Spec: spi.GroupSpec{ID: "...", Properties: json.RawMessage(`{}`)}, Destroying: true},
			}
			for _, r := range recs {
				if err := s.Put(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				got[i].Source = ""
			}
			want := []Record{recs[1], recs[0], recs[2]}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("List:\n got %+v\nwant %+v", got, want)
			}
			recs[0].Rollout.Phase = "paused"
			if err := s.Put(ctx, recs[0]); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(ctx, "a b%c"); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(ctx, "missing"); err != nil {
				t.Fatal(err)
			}
			got, _ = s.List(ctx)
			if len(got) != 2 || got[0].Rollout.Phase != "paused" || got[1].ID != "..." || !got[1].Destroying {
				t.Fatalf("after update+delete: %+v", got)
			}
		})
	}
}

// A group ID that reads as a path ("../../etc") is refused by Put and Delete, and a record file
// that holds one (or is a link out of the store) is refused on load with an error naming the
// file; nothing outside the store is ever read or written.
func TestStoreRejectsTraversingGroupID(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	dir := filepath.Join(base, "groups")
	s, err := NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, id := range []spi.GroupID{"../../etc", "../escape", "/abs", "..", "a\x00b"} {
		if err := s.Put(ctx, Record{ID: id, Spec: spi.GroupSpec{ID: id}}); err == nil {
			t.Errorf("Put %q accepted", id)
		}
		if err := s.Delete(ctx, id); err == nil {
			t.Errorf("Delete %q accepted", id)
		}
	}
	if ents, _ := os.ReadDir(base); len(ents) != 1 {
		t.Fatalf("files written outside the store: %v", ents)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files written for refused IDs: %v", ents)
	}

	// A planted record whose name matches its escaped ID.
	planted := filepath.Join(dir, "..%2F..%2Fetc.json")
	if err := os.WriteFile(planted, []byte(`{"ID":"../../etc","Spec":{"ID":"../../etc","Properties":{"Allocation":{"Size":1}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = s.List(ctx)
	if err == nil || !strings.Contains(err.Error(), planted) || !strings.Contains(err.Error(), `"../../etc"`) {
		t.Fatalf("List with a traversing record: %v; want an error naming %s and the ID", err, planted)
	}
	os.Remove(planted)

	// A record that is a link to a file outside the store.
	outside := filepath.Join(base, "outside.json")
	if err := os.WriteFile(outside, []byte(`{"ID":"x","Spec":{"ID":"x"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "x.json")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	_, err = s.List(ctx)
	if err == nil || !strings.Contains(err.Error(), link) {
		t.Fatalf("List with a link out of the store: %v; want an error naming %s", err, link)
	}
	// Put replaces the link itself, never the file it points to.
	if err := s.Put(ctx, Record{ID: "x", Spec: spi.GroupSpec{ID: "x"}, Seq: 7}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(outside); !strings.Contains(string(b), `"ID":"x"`) || strings.Contains(string(b), `"Seq":7`) {
		t.Fatalf("file outside the store changed: %s", b)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// A truncated, corrupt, oversized or mismatched record stops the load with an error that names
// the file, so that an operator knows which one to repair.
func TestStoreCorruptFileNamed(t *testing.T) {
	for _, tc := range []struct {
		name, file, content, want string
	}{
		{"truncated", "web.json", `{"ID":"web","Seq":1,"Spec":{"ID":"web","Properties":{"Alloc`, "truncated or corrupt"},
		{"empty", "web.json", ``, "truncated or corrupt"},
		{"not a record", "web.json", `[1,2]`, "truncated or corrupt"},
		{"blank id", "web.json", `{}`, "Group ID must not be blank"},
		{"other group", "web.json", `{"ID":"db","Spec":{"ID":"db"}}`, `holds group "db", which belongs in db.json`},
		{"spec of another group", "web.json", `{"ID":"web","Spec":{"ID":"db"}}`, `spec for group "db"`},
		{"oversized", "web.json", `{"ID":"web","Spec":{"ID":"web"},"Pad":"` + strings.Repeat("x", MaxRecordSize) + `"}`, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := NewFileStore(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			path := filepath.Join(dir, tc.file)
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = s.List(context.Background())
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("List: %v; want an error naming %s and saying %q", err, path, tc.want)
			}
		})
	}
	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		s, _ := NewFileStore(dir)
		defer s.Close()
		path := filepath.Join(dir, "web.json")
		os.Mkdir(path, 0o700)
		if _, err := s.List(context.Background()); err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("List: %v; want an error naming %s", err, path)
		}
	})
}

// The store syncs its directory after every rename (Put), remove (Delete) and mkdir (a new
// store), so that a crash cannot bring back a replaced or deleted record or lose a new one.
func TestStoreSyncsDirAfterRename(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	dir := filepath.Join(base, "state", "groups")
	var synced []string
	atomicfile.TestHookDirSynced = func(d string) { synced = append(synced, filepath.Clean(d)) }
	defer func() { atomicfile.TestHookDirSynced = nil }()
	count := func(d string) int {
		n := 0
		for _, x := range synced {
			if x == d {
				n++
			}
		}
		return n
	}

	s, err := NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if count(base) != 1 || count(filepath.Join(base, "state")) != 1 {
		t.Fatalf("new folders' parents synced %q; want %s and %s/state", synced, base, base)
	}
	synced = nil
	if err := s.Put(ctx, Record{ID: "web", Spec: spi.GroupSpec{ID: "web"}}); err != nil {
		t.Fatal(err)
	}
	if count(dir) != 1 {
		t.Fatalf("Put synced %q; want the store folder after the rename", synced)
	}
	synced = nil
	if err := s.Delete(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if count(dir) != 1 {
		t.Fatalf("Delete synced %q; want the store folder after the remove", synced)
	}
}
