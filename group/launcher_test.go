package group

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mobykit/mobykit/group/fake"
	"github.com/mobykit/mobykit/launcher"
	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/discovery"
	"github.com/mobykit/mobykit/spi/rpc"
)

// The controller as the launcher runs it (Open: env options, file store, discovery), next to
// instance and flavor plugins on their own sockets; it is stopped in the middle of a rollout and
// started again on the same store, and finishes the rollout.
func TestLauncherRestartMidRollout(t *testing.T) {
	dir, err := os.MkdirTemp("", "grpl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	plugins := filepath.Join(dir, "p")
	if err := os.Mkdir(plugins, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvPollInterval, "30ms")
	stateDir := filepath.Join(dir, "groups")

	cloud := fake.New(nil)
	// New members need 200ms to become healthy, so the rollout takes several passes. While
	// hold is set, only the first member of the new version ("v":"2") becomes healthy: the
	// rollout cannot finish before the controller is stopped halfway through it.
	var hold atomic.Bool
	var mu sync.Mutex
	var firstNew spi.ID
	cloud.Health = func(inst fake.Instance, age time.Duration) spi.Health {
		if age < 200*time.Millisecond {
			return spi.Unknown
		}
		if hold.Load() && strings.Contains(string(inst.Spec.Properties), `"v":"2"`) {
			mu.Lock()
			defer mu.Unlock()
			if firstNew == "" {
				firstNew = inst.ID
			}
			if inst.ID != firstNew {
				return spi.Unknown
			}
		}
		return spi.Healthy
	}
	launcherTest.cloud, launcherTest.stateDir = cloud, stateDir
	registerLauncherKinds()
	ctx := context.Background()
	start := func(kind, name string) *launcher.Running {
		r, err := launcher.Start(ctx, plugins, launcher.Spec{Kind: kind, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	defer start("test-fake-instance", "fi").Stop()
	defer start("test-fake-flavor", "ff").Stop()
	g := start("test-group", "group")
	addr, err := discovery.Find(plugins, "group")
	if err != nil {
		t.Fatal(err)
	}
	client := rpc.NewGroupClient(addr, "group")
	mk := func(v string) spi.GroupSpec {
		return spi.GroupSpec{ID: "web", Properties: spi.Any(`{"Allocation":{"Size":3},"Instance":{"Plugin":"fi","Properties":{"v":"` + v + `"}},"Flavor":{"Plugin":"ff","Properties":{}},"Updating":{"MaxSurge":1}}`)}
	}
	if _, err := client.CommitGroup(ctx, mk("1"), false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 members", 5*time.Second, func() bool { n, _ := versions(cloud, "web", ""); return n == 3 })
	hold.Store(true)
	if _, err := client.CommitGroup(ctx, mk("2"), false); err != nil {
		t.Fatal(err)
	}
	var h2 string
	waitFor(t, "the first new member", 5*time.Second, func() bool {
		st, err := client.UpdateStatus(ctx, "web")
		h2 = st.TargetHash
		return err == nil && st.Updated >= 1
	})
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	_, mid := versions(cloud, "web", h2)
	if mid == 3 {
		t.Fatal("the rollout finished although only one new member could become healthy")
	}
	hold.Store(false)
	g = start("test-group", "group")
	defer g.Stop()
	waitFor(t, "the resumed rollout", 10*time.Second, func() bool {
		st, err := client.UpdateStatus(ctx, "web")
		n, cur := versions(cloud, "web", h2)
		return err == nil && st.Phase == "idle" && n == 3 && cur == 3
	})
	t.Logf("stopped with %d of 3 members updated; the restarted controller finished the rollout", mid)
}

// The kinds are registered once per test binary (-count=N runs the test again); the factories
// use the current run's cloud and state directory.
var (
	launcherTest struct {
		cloud    *fake.Cloud
		stateDir string
		store    StoreOptions
	}
	registerOnce sync.Once
)

func registerLauncherKinds() {
	registerOnce.Do(func() {
		launcher.Register("test-fake-instance", func(context.Context, launcher.Options) ([]rpc.Plugin, error) {
			return []rpc.Plugin{rpc.Instance(launcherTest.cloud)}, nil
		})
		launcher.Register("test-fake-flavor", func(context.Context, launcher.Options) ([]rpc.Plugin, error) {
			return []rpc.Plugin{rpc.Flavor(launcherTest.cloud.Flavor())}, nil
		})
		launcher.Register("test-group", func(ctx context.Context, o launcher.Options) ([]rpc.Plugin, error) {
			c, err := Open(ctx, launcherTest.stateDir, func(l string) (string, error) { return discovery.Find(o.Dir, l) }, quiet())
			if err != nil {
				return nil, err
			}
			go func() { <-ctx.Done(); c.Stop() }()
			return []rpc.Plugin{rpc.Group(c)}, nil
		})
		launcher.Register("test-group-etcd", func(ctx context.Context, o launcher.Options) ([]rpc.Plugin, error) {
			c, err := OpenService(ctx, OpenOptions{Store: launcherTest.store, Address: o.Address, Logger: quiet(),
				Find: func(l string) (string, error) { return discovery.Find(o.Dir, l) }})
			if err != nil {
				return nil, err
			}
			go func() { <-ctx.Done(); c.Stop() }()
			return []rpc.Plugin{rpc.Group(c)}, nil
		})
	})
}
