package vm

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mobykit/mobykit/spi"
)

// shBackend "boots" a shell that sleeps; the state folder path is its $0, so it carries the
// marker. Shutdown writes a file the shell polls for, as a guest would see the power button.
type shBackend struct {
	released   atomic.Int32
	ignoreACPI bool
}

func (b *shBackend) Validate(p spi.Any) error { return nil }

func (b *shBackend) Launch(_ context.Context, dir Dir, id spi.ID, spec spi.Spec) (Launch, error) {
	script := `while [ ! -e "$0/acpi" ]; do sleep 0.05; done; exit 0`
	if b.ignoreACPI {
		script = `trap '' TERM; while :; do sleep 0.05; done`
	}
	return Launch{Argv: []string{"/bin/sh", "-c", script, string(dir)}, Properties: map[string]any{"kind": "sh"}}, nil
}

func (b *shBackend) Shutdown(_ context.Context, dir Dir, p *Process) error {
	return os.WriteFile(dir.Path("acpi"), nil, 0o644)
}

func (b *shBackend) Release(Dir) error { b.released.Add(1); return nil }

func TestInstancesLifecycle(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "instances")
	be := &shBackend{}
	in := &Instances{Store: Store{Root: root}, Backend: be, Prefix: "sh-", Grace: 5 * time.Second}
	lid := spi.LogicalID("10.0.0.5")
	ids := map[string]spi.ID{}
	for _, g := range []string{"a", "a", "b"} {
		id, err := in.Provision(ctx, spi.Spec{Tags: map[string]string{spi.GroupTag: g, "k": "v"}, LogicalID: &lid})
		if err != nil {
			t.Fatal(err)
		}
		ids[string(*id)] = *id
		t.Cleanup(func() { in.Destroy(ctx, *id, spi.Context{Reason: spi.ReasonTerminate}) })
	}
	list := func(in *Instances, tags map[string]string) []spi.Description {
		t.Helper()
		d, err := in.DescribeInstances(ctx, tags, true)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if n := len(list(in, nil)); n != 3 {
		t.Fatalf("listed %d, want 3", n)
	}
	ga := list(in, map[string]string{spi.GroupTag: "a"})
	if len(ga) != 2 {
		t.Fatalf("group a: %d members", len(ga))
	}
	if ga[0].LogicalID == nil || *ga[0].LogicalID != lid {
		t.Fatalf("LogicalID not reported: %+v", ga[0])
	}
	var props map[string]any
	json.Unmarshal(ga[0].Properties, &props)
	if props["kind"] != "sh" || props["pid"] == nil || props["console"] == nil {
		t.Fatalf("properties: %v", props)
	}
	if d, _ := in.DescribeInstances(ctx, nil, false); d[0].Properties != nil {
		t.Fatal("properties sent when not asked for")
	}

	// Label merges.
	target := ga[0].ID
	if err := in.Label(ctx, target, map[string]string{spi.ConfigHashTag: "h2", "k": "w"}); err != nil {
		t.Fatal(err)
	}
	got := list(in, map[string]string{spi.ConfigHashTag: "h2"})
	if len(got) != 1 || got[0].Tags[spi.GroupTag] != "a" || got[0].Tags["k"] != "w" {
		t.Fatalf("after Label: %+v", got)
	}

	// A restarted plugin finds the same VMs.
	in2 := &Instances{Store: Store{Root: root}, Backend: be, Prefix: "sh-", Grace: 5 * time.Second}
	if n := len(list(in2, nil)); n != 3 {
		t.Fatalf("restarted plugin lists %d, want 3", n)
	}

	// A VM whose process dies disappears, and its state with it.
	var p Process
	Dir(filepath.Join(root, string(got[0].ID))).ReadJSON(ProcessFile, &p)
	syscall.Kill(p.PID, syscall.SIGKILL)
	p.Wait(ctx)
	if n := len(list(in2, nil)); n != 2 {
		t.Fatalf("after a kill: listed %d, want 2", n)
	}
	if _, err := os.Stat(filepath.Join(root, string(got[0].ID))); !os.IsNotExist(err) {
		t.Fatalf("state of dead VM left: %v", err)
	}

	// Destroy: graceful (the shell sees "acpi" and exits), idempotent, leaves nothing.
	rest := list(in2, nil)
	for _, d := range rest {
		start := time.Now()
		if err := in2.Destroy(ctx, d.ID, spi.Context{Reason: spi.ReasonRollingUpdate}); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) > 3*time.Second {
			t.Errorf("graceful destroy took %v", time.Since(start))
		}
		if err := in2.Destroy(ctx, d.ID, spi.Context{Reason: spi.ReasonTerminate}); err != nil {
			t.Fatalf("second destroy: %v", err)
		}
	}
	if n := len(list(in2, nil)); n != 0 {
		t.Fatalf("listed %d after destroying all", n)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
	if be.released.Load() < 3 {
		t.Fatalf("Release called %d times, want >= 3", be.released.Load())
	}
}

func TestDestroyKillsAfterGrace(t *testing.T) {
	ctx := context.Background()
	in := &Instances{Store: Store{Root: t.TempDir()}, Backend: &shBackend{ignoreACPI: true}, Prefix: "sh-", Grace: 200 * time.Millisecond}
	id, err := in.Provision(ctx, spi.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	var p Process
	Dir(filepath.Join(in.Store.Root, string(*id))).ReadJSON(ProcessFile, &p)
	if err := in.Destroy(ctx, *id, spi.Context{Reason: spi.ReasonTerminate}); err != nil {
		t.Fatal(err)
	}
	if p.Alive() {
		t.Fatal("VM ignoring ACPI and SIGTERM still alive after Destroy")
	}
}

// exitBackend's hypervisor rejects its configuration and exits at once.
type exitBackend struct{ shBackend }

func (b *exitBackend) Launch(_ context.Context, dir Dir, id spi.ID, spec spi.Spec) (Launch, error) {
	return Launch{Argv: []string{"/bin/sh", "-c", `echo "bad option -frobnicate" >&2; exit 1`, string(dir)}}, nil
}

func TestProvisionReportsImmediateExit(t *testing.T) {
	be := &exitBackend{}
	in := &Instances{Store: Store{Root: t.TempDir()}, Backend: be, Prefix: "sh-"}
	_, err := in.Provision(context.Background(), spi.Spec{})
	if err == nil || !strings.Contains(err.Error(), "bad option -frobnicate") {
		t.Fatalf("Provision of a hypervisor that exits at once: %v", err)
	}
	if ids, _ := in.Store.List(); len(ids) != 0 {
		t.Fatalf("state left after a failed Provision: %v", ids)
	}
	if be.released.Load() != 1 {
		t.Fatalf("Release called %d times", be.released.Load())
	}
}
