package group

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mobykit/mobykit/group/fake"
	"github.com/mobykit/mobykit/group/store"
	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/rpc"
)

// The whole wire path on real unix sockets: the fake cloud served as instance and flavor
// plugins, the controller resolving them with RPCPlugins and itself served as the group
// plugin, driven by the rpc group client, rollout extension included.
func TestOverUnixSockets(t *testing.T) {
	dir, err := os.MkdirTemp("", "grp") // short path: unix socket names are limited
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cloud := fake.New(nil)
	inst, err := rpc.Start(filepath.Join(dir, "fakeinst"), rpc.Instance(cloud))
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	flav, err := rpc.Start(filepath.Join(dir, "fakeflavor"), rpc.Flavor(cloud.Flavor()))
	if err != nil {
		t.Fatal(err)
	}
	defer flav.Close()
	find := func(lookup string) (string, error) {
		p := filepath.Join(dir, lookup)
		if _, err := os.Stat(p); err != nil {
			return "", err
		}
		return p, nil
	}
	c := New(RPCPlugins{Find: find}, store.NewMemory(), Options{PollInterval: 20 * time.Millisecond, Logger: quiet()})
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	srv, err := rpc.Start(filepath.Join(dir, "group"), rpc.Group(c))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	client := rpc.NewGroupClient(filepath.Join(dir, "group"), "group")
	ctx := context.Background()

	mk := func(version, flavor string) spi.GroupSpec {
		return spi.GroupSpec{ID: "web", Properties: spi.Any(`{"Allocation":{"Size":2},"Instance":{"Plugin":"fakeinst","Properties":{"v":"` + version + `"}},"Flavor":{"Plugin":"` + flavor + `","Properties":{}}}`)}
	}
	if _, err := client.CommitGroup(ctx, mk("1", "nosuch"), true); err == nil || err.Error() != "Failed to find Flavor plugin 'nosuch':plugin not found:nosuch" {
		t.Fatalf("unknown flavor: %v", err)
	}
	if d, err := client.CommitGroup(ctx, mk("1", "fakeflavor"), false); err != nil || d != "Managing 2 instances" {
		t.Fatalf("commit: %q %v", d, err)
	}
	waitFor(t, "2 members", 5*time.Second, func() bool { n, _ := versions(cloud, "web", ""); return n == 2 })
	if d, err := client.CommitGroup(ctx, mk("2", "fakeflavor"), false); err != nil || d != "Performing a rolling update on 2 instances" {
		t.Fatalf("commit v2: %q %v", d, err)
	}
	waitFor(t, "rollout done", 5*time.Second, func() bool {
		st, err := client.UpdateStatus(ctx, "web")
		return err == nil && st.Phase == "idle" && st.Updated == 2 && st.Outdated == 0
	})
	desc, err := client.DescribeGroup(ctx, "web")
	if err != nil || !desc.Converged || len(desc.Instances) != 2 {
		t.Fatalf("describe: %+v %v", desc, err)
	}
	if err := client.PauseUpdate(ctx, "web"); err == nil || err.Error() != "group web has no rollout in progress" {
		t.Fatalf("pause when idle: %v", err)
	}
	if n, err := client.Size(ctx, "web"); err != nil || n != 2 {
		t.Fatalf("size: %d %v", n, err)
	}
	if err := client.DestroyGroup(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := client.DescribeGroup(ctx, "web"); err == nil || err.Error() != "Group 'web' is not being watched" {
		t.Fatalf("describe after destroy: %v", err)
	}
}
