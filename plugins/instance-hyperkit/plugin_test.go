package instancehyperkit

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/vm"
	"github.com/mobykit/mobykit/vm/hyperkit"
	"github.com/mobykit/mobykit/vm/vmtest"
)

// fakeHyperKit builds the stand-in HyperKit executable.
func fakeHyperKit(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hyperkit")
	out, err := exec.Command("go", "build", "-o", bin, "./testdata/fakehyperkit").CombinedOutput()
	if err != nil {
		t.Fatalf("build fake hyperkit: %v\n%s", err, out)
	}
	return bin
}

func bootFiles(t *testing.T) string { return vmtest.BootPrefix(t, []byte("k")) }

// TestLifecycleWithStandIn runs the plugin's whole contract against the stand-in: the command
// line HyperKit gets (LinuxKit-style Properties, vpnkit with a stable UUID and the logical ID
// as preferred address, persistent disk, metadata CD), listing at once, Label, adoption by a
// restarted plugin, Destroy by SIGTERM (ACPI), idempotence, and nothing left behind.
func TestLifecycleWithStandIn(t *testing.T) {
	bin := fakeHyperKit(t)
	prefix := bootFiles(t)
	root := t.TempDir()
	events := filepath.Join(t.TempDir(), "events")
	t.Setenv("FAKEHYPERKIT_EVENTS", events)
	ctx := context.Background()
	p, err := New(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	props := spi.Any(`{"Moby":"` + prefix + `","CPUs":2,"Memory":256,"Disk":16,"vpnkit_sock":"/tmp/vpnkit.eth.sock","hyperkit":"` + bin + `"}`)
	if err := p.Validate(ctx, props); err != nil {
		t.Fatal(err)
	}
	lid := spi.LogicalID("192.168.65.30")
	id, err := p.Provision(ctx, spi.Spec{Properties: props, LogicalID: &lid, Init: `{"hostname":{"content":"a"}}`,
		Tags: map[string]string{spi.GroupTag: "g", spi.ConfigHashTag: "h"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := vm.Dir(filepath.Join(root, "instances", string(*id)))
	ds, _ := p.DescribeInstances(ctx, map[string]string{spi.GroupTag: "g"}, true)
	if len(ds) != 1 || ds[0].ID != *id || *ds[0].LogicalID != lid {
		t.Fatalf("listed right after Provision: %+v", ds)
	}
	vmtest.WaitFile(t, dir.Path("console-ring"), "fake kernel booting")
	var argv []string
	if err := dir.ReadJSON("argv.json", &argv); err != nil {
		t.Fatal(err)
	}
	want, _ := hyperkit.Config{
		Binary: bin, CPUs: 2, MemoryMB: 256, Kernel: prefix + "-kernel", Initrd: prefix + "-initrd.img",
		Cmdline:    "console=ttyS0 mobykit.instance=" + string(*id),
		Disks:      []string{filepath.Join(root, "disks", string(lid), "disk.img")},
		DataISO:    dir.Path(vm.DataISOFile),
		VPNKitSock: "/tmp/vpnkit.eth.sock", VPNKitUUID: "00000000-0000-0000-0000-0000c0a8411e", PreferredIPv4: string(lid),
		UUID: hyperkit.UUID(string(*id)), Console: string(dir), PidFile: dir.Path("hyperkit.pid"),
	}.Args()
	if strings.Join(argv, " ") != strings.Join(want, " ") {
		t.Fatalf("hyperkit command line:\n got %q\nwant %q", argv, want)
	}
	if fi, err := os.Stat(filepath.Join(root, "disks", string(lid), "disk.img")); err != nil || fi.Size() != 16<<20 {
		t.Fatalf("disk: %v %v", fi, err)
	}
	if err := p.Label(ctx, *id, map[string]string{"extra": "1"}); err != nil {
		t.Fatal(err)
	}
	p2, _ := New(root, nil)
	ds, _ = p2.DescribeInstances(ctx, map[string]string{"extra": "1", spi.GroupTag: "g"}, false)
	if len(ds) != 1 {
		t.Fatalf("restarted plugin lists %d", len(ds))
	}
	var proc vm.Process
	dir.ReadJSON(vm.ProcessFile, &proc)
	start := time.Now()
	if err := p2.Destroy(ctx, *id, spi.Context{Reason: spi.ReasonTerminate}); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 5*time.Second || proc.Alive() {
		t.Fatalf("destroy took %v, alive %v", time.Since(start), proc.Alive())
	}
	if b, _ := os.ReadFile(events); !strings.Contains(string(b), "acpi-shutdown") {
		t.Fatalf("Destroy did not go through ACPI (SIGTERM): events %q", b)
	}
	if err := p2.Destroy(ctx, *id, spi.Context{Reason: spi.ReasonTerminate}); err != nil {
		t.Fatalf("second Destroy: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "instances")); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(root, "disks", string(lid), "disk.img")); err != nil {
		t.Fatalf("persistent disk removed: %v", err)
	}
}

func TestDestroyKillsStandInIgnoringACPI(t *testing.T) {
	bin := fakeHyperKit(t)
	prefix := bootFiles(t)
	t.Setenv("FAKEHYPERKIT_IGNORE_ACPI", "1")
	p, _ := New(t.TempDir(), nil)
	ctx := context.Background()
	props := spi.Any(`{"kernel":"` + prefix + `-kernel","vpnkit_sock":"none","shutdown_timeout":"200ms","hyperkit":"` + bin + `"}`)
	id, err := p.Provision(ctx, spi.Spec{Properties: props})
	if err != nil {
		t.Fatal(err)
	}
	ds, _ := p.DescribeInstances(ctx, nil, true)
	var pr map[string]any
	json.Unmarshal(ds[0].Properties, &pr)
	vmtest.WaitFile(t, pr["console"].(string), "fake kernel booting")
	var proc vm.Process
	vm.ReadJSON(filepath.Join(pr["state_dir"].(string), vm.ProcessFile), &proc)
	if err := p.Destroy(ctx, *id, spi.Context{Reason: spi.ReasonTerminate}); err != nil {
		t.Fatal(err)
	}
	if proc.Alive() {
		t.Fatal("stand-in ignoring ACPI still alive")
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		props string
		ok    bool
	}{
		{`{"Moby":"/x/hello","CPUs":1,"Memory":512,"Disk":1024}`, true},
		{`{"kernel":"/k","initrd":"/i","cmdline":"c","cpus":1,"memory":512,"disk_size":100}`, true},
		{`{}`, true},
		{`null`, true},
		{`{"moby":"/x","kernel":"/k"}`, false},
		{`{"kernel":"/k","memory":-1}`, false},
		{`{"kernel":"/k","shutdown_timeout":"x"}`, false},
	} {
		t.Run(tc.props, func(t *testing.T) {
			err := (&backend{}).Validate(spi.Any(tc.props))
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
