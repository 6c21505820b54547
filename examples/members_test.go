package examples

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	flavormoby "github.com/mobykit/mobykit/plugins/flavor-moby"
	instanceqemu "github.com/mobykit/mobykit/plugins/instance-qemu"
	"github.com/mobykit/mobykit/spi"
)

// TestFlavorMobyMembersBootFromISOAndQCOW2: flavor-moby builds examples/hello.yml as iso-bios,
// qcow2-bios and kernel+erofs (its `format` property), Prepare points the instance spec at the
// build, and instance-qemu provisions one member from each, which boots (TCG, SeaBIOS for the
// ISO and the disk) to hello's service marker. It lives here, not under plugins/, because it
// needs the system images examples builds.
func TestFlavorMobyMembersBootFromISOAndQCOW2(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs; skipped with -short")
	}
	cacheDir := buildImages(t)
	ctx := context.Background()
	fm, err := flavormoby.New(t.TempDir(), flavormoby.AssemblerBuilder{CacheDir: cacheDir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.MkdirTemp("", "fm") // short: the QMP socket path must fit in 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	iq, err := instanceqemu.New(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := filepath.Abs("hello.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ format, boots string }{
		{"iso-bios", ".iso"},
		{"qcow2-bios", ".qcow2"},
		{"kernel+erofs", "/image"},
	} {
		t.Run(c.format, func(t *testing.T) {
			fprops, _ := json.Marshal(map[string]any{"spec": spec, "format": c.format})
			iprops, _ := json.Marshal(map[string]any{"memory": 512, "accel": "tcg", "shutdown_timeout": "1s"})
			if err := fm.Validate(ctx, fprops, spi.Allocation{Size: 1}); err != nil {
				t.Fatal(err)
			}
			s, err := fm.Prepare(ctx, fprops, spi.Spec{Properties: iprops, Tags: map[string]string{spi.GroupTag: "g-" + c.format}}, spi.Allocation{Size: 1}, spi.Index{Group: spi.GroupID("g-" + c.format)})
			if err != nil {
				t.Fatal(err)
			}
			var got struct{ Moby string }
			json.Unmarshal(s.Properties, &got)
			if !strings.HasSuffix(got.Moby, c.boots) {
				t.Fatalf("Prepare pointed the member at %q, want a path ending in %s", got.Moby, c.boots)
			}
			if err := iq.Validate(ctx, s.Properties); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			id, err := iq.Provision(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { iq.Destroy(ctx, *id, spi.Context{Reason: spi.ReasonTerminate}) })
			ds, err := iq.DescribeInstances(ctx, map[string]string{spi.GroupTag: "g-" + c.format}, true)
			if err != nil || len(ds) != 1 {
				t.Fatalf("describe: %v, %v", ds, err)
			}
			var pr struct{ Console string }
			json.Unmarshal(ds[0].Properties, &pr)
			deadline := time.Now().Add(180 * time.Second)
			for {
				b, _ := os.ReadFile(pr.Console)
				if strings.Contains(string(b), "HELLO-SERVICE: service running") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no service marker within 180s:\n%s", b)
				}
				time.Sleep(200 * time.Millisecond)
			}
			t.Logf("%s member at its service marker after %.1fs", c.format, time.Since(start).Seconds())
		})
	}
}
