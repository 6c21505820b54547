package group

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mobykit/mobykit/group/fake"
	"github.com/mobykit/mobykit/group/store"
	"github.com/mobykit/mobykit/spi"
)

// storedDestroying reports whether st holds group id and whether it is marked Destroying.
func storedDestroying(t *testing.T, st store.Store, id spi.GroupID) (stored, destroying bool) {
	t.Helper()
	recs, err := st.List(context.Background())
	if err != nil {
		t.Errorf("store: %v", err)
		return false, false
	}
	for _, r := range recs {
		if r.ID == id {
			return true, r.Destroying
		}
	}
	return false, false
}

// guardForget makes every Destroy of the cloud check that the group is still recorded and
// marked Destroying: the group is forgotten only after its last member is gone.
func guardForget(t *testing.T, cloud *fake.Cloud, st store.Store, id spi.GroupID, also func(n int)) *int {
	n := 0
	cloud.OnDestroy = func(*fake.Cloud) {
		n++
		if stored, destroying := storedDestroying(t, st, id); !stored || !destroying {
			t.Errorf("destroy %d: group stored=%v destroying=%v; want it recorded and marked destroying until every member is gone", n, stored, destroying)
		}
		if also != nil {
			also(n)
		}
	}
	return &n
}

// checkBeingDestroyed checks what a group that is being destroyed looks like to callers.
func checkBeingDestroyed(t *testing.T, c *Controller, id spi.GroupID, members int, message string) {
	t.Helper()
	ctx := context.Background()
	st, err := c.UpdateStatus(ctx, id)
	if err != nil || st.Phase != spi.PhaseDestroying || !strings.Contains(st.Message, message) {
		t.Errorf("UpdateStatus: %+v %v; want phase %s, message naming %q", st, err, spi.PhaseDestroying, message)
	}
	d, err := c.DescribeGroup(ctx, id)
	if err != nil || d.Converged || len(d.Instances) != members {
		t.Errorf("DescribeGroup: %d members, converged %v, %v; want %d members, not converged", len(d.Instances), d.Converged, err, members)
	}
	if specs, err := c.InspectGroups(ctx); err != nil || len(specs) != 1 || specs[0].ID != id {
		t.Errorf("InspectGroups: %v %v; want the group still listed", specs, err)
	}
	if _, err := c.CommitGroup(ctx, spec(string(id), 4, nil, "v2", false, ""), false); !errors.Is(err, ErrDestroying) || !strings.Contains(err.Error(), string(id)) {
		t.Errorf("CommitGroup while destroying: %v; want ErrDestroying naming the group", err)
	}
	if err := c.SetSize(ctx, id, 9); !errors.Is(err, ErrDestroying) {
		t.Errorf("SetSize while destroying: %v; want ErrDestroying", err)
	}
	if err := c.DestroyInstances(ctx, id, nil); !errors.Is(err, ErrDestroying) {
		t.Errorf("DestroyInstances while destroying: %v; want ErrDestroying", err)
	}
}

