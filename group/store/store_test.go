package store

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

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
			prev := spi.GroupSpec{ID: "a/../b", Properties: json.RawMessage(`{"Allocation":{"Size":1}}`)}
			recs := []Record{
				{ID: "workers", Seq: 2, Spec: spi.GroupSpec{ID: "workers", Properties: json.RawMessage(`{"Allocation":{"Size":2}}`)}},
				{ID: "a/../b", Seq: 1, Spec: prev, Previous: &prev, Rollout: Rollout{Phase: "rolling", TargetHash: "x", Started: time.Unix(100, 0).UTC()}},
				{ID: "..", Seq: 3, Spec: spi.GroupSpec{ID: "..", Properties: json.RawMessage(`{}`)}},
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
			want := []Record{recs[1], recs[0], recs[2]}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("List:\n got %+v\nwant %+v", got, want)
			}
			recs[0].Rollout.Phase = "paused"
			if err := s.Put(ctx, recs[0]); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(ctx, "a/../b"); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(ctx, "missing"); err != nil {
				t.Fatal(err)
			}
			got, _ = s.List(ctx)
			if len(got) != 2 || got[0].Rollout.Phase != "paused" || got[1].ID != ".." {
				t.Fatalf("after update+delete: %+v", got)
			}
		})
	}
}

func TestFileStoreStaysInsideDir(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "groups")
	s, err := NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []spi.GroupID{"../escape", "/abs", "..", "a\x00b"} {
		if err := s.Put(context.Background(), Record{ID: id}); err != nil {
			t.Fatalf("Put %q: %v", id, err)
		}
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 1 {
		t.Fatalf("files written outside the store: %v", entries)
	}
	got, err := s.List(context.Background())
	if err != nil || len(got) != 4 {
		t.Fatalf("List: %v %v", got, err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestFileStoreCorruptRecord(t *testing.T) {
	dir := t.TempDir()
	s, _ := NewFileStore(dir)
	os.WriteFile(filepath.Join(dir, "x.json"), []byte("{"), 0o600)
	if _, err := s.List(context.Background()); err == nil {
		t.Fatal("corrupt record accepted")
	}
}
