package group

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mobykit/mobykit/group/fake"
	"github.com/mobykit/mobykit/group/store"
	"github.com/mobykit/mobykit/spi"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func versions(c *fake.Cloud, id spi.GroupID, hash string) (total, current int) {
	for _, m := range c.Snapshot(id) {
		total++
		if m.Tags[spi.ConfigHashTag] == hash {
			current++
		}
	}
	return
}

func hashOf(t *testing.T, s spi.GroupSpec) string {
	c := New(fake.Plugins{Cloud: fake.New(nil)}, store.NewMemory(), Options{Manual: true, Logger: quiet()})
	if _, err := c.CommitGroup(context.Background(), s, false); err != nil {
		t.Fatal(err)
	}
	st, _ := c.UpdateStatus(context.Background(), s.ID)
	return st.TargetHash
}

// The background loops: a group converges, a killed member is replaced within a poll
// interval or two, a rolling update completes, and DestroyGroup removes everything.
func TestSupervisionLoop(t *testing.T) {
	const interval = 20 * time.Millisecond
	cloud := fake.New(nil)
	c := New(fake.Plugins{Cloud: cloud}, store.NewMemory(), Options{PollInterval: interval, Logger: quiet()})
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	ctx := context.Background()
	v1 := spec("web", 3, nil, "v1", false, `{"MaxSurge":1}`)
	if _, err := c.CommitGroup(ctx, v1, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 members", 5*time.Second, func() bool { n, _ := versions(cloud, "web", ""); return n == 3 })

	victim := cloud.Snapshot("web")[1].ID
	cloud.Kill(victim)
	killed := time.Now()
	waitFor(t, "replacement of a killed member", 5*time.Second, func() bool { n, _ := versions(cloud, "web", ""); return n == 3 })
	t.Logf("killed member replaced after %s (poll interval %s)", time.Since(killed).Round(time.Millisecond), interval)

	v2 := spec("web", 3, nil, "v2", false, `{"MaxSurge":1}`)
	h2 := hashOf(t, v2)
	details, err := c.CommitGroup(ctx, v2, false)
	if err != nil || details != "Performing a rolling update on 3 instances" {
		t.Fatalf("commit v2: %q %v", details, err)
	}
	waitFor(t, "rollout to v2", 5*time.Second, func() bool {
		st, _ := c.UpdateStatus(ctx, "web")
		n, cur := versions(cloud, "web", h2)
		return st.Phase == "idle" && n == 3 && cur == 3
	})
	d, err := c.DescribeGroup(ctx, "web")
	if err != nil || !d.Converged || len(d.Instances) != 3 {
		t.Fatalf("describe: %+v %v", d, err)
	}
	if err := c.DestroyGroup(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if n, _ := versions(cloud, "web", ""); n != 0 {
		t.Fatalf("%d members left after DestroyGroup", n)
	}
	if _, err := c.DescribeGroup(ctx, "web"); err == nil || err.Error() != "Group 'web' is not being watched" {
		t.Fatalf("describe after destroy: %v", err)
	}
}

// A controller killed mid-rollout and started again on the same file store resumes the
// rollout and adopts the members it finds by their tags.
func TestResumeFromFileStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "groups")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	cloud := fake.New(clock)
	newCtrl := func() *Controller {
		st, err := store.NewFileStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		c := New(fake.Plugins{Cloud: cloud}, st, Options{Manual: true, Now: clock, Logger: quiet()})
		if err := c.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx := context.Background()
	tick := func(c *Controller) {
		if _, err := c.Reconcile(ctx, "web"); err != nil {
			t.Fatal(err)
		}
		now = now.Add(10 * time.Second)
	}
	a := newCtrl()
	if _, err := a.CommitGroup(ctx, spec("web", 4, nil, "v1", false, ""), false); err != nil {
		t.Fatal(err)
	}
	tick(a)
	v2 := spec("web", 4, nil, "v2", false, "")
	h2 := hashOf(t, v2)
	if _, err := a.CommitGroup(ctx, v2, false); err != nil {
		t.Fatal(err)
	}
	tick(a)
	tick(a)
	_, cur := versions(cloud, "web", h2)
	if cur == 0 || cur == 4 {
		t.Fatalf("want a rollout in progress, %d members at v2", cur)
	}
	// "Kill" a: drop it without Stop; start b on the same directory.
	b := newCtrl()
	st, err := b.UpdateStatus(ctx, "web")
	if err != nil || st.Phase != "rolling" || st.TargetHash != h2 {
		t.Fatalf("restarted controller: %+v %v", st, err)
	}
	for i := 0; i < 20 && st.Phase != "idle"; i++ {
		tick(b)
		st, _ = b.UpdateStatus(ctx, "web")
	}
	n, cur := versions(cloud, "web", h2)
	if st.Phase != "idle" || n != 4 || cur != 4 {
		t.Fatalf("after resume: phase %s, %d members, %d at v2", st.Phase, n, cur)
	}
	specs, _ := b.InspectGroups(ctx)
	if len(specs) != 1 || !strings.Contains(string(specs[0].Properties), `"version":"v2"`) {
		t.Fatalf("InspectGroups after restart: %s", specs)
	}
	// FreeGroup forgets the group for good: a third controller does not know it.
	if err := b.FreeGroup(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	c := newCtrl()
	if _, err := c.Size(ctx, "web"); err == nil {
		t.Fatal("freed group came back after restart")
	}
}

func TestRolloutControlErrors(t *testing.T) {
	c := New(fake.Plugins{Cloud: fake.New(nil)}, store.NewMemory(), Options{Manual: true, Logger: quiet()})
	ctx := context.Background()
	if err := c.PauseUpdate(ctx, "nope"); err == nil || err.Error() != "Group 'nope' is not being watched" {
		t.Errorf("pause unknown: %v", err)
	}
	if _, err := c.CommitGroup(ctx, spec("web", 2, nil, "v1", false, ""), false); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func() error{
		"pause idle":       func() error { return c.PauseUpdate(ctx, "web") },
		"resume idle":      func() error { return c.ResumeUpdate(ctx, "web") },
		"rollback no prev": func() error { return c.RollbackUpdate(ctx, "web") },
		"negative size":    func() error { return c.SetSize(ctx, "web", -1) },
	} {
		if err := f(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := c.SetSize(ctx, "web", -1); err.Error() != "size cannot be negative" {
		t.Errorf("SetSize(-1): %v", err)
	}
	if _, err := c.CommitGroup(ctx, spec("q", 0, []string{"a", "b"}, "v1", false, ""), false); err != nil {
		t.Fatal(err)
	}
	if err := c.SetSize(ctx, "q", 3); err == nil || err.Error() != "cannot set size if logic ids are explicitly set" {
		t.Errorf("SetSize on quorum: %v", err)
	}
	if _, err := c.CommitGroup(ctx, spec("q", 0, []string{"a", "c"}, "v1", false, ""), false); err == nil || err.Error() != "Logical ID changes to a quorum is not currently supported" {
		t.Errorf("changing logical IDs: %v", err)
	}
	if _, err := c.CommitGroup(ctx, spi.GroupSpec{ID: "x", Properties: spi.Any(`{"Allocation":{"Size":1},"Instance":{"Plugin":"fake","Properties":{"invalid":true}},"Flavor":{"Plugin":"fake","Properties":{}}}`)}, true); err == nil || !strings.Contains(err.Error(), "invalid") {
		t.Errorf("Instance.Validate error not returned: %v", err)
	}
}

func TestDetails(t *testing.T) {
	for _, tc := range []struct {
		quorum                  bool
		oldSize, newSize, stale int
		want                    string
	}{
		{false, 2, 2, 0, "Noop"},
		{false, 2, 2, 2, "Performing a rolling update on 2 instances"},
		{false, 2, 3, 0, "Adding 1 instances to increase the group size to 3"},
		{false, 2, 3, 2, "Performing a rolling update on 2 instances, then adding 1 instances to increase the group size to 3"},
		{false, 2, 1, 2, "Terminating 1 instances to reduce the group size to 1, then performing a rolling update on 1 instances"},
		{false, 3, 1, 0, "Terminating 2 instances to reduce the group size to 1"},
		{false, 3, 1, 2, "Terminating 2 instances to reduce the group size to 1"},
		{true, 3, 3, 0, "Noop"},
		{true, 3, 3, 3, "Performing a rolling update on 3 instances"},
	} {
		if got := Details(tc.quorum, tc.oldSize, tc.newSize, tc.stale); got != tc.want {
			t.Errorf("Details(%v,%d,%d,%d) = %q, want %q", tc.quorum, tc.oldSize, tc.newSize, tc.stale, got, tc.want)
		}
	}
}

// SetSize during a paused rollout keeps it paused; a new config replaces it.
func TestSetSizeKeepsPausedRollout(t *testing.T) {
	cloud := fake.New(nil)
	c := New(fake.Plugins{Cloud: cloud}, store.NewMemory(), Options{Manual: true, Logger: quiet()})
	ctx := context.Background()
	c.CommitGroup(ctx, spec("web", 3, nil, "v1", false, ""), false)
	c.Reconcile(ctx, "web")
	c.CommitGroup(ctx, spec("web", 3, nil, "v2", false, ""), false)
	if err := c.PauseUpdate(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if err := c.SetSize(ctx, "web", 4); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.UpdateStatus(ctx, "web"); st.Phase != "paused" {
		t.Fatalf("SetSize unpaused the rollout: %+v", st)
	}
	c.CommitGroup(ctx, spec("web", 4, nil, "v3", false, ""), false)
	if st, _ := c.UpdateStatus(ctx, "web"); st.Phase != "rolling" {
		t.Fatalf("a new config did not start a new rollout: %+v", st)
	}
}

func TestOptionsFromEnv(t *testing.T) {
	t.Setenv(EnvPollInterval, "3s")
	t.Setenv(EnvSelfLogicalID, "10.0.0.1")
	t.Setenv(EnvMaxParallel, "4")
	o, err := OptionsFromEnv()
	if err != nil || o.PollInterval != 3*time.Second || o.SelfLogicalID != "10.0.0.1" || o.MaxParallel != 4 {
		t.Fatalf("%+v %v", o, err)
	}
	t.Setenv(EnvPollInterval, "soon")
	if _, err := OptionsFromEnv(); err == nil {
		t.Fatal("bad poll interval accepted")
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(context.Background(), filepath.Join(dir, "groups"), func(string) (string, error) { return "", os.ErrNotExist }, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	_, err = c.CommitGroup(context.Background(), spec("web", 1, nil, "v1", false, ""), true)
	if err == nil || err.Error() != "Failed to find Flavor plugin 'fake':plugin not found:fake" {
		t.Fatalf("%v", err)
	}
}

func TestDrainRules(t *testing.T) {
	ctx := context.Background()
	run := func(updating string, drainFails bool) (drains, destroys int, err error) {
		cloud := fake.New(nil)
		if drainFails {
			cloud.DrainError = func(spi.ID) error { return errors.New("node refuses to drain") }
		}
		c := New(fake.Plugins{Cloud: cloud}, store.NewMemory(), Options{Manual: true, Logger: quiet()})
		c.CommitGroup(ctx, spec("web", 1, nil, "v1", false, updating), false)
		c.Reconcile(ctx, "web")
		c.CommitGroup(ctx, spec("web", 1, nil, "v2", false, updating), false)
		for range 4 {
			if _, e := c.Reconcile(ctx, "web"); e != nil && err == nil {
				err = e
			}
		}
		calls := cloud.Calls()
		return calls["Flavor.Drain"], calls["Instance.Destroy"], err
	}
	if d, x, err := run(`{"MaxSurge":1}`, false); d != 1 || x != 1 || err != nil {
		t.Errorf("default: %d drains, %d destroys, %v; want Drain before the Destroy", d, x, err)
	}
	if d, x, err := run(`{"MaxSurge":1,"SkipBeforeInstanceDestroy":"drain"}`, false); d != 0 || x != 1 || err != nil {
		t.Errorf("skip drain: %d drains, %d destroys, %v", d, x, err)
	}
	if d, x, err := run(`{"MaxSurge":1}`, true); d != 1 || x != 0 || err == nil || !strings.Contains(err.Error(), "node refuses to drain") {
		t.Errorf("failed drain during a rolling update: %d drains, %d destroys, %v; want one drain, no destroy, the error and a pause", d, x, err)
	}
	// Terminate goes ahead when Drain fails (InfraKit's rule).
	cloud := fake.New(nil)
	cloud.DrainError = func(spi.ID) error { return errors.New("no") }
	c := New(fake.Plugins{Cloud: cloud}, store.NewMemory(), Options{Manual: true, Logger: quiet()})
	c.CommitGroup(ctx, spec("web", 2, nil, "v1", false, ""), false)
	c.Reconcile(ctx, "web")
	if err := c.SetSize(ctx, "web", 1); err != nil {
		t.Fatal(err)
	}
	c.Reconcile(ctx, "web")
	if n, _ := versions(cloud, "web", ""); n != 1 {
		t.Errorf("scale-down with failing Drain left %d members", n)
	}
}

// Concurrent calls of every method while the loops run (meant for -race).
func TestConcurrentCalls(t *testing.T) {
	cloud := fake.New(nil)
	c := New(fake.Plugins{Cloud: cloud}, store.NewMemory(), Options{PollInterval: 5 * time.Millisecond, Logger: quiet()})
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	ctx := context.Background()
	done := make(chan struct{})
	deadline := time.Now().Add(300 * time.Millisecond)
	for w := 0; w < 6; w++ {
		go func(w int) {
			defer func() { done <- struct{}{} }()
			id := []string{"a", "b"}[w%2]
			for i := 0; time.Now().Before(deadline); i++ {
				switch i % 8 {
				case 0:
					c.CommitGroup(ctx, spec(id, 1+i%4, nil, []string{"v1", "v2"}[i%2], false, ""), i%3 == 0)
				case 1:
					c.DescribeGroup(ctx, spi.GroupID(id))
				case 2:
					c.InspectGroups(ctx)
				case 3:
					c.SetSize(ctx, spi.GroupID(id), 1+i%3)
				case 4:
					c.PauseUpdate(ctx, spi.GroupID(id))
				case 5:
					c.ResumeUpdate(ctx, spi.GroupID(id))
				case 6:
					c.UpdateStatus(ctx, spi.GroupID(id))
				case 7:
					switch {
					case i%32 == 7:
						c.FreeGroup(ctx, spi.GroupID(id))
					case i%32 == 23:
						c.DestroyGroup(ctx, spi.GroupID(id))
					default:
						c.Size(ctx, spi.GroupID(id))
					}
				}
			}
		}(w)
	}
	for range 6 {
		<-done
	}
}

// A stored record whose rollout phase no controller writes ("failed", "done" of older
// documentation, or garbage) stops the start, naming the group; one without a phase is idle.
func TestStoredUnknownPhaseRefused(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		phase, resume spi.RolloutPhase
		want          string // "" means Start succeeds and the group is idle
	}{
		{"", "", ""},
		{"failed", "", `rollout phase "failed"`},
		{"done", "", `rollout phase "done"`},
		{spi.PhaseDestroying, "", `rollout phase "destroying"`},
		{spi.PhasePaused, spi.PhasePaused, `rollout resume phase "paused"`},
	} {
		st := store.NewMemory()
		s := spec("web", 1, nil, "v1", false, "")
		if err := st.Put(ctx, store.Record{ID: "web", Seq: 1, Spec: s, Rollout: store.Rollout{Phase: tc.phase, Resume: tc.resume}}); err != nil {
			t.Fatal(err)
		}
		c := New(fake.Plugins{Cloud: fake.New(nil)}, st, Options{Manual: true, Logger: quiet()})
		err := c.Start(ctx)
		if tc.want == "" {
			if err != nil {
				t.Fatalf("phase %q: %v", tc.phase, err)
			}
			if s, err := c.UpdateStatus(ctx, "web"); err != nil || s.Phase != spi.PhaseIdle {
				t.Fatalf("phase %q loaded as %+v %v, want idle", tc.phase, s, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "stored group web") {
			t.Fatalf("phase %q resume %q: Start = %v, want an error naming group web and %s", tc.phase, tc.resume, err, tc.want)
		}
	}
}