// The controller "crashes" after destroying two of four members (the request is abandoned
// mid-destroy). A new controller on the same store finds the group marked destroying, says so,
// refuses to change it, finishes the destroy and only then forgets the group.
func TestDestroyGroupCrashResumes(t *testing.T) {
	for _, mode := range []string{"reconcile", "loop"} {
		t.Run(mode, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "groups")
			cloud := fake.New(nil)
			// open starts a controller on the store; guard runs before Start (the loop's first
			// pass may destroy at once).
			open := func(manual bool, guard func(store.Store)) (*Controller, store.Store) {
				st, err := store.NewFileStore(dir)
				if err != nil {
					t.Fatal(err)
				}
				if guard != nil {
					guard(st)
				}
				c := New(fake.Plugins{Cloud: cloud}, st, Options{Manual: manual, PollInterval: time.Hour, Logger: quiet()})
				if err := c.Start(context.Background()); err != nil {
					t.Fatal(err)
				}
				return c, st
			}
			ctx := context.Background()
			first, st := open(true, nil)
			if _, err := first.CommitGroup(ctx, spec("web", 4, nil, "v1", false, ""), false); err != nil {
				t.Fatal(err)
			}
			if _, err := first.Reconcile(ctx, "web"); err != nil {
				t.Fatal(err)
			}
			if n, _ := versions(cloud, "web", ""); n != 4 {
				t.Fatalf("%d members, want 4", n)
			}

			crash, stop := context.WithCancel(ctx)
			guardForget(t, cloud, st, "web", func(n int) {
				if n == 2 {
					stop() // the process dies here
				}
			})
			err := first.DestroyGroup(crash, "web")
			left := cloud.Snapshot("web")
			if len(left) != 2 {
				t.Fatalf("%d members left after the crash, want 2", len(left))
			}
			if err == nil || !strings.Contains(err.Error(), string(left[0].ID)) || !strings.Contains(err.Error(), string(left[1].ID)) {
				t.Fatalf("DestroyGroup interrupted: %v; want an error naming %s and %s", err, left[0].ID, left[1].ID)
			}
			if stored, destroying := storedDestroying(t, st, "web"); !stored || !destroying {
				t.Fatalf("after the crash: stored=%v destroying=%v; want the group kept, marked destroying", stored, destroying)
			}

			// A new controller on the same store ("first" is abandoned as a crashed process).
			var n *int
			guard := func(st store.Store) { n = guardForget(t, cloud, st, "web", nil) }
			if mode == "reconcile" {
				second, _ := open(true, guard)
				checkBeingDestroyed(t, second, "web", 2, "DestroyGroup unfinished")
				if _, err := second.Reconcile(ctx, "web"); err != nil {
					t.Fatalf("resumed destroy: %v", err)
				}
				if _, err := second.DescribeGroup(ctx, "web"); err == nil || err.Error() != "Group 'web' is not being watched" {
					t.Errorf("describe after the resumed destroy: %v", err)
				}
			} else {
				// Start alone resumes it: the loop's first pass finishes the destroy.
				second, st2 := open(false, guard)
				defer second.Stop()
				waitFor(t, "the loop to finish the destroy", 10*time.Second, func() bool {
					stored, _ := storedDestroying(t, st2, "web")
					return !stored
				})
			}
			if *n != 2 {
				t.Errorf("%d destroys after the restart, want 2", *n)
			}
			if n, _ := versions(cloud, "web", ""); n != 0 {
				t.Errorf("%d members left after the resumed destroy", n)
			}
			if stored, _ := storedDestroying(t, st, "web"); stored {
				t.Errorf("group still stored after every member is gone")
			}
		})
	}
}

