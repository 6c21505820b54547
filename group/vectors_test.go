package group

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/mobykit/mobykit/group/fake"
	"github.com/mobykit/mobykit/group/store"
	"github.com/mobykit/mobykit/internal/infrakitvectors"
	"github.com/mobykit/mobykit/spi"
)

// The group.* and error.group.* vectors of docs/infrakit/vectors are replayed against the
// controller with fake plugins, in the order the live session that produced them ran, so that every Details text, size, error message,
// description and InspectGroups document is checked.

type vector struct {
	Request struct {
		Method string
		Params params
	}
	Response struct {
		Result json.RawMessage
		Error  *struct{ Message string }
	}
}

type params struct {
	Name      string
	ID        spi.GroupID
	Spec      spi.GroupSpec
	Pretend   bool
	Size      int
	Instances []spi.ID
}

func loadVector(t *testing.T, name string) vector {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(infrakitvectors.Dir(t), name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var v vector
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// call runs a vector's request against c and returns the result as the Group server would
// encode it (without Name/ID), or the error.
func call(c *Controller, p params, method string) (map[string]any, error) {
	ctx := context.Background()
	out := map[string]any{}
	var err error
	switch method {
	case "Group.CommitGroup":
		var d string
		d, err = c.CommitGroup(ctx, p.Spec, p.Pretend)
		out["Details"] = d
	case "Group.DescribeGroup":
		var d spi.GroupDescription
		d, err = c.DescribeGroup(ctx, p.ID)
		out["Description"] = d
	case "Group.InspectGroups":
		var g []spi.GroupSpec
		g, err = c.InspectGroups(ctx)
		out["Groups"] = g
	case "Group.FreeGroup":
		err = c.FreeGroup(ctx, p.ID)
	case "Group.DestroyGroup":
		err = c.DestroyGroup(ctx, p.ID)
	case "Group.DestroyInstances":
		err = c.DestroyInstances(ctx, p.ID, p.Instances)
	case "Group.Size":
		var n int
		n, err = c.Size(ctx, p.ID)
		out["Size"] = n
	case "Group.SetSize":
		err = c.SetSize(ctx, p.ID, p.Size)
	default:
		panic(method)
	}
	return out, err
}

func TestGroupVectors(t *testing.T) {
	cloud := fake.New(nil)
	cloud.Health = nil
	c := New(fake.Plugins{Cloud: cloud, Missing: map[spi.PluginName]bool{"nosuchflavor": true}}, store.NewMemory(),
		Options{Manual: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	converge := func(id spi.GroupID) {
		t.Helper()
		for i := 0; i < 20; i++ {
			d, err := c.Reconcile(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if d.Phase == "idle" && len(d.Create) == 0 && len(d.Destroy) == 0 {
				return
			}
		}
		t.Fatalf("group %s did not converge", id)
	}
	replay := func(name string) map[string]any {
		t.Helper()
		v := loadVector(t, name)
		got, err := call(c, v.Request.Params, v.Request.Method)
		if v.Response.Error != nil {
			if err == nil || err.Error() != v.Response.Error.Message {
				t.Errorf("%s: error %v, want %q", name, err, v.Response.Error.Message)
			}
			return nil
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var want map[string]json.RawMessage
		if err := json.Unmarshal(v.Response.Result, &want); err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{"Details", "Size"} {
			if w, ok := want[key]; ok {
				g, _ := json.Marshal(got[key])
				if string(g) != string(w) {
					t.Errorf("%s: %s = %s, want %s", name, key, g, w)
				}
			}
		}
		if w, ok := want["Groups"]; ok {
			g, _ := json.Marshal(got["Groups"])
			var compact json.RawMessage
			_ = json.Unmarshal(w, &compact)
			cw, _ := json.Marshal(compact)
			if string(g) != string(cw) {
				t.Errorf("%s: Groups\n got %s\nwant %s", name, g, cw)
			}
		}
		if w, ok := want["Description"]; ok {
			var wd spi.GroupDescription
			if err := json.Unmarshal(w, &wd); err != nil {
				t.Fatal(err)
			}
			gd := got["Description"].(spi.GroupDescription)
			if gd.Converged != wd.Converged || len(gd.Instances) != len(wd.Instances) {
				t.Errorf("%s: converged %v with %d instances, want %v with %d", name, gd.Converged, len(gd.Instances), wd.Converged, len(wd.Instances))
			}
			// Instance IDs are the plugin's; the tags the controller sets and the logical IDs
			// must match.
			sort.Slice(wd.Instances, func(i, j int) bool { return lid(wd.Instances[i]) < lid(wd.Instances[j]) })
			sort.Slice(gd.Instances, func(i, j int) bool { return lid(gd.Instances[i]) < lid(gd.Instances[j]) })
			for i := range min(len(gd.Instances), len(wd.Instances)) {
				g, w := gd.Instances[i], wd.Instances[i]
				for _, tag := range []string{spi.GroupTag, spi.ConfigHashTag, spi.LogicalIDTag} {
					if g.Tags[tag] != w.Tags[tag] {
						t.Errorf("%s: instance %d tag %s = %q, want %q", name, i, tag, g.Tags[tag], w.Tags[tag])
					}
				}
				if lid(g) != lid(w) || (g.LogicalID == nil) != (w.LogicalID == nil) {
					t.Errorf("%s: instance %d LogicalID %v, want %v", name, i, g.LogicalID, w.LogicalID)
				}
			}
		}
		return got
	}

	replay("error.group.commit-group.blank-id")
	replay("error.group.allocation-blank")
	replay("error.group.unknown-flavor")
	replay("group.commit-group.pretend-new")
	if n := len(cloud.Snapshot("workers")); n != 0 {
		t.Fatalf("pretend commit created %d instances", n)
	}
	replay("group.commit-group")
	converge("workers")
	replay("group.commit-group.pretend-rolling-update")
	replay("group.commit-group.rolling-update")
	converge("workers")
	replay("group.commit-group.pretend-scale-up")
	replay("group.commit-group.pretend-scale-down-and-roll")
	replay("group.commit-group.pretend-roll-and-scale-up")
	replay("group.describe-group")
	replay("group.commit-group.quorum")
	converge("managers")
	replay("group.describe-group.quorum")
	replay("group.size")
	replay("group.set-size")
	converge("workers")
	replay("group.inspect-groups")
	if n := len(cloud.Snapshot("workers")); n != 3 {
		t.Fatalf("after set-size 3: %d workers", n)
	}

	// DestroyInstances names an instance of the recorded run; point it at one of ours.
	v := loadVector(t, "group.destroy-instances")
	victim := cloud.Snapshot("workers")[0].ID
	v.Request.Params.Instances = []spi.ID{victim}
	if _, err := call(c, v.Request.Params, v.Request.Method); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.Size(context.Background(), "workers"); n != 2 {
		t.Errorf("size after DestroyInstances = %d, want 2", n)
	}
	if n := len(cloud.Snapshot("workers")); n != 2 {
		t.Errorf("%d workers after DestroyInstances, want 2", n)
	}
	replay("group.destroy-group")
	if n := len(cloud.Snapshot("managers")); n != 0 {
		t.Errorf("%d managers left after DestroyGroup", n)
	}

	// The "boot" group: commit, free, describe (not watched), set-size 0, re-commit adopts.
	replay("group.commit-group.adopt-after-free")
	converge("boot")
	replay("error.group.set-size-zero")
	replay("group.free-group")
	replay("error.group.not-watched")
	before := cloud.Snapshot("boot")
	replay("group.commit-group.adopt-after-free")
	converge("boot")
	if after := cloud.Snapshot("boot"); len(after) != 1 || after[0].ID != before[0].ID {
		t.Errorf("re-commit after FreeGroup re-provisioned: %v -> %v", before, after)
	}
}

func lid(d spi.Description) string {
	if d.LogicalID != nil {
		return string(*d.LogicalID)
	}
	return d.Tags[spi.LogicalIDTag]
}
