// Package storetest is the contract every group/store.Store passes: the file store, the
// in-memory store and the etcd store run the same tests.
package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/mobykit/mobykit/group/store"
	"github.com/mobykit/mobykit/spi"
)

// Contract runs the store contract against the empty store s.
func Contract(t *testing.T, s store.Store) {
	t.Helper()
	ctx := context.Background()
	got, err := s.List(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("List of an empty store: %v, %v", got, err)
	}
	prev := spi.GroupSpec{ID: "a b%c", Properties: json.RawMessage(`{"Allocation":{"Size":1}}`)}
	recs := []store.Record{
		{ID: "workers", Seq: 2, Spec: spi.GroupSpec{ID: "workers", Properties: json.RawMessage(`{"Allocation":{"Size":2}}`)}},
		{ID: "a b%c", Seq: 1, Spec: prev, Previous: &prev, Rollout: store.Rollout{Phase: "rolling", TargetHash: "x", Started: time.Unix(100, 0).UTC()}},
		{ID: "...", Seq: 3, Spec: spi.GroupSpec{ID: "...", Properties: json.RawMessage(`{}`)}, Destroying: true},
	}
	for _, r := range recs {
		if err := s.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err = s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		got[i].Source = ""
	}
	want := []store.Record{recs[1], recs[0], recs[2]}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("List:\n got %+v\nwant %+v", got, want)
	}
	// Properties blobs come back byte-identical (they are hashed).
	if string(got[1].Spec.Properties) != `{"Allocation":{"Size":2}}` {
		t.Fatalf("Properties changed: %s", got[1].Spec.Properties)
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
	got, err = s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Rollout.Phase != "paused" || got[1].ID != "..." || !got[1].Destroying {
		t.Fatalf("after update+delete: %+v", got)
	}
	// A record changed by the caller after Put is not changed in the store.
	r := store.Record{ID: "copy", Seq: 4, Spec: spi.GroupSpec{ID: "copy", Properties: json.RawMessage(`{"a":1}`)}}
	if err := s.Put(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.Spec.Properties[5] = '2'
	got, _ = s.List(ctx)
	if string(got[len(got)-1].Spec.Properties) != `{"a":1}` {
		t.Fatalf("stored record aliases the caller's: %s", got[len(got)-1].Spec.Properties)
	}
}

// RefusesBadIDs checks that IDs that would read as paths or keys of other groups are refused
// by Put and Delete.
func RefusesBadIDs(t *testing.T, s store.Store) {
	t.Helper()
	ctx := context.Background()
	for _, id := range []spi.GroupID{"../../etc", "../escape", "/abs", "..", "a\x00b"} {
		if err := s.Put(ctx, store.Record{ID: id, Spec: spi.GroupSpec{ID: id}}); err == nil {
			t.Errorf("Put %q accepted", id)
		}
		if err := s.Delete(ctx, id); err == nil {
			t.Errorf("Delete %q accepted", id)
		}
	}
	if got, err := s.List(ctx); err != nil || len(got) != 0 {
		t.Fatalf("records written for refused IDs: %v %v", got, err)
	}
}

// Many puts n records and checks that List returns all of them in Seq order.
func Many(t *testing.T, s store.Store, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		id := spi.GroupID(fmt.Sprintf("g%04d", n-i))
		if err := s.Put(ctx, store.Record{ID: id, Seq: uint64(i + 1), Spec: spi.GroupSpec{ID: id}}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("List returned %d records, want %d", len(got), n)
	}
	for i, r := range got {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has Seq %d", i, r.Seq)
		}
	}
}
