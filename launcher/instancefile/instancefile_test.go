package instancefile

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/rpc"
)

// TestOverRPC drives the plugin through spi/rpc on a real socket, the way a group controller
// does, and checks the descriptions have the shape of InfraKit's file plugin.
func TestOverRPC(t *testing.T) {
	base, err := os.MkdirTemp("", "ifile")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	p, err := New(filepath.Join(base, "state"))
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(base, "file")
	srv, err := rpc.Start(sock, rpc.Instance(p))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := rpc.NewInstanceClient(sock, "")
	ctx := context.Background()

	tags := map[string]string{"infrakit.group": "workers", "infrakit.config.hash": "xnhzyp5zgt5xgyeu47ajojm6ezgxnxv5", "tier": "web"}
	spec := spi.Spec{Properties: spi.Any(`{"note":"v1","big":12345678901234567890}`), Tags: tags, Init: "echo hello"}
	var wg sync.WaitGroup
	ids := make([]spi.ID, 5)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := c.Provision(ctx, spec)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = *id
		}()
	}
	wg.Wait()
	ds, err := c.DescribeInstances(ctx, map[string]string{"infrakit.group": "workers"}, true)
	if err != nil || len(ds) != 5 {
		t.Fatalf("describe: %d %v", len(ds), err)
	}
	want := `{"Properties":{"note":"v1","big":12345678901234567890},"Tags":{"infrakit.config.hash":"xnhzyp5zgt5xgyeu47ajojm6ezgxnxv5","infrakit.group":"workers","tier":"web"},"Init":"echo hello","LogicalID":null,"Attachments":null}`
	if string(ds[0].Properties) != want {
		t.Errorf("Properties\n got %s\nwant %s", ds[0].Properties, want)
	}
	if ds, _ := c.DescribeInstances(ctx, map[string]string{"infrakit.group": "other"}, false); ds == nil || len(ds) != 0 {
		t.Errorf("no match must be an empty list, got %#v", ds)
	}
	if err := c.Label(ctx, ids[0], map[string]string{"infrakit.config.hash": "new", "x": "y"}); err != nil {
		t.Fatal(err)
	}
	ds, _ = c.DescribeInstances(ctx, map[string]string{"infrakit.config.hash": "new"}, false)
	if len(ds) != 1 || ds[0].ID != ids[0] || ds[0].Tags["tier"] != "web" || ds[0].Tags["x"] != "y" || ds[0].Properties != nil {
		t.Fatalf("after label: %+v", ds)
	}
	lid := spi.LogicalID("10.0.0.1")
	qid, err := c.Provision(ctx, spi.Spec{Tags: map[string]string{"infrakit.logical_id": "10.0.0.1"}, LogicalID: &lid})
	if err != nil {
		t.Fatal(err)
	}
	ds, _ = c.DescribeInstances(ctx, map[string]string{"infrakit.logical_id": "10.0.0.1"}, false)
	if len(ds) != 1 || ds[0].ID != *qid || ds[0].LogicalID == nil || *ds[0].LogicalID != lid {
		t.Fatalf("logical id: %+v", ds)
	}
	for _, id := range append(ids, *qid) {
		if err := c.Destroy(ctx, id, spi.Context{Reason: spi.ReasonTerminate}); err != nil {
			t.Fatal(err)
		}
		if err := c.Destroy(ctx, id, spi.Context{Reason: spi.ReasonTerminate}); err != nil {
			t.Fatalf("second destroy of %s: %v", id, err)
		}
	}
	if ds, _ := c.DescribeInstances(ctx, nil, false); len(ds) != 0 {
		t.Fatalf("left: %+v", ds)
	}
	for _, bad := range []spi.ID{"../x", ".hidden", ""} {
		if err := c.Label(ctx, bad, nil); err == nil {
			t.Errorf("label of %q accepted", bad)
		}
	}
	if err := c.Label(ctx, "nosuch", nil); err == nil {
		t.Error("label of a missing instance accepted")
	}
}
