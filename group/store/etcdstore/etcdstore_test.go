package etcdstore

import (
	"context"
	"errors"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mobykit/mobykit/group/store/storetest"
	"github.com/mobykit/mobykit/internal/etcdtest"
)

func newStore(t *testing.T) (*Store, *clientv3.Client) {
	cli := etcdtest.Start(t).Client(t)
	s, err := New(cli, "/test/groups/")
	if err != nil {
		t.Fatal(err)
	}
	return s, cli
}

func TestEtcdStoreContract(t *testing.T) {
	s, _ := newStore(t)
	storetest.Contract(t, s)
}

func TestEtcdStoreRefusesTraversingGroupID(t *testing.T) {
	s, _ := newStore(t)
	storetest.RefusesBadIDs(t, s)
}

// A value planted under the prefix that is too large, not a record, or holds another group's
// ID is refused on load with an error naming its key.
func TestEtcdStoreRejectsHostileRecords(t *testing.T) {
	ctx := context.Background()
	s, cli := newStore(t)
	for _, c := range []struct{ key, val, want string }{
		{"/test/groups/big", `{"ID":"big","Spec":{"ID":"big"},"x":"` + strings.Repeat("a", 1<<20) + `"}`, ""},
		{"/test/groups/torn", `{"ID":"torn","Spec":`, "truncated or corrupt"},
		{"/test/groups/other", `{"ID":"workers","Spec":{"ID":"workers"}}`, `holds group "workers"`},
		{"/test/groups/..%2Fx", `{"ID":"../x","Spec":{"ID":"../x"}}`, `"../x"`},
		{"/test/groups/spec", `{"ID":"spec","Spec":{"ID":"nope"}}`, `spec for group "nope"`},
	} {
		if c.want == "" {
			continue // etcd refuses values over its request limit itself; covered below
		}
		if _, err := cli.Put(ctx, c.key, c.val); err != nil {
			t.Fatal(err)
		}
		_, err := s.List(ctx)
		if err == nil || !strings.Contains(err.Error(), c.key) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("List with %s=%s: %v; want an error naming the key and %q", c.key, c.val, err, c.want)
		}
		if _, err := cli.Delete(ctx, c.key); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.decode("/test/groups/big", make([]byte, MaxRecordSize+1)); err == nil ||
		!strings.Contains(err.Error(), "/test/groups/big") || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized value: %v", err)
	}
}

// Records are read a page at a time: more records than one page all come back, in Seq order.
func TestEtcdStoreListsManyPages(t *testing.T) {
	s, _ := newStore(t)
	storetest.Many(t, s, 3*pageSize+5)
}

// A guarded store writes only while its guard holds; once the guard's key is gone every write
// is refused with ErrFenced and the record is unchanged.
func TestEtcdStoreFencedWriteRefused(t *testing.T) {
	ctx := context.Background()
	s, cli := newStore(t)
	if _, err := cli.Put(ctx, "/test/leader", "me"); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, "/test/leader")
	if err != nil {
		t.Fatal(err)
	}
	fencedCalls := 0
	g := s.WithGuard(func() { fencedCalls++ }, clientv3.Compare(clientv3.CreateRevision("/test/leader"), "=", resp.Kvs[0].CreateRevision))
	storetest.Contract(t, g)
	if err := g.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, "/test/leader"); err != nil {
		t.Fatal(err)
	}
	before, _ := s.List(ctx)
	r := before[0]
	r.Destroying = !r.Destroying
	if err := g.Put(ctx, r); !errors.Is(err, ErrFenced) {
		t.Fatalf("Put after losing the guard: %v, want ErrFenced", err)
	}
	if err := g.Delete(ctx, r.ID); !errors.Is(err, ErrFenced) {
		t.Fatalf("Delete after losing the guard: %v, want ErrFenced", err)
	}
	if err := g.Check(ctx); !errors.Is(err, ErrFenced) {
		t.Fatalf("Check after losing the guard: %v", err)
	}
	after, _ := s.List(ctx)
	if len(after) != len(before) || after[0].Destroying != before[0].Destroying || fencedCalls != 3 {
		t.Fatalf("fenced writes changed the store: %+v -> %+v (fenced %d)", before, after, fencedCalls)
	}
}