// A Destroy that fails keeps the group (recorded, marked destroying) and DestroyGroup returns an
// error naming the instance; once the plugin works again, DestroyGroup finishes.
func TestDestroyGroupPluginFailureKeepsGroup(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "groups")
	st, err := store.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	cloud := fake.New(nil)
	c := New(fake.Plugins{Cloud: cloud}, st, Options{Manual: true, Logger: quiet()})
	if _, err := c.CommitGroup(ctx, spec("web", 3, nil, "v1", false, ""), false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reconcile(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	members := cloud.Snapshot("web")
	stuck := members[1].ID
	cloud.DestroyError = func(id spi.ID) error {
		if id == stuck {
			return errors.New("plugin unavailable")
		}
		return nil
	}
	guardForget(t, cloud, st, "web", nil)
	err = c.DestroyGroup(ctx, "web")
	if err == nil || !strings.Contains(err.Error(), string(stuck)) || !strings.Contains(err.Error(), "plugin unavailable") {
		t.Fatalf("DestroyGroup with a failing Destroy: %v; want an error naming %s and the cause", err, stuck)
	}
	for _, m := range members {
		if m.ID != stuck && strings.Contains(err.Error(), string(m.ID)) {
			t.Errorf("error names %s, which was destroyed: %v", m.ID, err)
		}
	}
	if left := cloud.Snapshot("web"); len(left) != 1 || left[0].ID != stuck {
		t.Fatalf("members left %v, want only %s", left, stuck)
	}
	if stored, destroying := storedDestroying(t, st, "web"); !stored || !destroying {
		t.Fatalf("stored=%v destroying=%v; want the group kept, marked destroying", stored, destroying)
	}
	checkBeingDestroyed(t, c, "web", 1, string(stuck))
	// The supervision pass retries, and keeps failing while the plugin does.
	if _, err := c.Reconcile(ctx, "web"); err == nil || !strings.Contains(err.Error(), string(stuck)) {
		t.Errorf("retry while the plugin fails: %v", err)
	}

	cloud.DestroyError = nil
	if err := c.DestroyGroup(ctx, "web"); err != nil {
		t.Fatalf("DestroyGroup once the plugin works: %v", err)
	}
	if n, _ := versions(cloud, "web", ""); n != 0 {
		t.Errorf("%d members left", n)
	}
	if stored, _ := storedDestroying(t, st, "web"); stored {
		t.Errorf("group still stored after every member is gone")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("files left in the store: %v", ents)
	}
	// The ID is free again.
	if _, err := c.CommitGroup(ctx, spec("web", 1, nil, "v1", false, ""), false); err != nil {
		t.Errorf("commit after the destroy: %v", err)
	}
}

// FreeGroup gives up on an unfinished destroy: the group is forgotten, what is left is left.
func TestFreeGroupAbandonsUnfinishedDestroy(t *testing.T) {
	ctx := context.Background()
	st := store.NewMemory()
	cloud := fake.New(nil)
	c := New(fake.Plugins{Cloud: cloud}, st, Options{Manual: true, Logger: quiet()})
	c.CommitGroup(ctx, spec("web", 2, nil, "v1", false, ""), false)
	c.Reconcile(ctx, "web")
	cloud.DestroyError = func(spi.ID) error { return errors.New("no") }
	if err := c.DestroyGroup(ctx, "web"); err == nil {
		t.Fatal("DestroyGroup succeeded with a failing plugin")
	}
	if err := c.FreeGroup(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if stored, _ := storedDestroying(t, st, "web"); stored {
		t.Error("group still stored after FreeGroup")
	}
	if n, _ := versions(cloud, "web", ""); n != 2 {
		t.Errorf("%d members left, want both", n)
	}
}

// A stored record that is valid JSON but not a valid group stops Start with an error naming
// the file.
func TestStartNamesBadStoredFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web.json")
	if err := os.WriteFile(path, []byte(`{"ID":"web","Spec":{"ID":"web","Properties":{"Allocation":{}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := store.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := New(fake.Plugins{Cloud: fake.New(nil)}, st, Options{Manual: true, Logger: quiet()})
	err = c.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "Allocation must not be blank") {
		t.Fatalf("Start: %v; want an error naming %s", err, path)
	}
}

// A group ID that reads as a path is refused at commit, before anything is stored or sent to a
// plugin.
func TestCommitRejectsTraversingGroupID(t *testing.T) {
	st := store.NewMemory()
	cloud := fake.New(nil)
	c := New(fake.Plugins{Cloud: cloud}, st, Options{Manual: true, Logger: quiet()})
	_, err := c.CommitGroup(context.Background(), spec("../../etc", 1, nil, "v1", false, ""), false)
	if err == nil || !strings.Contains(err.Error(), `"../../etc"`) {
		t.Fatalf("CommitGroup ../../etc: %v", err)
	}
	if recs, _ := st.List(context.Background()); len(recs) != 0 || cloud.TotalCalls() != 0 {
		t.Fatalf("stored %v, %d plugin calls; want nothing", recs, cloud.TotalCalls())
	}
}
