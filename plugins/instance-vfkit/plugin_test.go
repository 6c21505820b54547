package instancevfkit

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/vm"
	"github.com/mobykit/mobykit/vm/vfkit"
	"github.com/mobykit/mobykit/vm/vmtest"
)

// standIn makes the plugin's VMs run the stand-in vfkit in the given mode and returns its path.
func standIn(t *testing.T, mode string) string {
	t.Helper()
	t.Setenv(fakeEnv, mode)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// shortDir is a temporary folder with a short path: a unix socket path must fit in 104 bytes.
func shortDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "vfk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A test that failed before Destroy leaves its stand-ins running: end them.
		ids, _ := os.ReadDir(filepath.Join(d, "instances"))
		for _, e := range ids {
			var proc vm.Process
			if vm.ReadJSON(filepath.Join(d, "instances", e.Name(), vm.ProcessFile), &proc) == nil {
				proc.Stop(context.Background(), nil, 0)
			}
		}
		os.RemoveAll(d)
	})
	return d
}

// bootFiles is a boot prefix whose kernel is gzip-compressed, as Debian's arm64 vmlinuz is.
func bootFiles(t *testing.T) string {
	var k bytes.Buffer
	zw := gzip.NewWriter(&k)
	zw.Write([]byte("uncompressed kernel"))
	zw.Close()
	return vmtest.BootPrefix(t, k.Bytes())
}

func describe(t *testing.T, p *Plugin, tags map[string]string) []map[string]any {
	t.Helper()
	ds, err := p.DescribeInstances(context.Background(), tags, true)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, d := range ds {
		m := map[string]any{}
		json.Unmarshal(d.Properties, &m)
		m["id"] = string(d.ID)
		out = append(out, m)
	}
	return out
}

// TestLifecycleWithStandIn runs the plugin's whole contract against the stand-in vfkit: the
// command line (kernel boot with the gzip kernel decompressed, CPUs, memory, a persistent disk
// per logical ID, the metadata disk, a NAT NIC and a shared-network NIC with MACs fixed by the
// logical ID, console log, REST socket), listing at once with the REST state, Label, adoption
// by a restarted plugin, Destroy through REST Stop, idempotence, nothing left behind, and the
// same MAC and disk for the next instance of the logical ID.
func TestLifecycleWithStandIn(t *testing.T) {
	bin := standIn(t, "normal")
	prefix := bootFiles(t)
	root := shortDir(t)
	events := filepath.Join(t.TempDir(), "events")
	t.Setenv("MOBYKIT_FAKE_VFKIT_EVENTS", events)
	ctx := context.Background()
	p, err := New(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	props := spi.Any(`{"Moby":"` + prefix + `","CPUs":2,"Memory":256,"disks":[{"size":"16M","persistent":true}],
		"network":{"name":"web","socket":"/var/run/vmnet-helper/web.sock","subnet":"10.98.0.0/24"},"vfkit":"` + bin + `"}`)
	if err := p.Validate(ctx, props); err != nil {
		t.Fatal(err)
	}
	lid := spi.LogicalID("web-1")
	spec := spi.Spec{Properties: props, LogicalID: &lid, Init: `{"hostname":{"content":"a"}}`,
		Tags: map[string]string{spi.GroupTag: "g", spi.ConfigHashTag: "h"}}
	id, err := p.Provision(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := vm.Dir(filepath.Join(root, "instances", string(*id)))
	ds := describe(t, p, map[string]string{spi.GroupTag: "g"})
	if len(ds) != 1 || ds[0]["id"] != string(*id) {
		t.Fatalf("listed right after Provision: %+v", ds)
	}
	vmtest.WaitFile(t, dir.Path(vm.ConsoleFile), "fake kernel booting")
	ds = describe(t, p, nil)
	if ds[0]["vm_state"] != "VirtualMachineStateRunning" || ds[0]["address"] != "10.98.0.10/24" || ds[0]["mac"] != vfkit.MAC("web-1") {
		t.Fatalf("described: %+v", ds[0])
	}
	var argv []string
	if err := dir.ReadJSON("argv.json", &argv); err != nil {
		t.Fatal(err)
	}
	if k, _ := os.ReadFile(dir.Path(KernelFile)); string(k) != "uncompressed kernel" {
		t.Fatalf("decompressed kernel %q", k)
	}
	disk := filepath.Join(root, "disks", string(lid), "disk0.img")
	want, _ := vfkit.Config{
		CPUs: 2, MemoryMB: 256, Kernel: dir.Path(KernelFile), Initrd: prefix + "-initrd.img",
		Cmdline: "console=ttyS0 console=hvc0 mobykit.instance=" + string(*id) + " mobykit.ip=10.98.0.10/24 mobykit.mac=" + vfkit.MAC("web-1/net:web"),
		Disks:   []string{disk}, DataISO: dir.Path(vm.DataISOFile),
		NICs:    []vfkit.NIC{{MAC: vfkit.MAC("web-1")}, {Socket: "/var/run/vmnet-helper/web.sock", MAC: vfkit.MAC("web-1/net:web")}},
		Console: dir.Path(vm.ConsoleFile), RESTSocket: dir.Path(RESTFile),
	}.Args()
	if strings.Join(argv, " ") != strings.Join(want, " ") {
		t.Fatalf("vfkit command line:\n got %q\nwant %q", argv, want)
	}
	if fi, err := os.Stat(disk); err != nil || fi.Size() != 16<<20 {
		t.Fatalf("disk: %v %v", fi, err)
	}
	os.WriteFile(disk, []byte("data"), 0o644) // what the guest wrote
	if err := p.Label(ctx, *id, map[string]string{"extra": "1"}); err != nil {
		t.Fatal(err)
	}
	p2, _ := New(root, nil)
	if ds := describe(t, p2, map[string]string{"extra": "1", spi.GroupTag: "g"}); len(ds) != 1 || ds[0]["vm_state"] != "VirtualMachineStateRunning" {
		t.Fatalf("restarted plugin lists %+v", ds)
	}
	var proc vm.Process
	dir.ReadJSON(vm.ProcessFile, &proc)
	if err := p2.Destroy(ctx, *id, spi.Context{Reason: spi.ReasonTerminate}); err != nil {
		t.Fatal(err)
	}
	if proc.Alive() {
		t.Fatal("stand-in still running after Destroy")
	}
	if b, _ := os.ReadFile(events); string(b) != "stop "+strconv.Itoa(proc.PID)+"\n" {
		t.Fatalf("Destroy did not go through REST Stop alone: events %q", b)
	}
	if err := p2.Destroy(ctx, *id, spi.Context{Reason: spi.ReasonTerminate}); err != nil {
		t.Fatalf("second Destroy: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "instances")); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
	// The next instance of the logical ID gets the same MACs, address and disk.
	id2, err := p2.Provision(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Destroy(ctx, *id2, spi.Context{Reason: spi.ReasonTerminate})
	ds = describe(t, p2, nil)
	if ds[0]["mac"] != vfkit.MAC("web-1") || ds[0]["network_mac"] != vfkit.MAC("web-1/net:web") || ds[0]["address"] != "10.98.0.10/24" {
		t.Fatalf("replacement: %+v", ds[0])
	}
	if b, _ := os.ReadFile(disk); string(b) != "data" {
		t.Fatalf("persistent disk not kept: %q", b)
	}
}

// TestEFIDiskBoot boots a raw disk image by EFI: the instance gets its own copy and a
// variable store; a qcow2 image is refused with what to do.
func TestEFIDiskBoot(t *testing.T) {
	bin := standIn(t, "normal")
	img := filepath.Join(t.TempDir(), "hello-efi.raw")
	os.WriteFile(img, append(make([]byte, 3<<20), "tail"...), 0o644)
	p, _ := New(shortDir(t), nil)
	ctx := context.Background()
	id, err := p.Provision(ctx, spi.Spec{Properties: spi.Any(`{"moby":"` + img + `","nat":false,"vfkit":"` + bin + `"}`)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Destroy(ctx, *id, spi.Context{})
	ds := describe(t, p, nil)
	dir := vm.Dir(ds[0]["state_dir"].(string))
	vmtest.WaitFile(t, dir.Path(vm.ConsoleFile), "fake kernel booting: (efi)")
	var argv []string
	dir.ReadJSON("argv.json", &argv)
	want, _ := vfkit.Config{EFIVarStore: dir.Path(EFIVarsFile), BootDisk: dir.Path("disks/boot.img"),
		Console: dir.Path(vm.ConsoleFile), RESTSocket: dir.Path(RESTFile)}.Args()
	if strings.Join(argv[1:], " ") != strings.Join(want[1:], " ") {
		t.Fatalf("vfkit command line:\n got %q\nwant %q", argv, want)
	}
	a, _ := os.ReadFile(img)
	b, _ := os.ReadFile(dir.Path("disks/boot.img"))
	if !bytes.Equal(a, b) {
		t.Fatal("boot disk copy differs")
	}
	q := filepath.Join(t.TempDir(), "hello.qcow2")
	os.WriteFile(q, []byte("QFI"), 0o644)
	if _, err := p.Provision(ctx, spi.Spec{Properties: spi.Any(`{"moby":"` + q + `","vfkit":"` + bin + `"}`)}); err == nil || !strings.Contains(err.Error(), "raw disk images only") {
		t.Fatalf("qcow2: %v", err)
	}
}

// TestDestroyKillsStandInIgnoringStop: a guest that never powers off is killed after
// shutdown_timeout.
func TestDestroyKillsStandInIgnoringStop(t *testing.T) {
	bin := standIn(t, "ignore-stop")
	prefix := bootFiles(t)
	p, _ := New(shortDir(t), nil)
	ctx := context.Background()
	id, err := p.Provision(ctx, spi.Spec{Properties: spi.Any(`{"kernel":"` + prefix + `-kernel","shutdown_timeout":"200ms","vfkit":"` + bin + `"}`)})
	if err != nil {
		t.Fatal(err)
	}
	ds := describe(t, p, nil)
	vmtest.WaitFile(t, ds[0]["console"].(string), "fake kernel booting")
	var proc vm.Process
	vm.ReadJSON(filepath.Join(ds[0]["state_dir"].(string), vm.ProcessFile), &proc)
	if err := p.Destroy(ctx, *id, spi.Context{Reason: spi.ReasonTerminate}); err != nil {
		t.Fatal(err)
	}
	if proc.Alive() {
		t.Fatal("stand-in ignoring Stop still alive")
	}
}

// TestStopRefusedFallsBackToHardStop: when vfkit refuses Stop, the plugin asks for HardStop.
func TestStopRefusedFallsBackToHardStop(t *testing.T) {
	bin := standIn(t, "refuse-stop")
	events := filepath.Join(t.TempDir(), "events")
	t.Setenv("MOBYKIT_FAKE_VFKIT_EVENTS", events)
	prefix := bootFiles(t)
	p, _ := New(shortDir(t), nil)
	ctx := context.Background()
	id, err := p.Provision(ctx, spi.Spec{Properties: spi.Any(`{"kernel":"` + prefix + `-kernel","shutdown_timeout":"5s","vfkit":"` + bin + `"}`)})
	if err != nil {
		t.Fatal(err)
	}
	ds := describe(t, p, nil)
	vmtest.WaitFile(t, ds[0]["console"].(string), "fake kernel booting")
	if err := p.Destroy(ctx, *id, spi.Context{}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(events)
	if !strings.Contains(string(b), "stop-refused") || !strings.Contains(string(b), "hardstop") {
		t.Fatalf("events %q", b)
	}
}

// TestHostileRESTSocketBounded: whatever answers on a VM's REST socket (an endless reply, or
// silence) costs DescribeInstances at most StateTimeout and a bounded read per VM, is
// reported as vm_state_error, and Destroy still ends the VM.
func TestHostileRESTSocketBounded(t *testing.T) {
	for _, mode := range []string{"endless", "silent"} {
		t.Run(mode, func(t *testing.T) {
			bin := standIn(t, mode)
			prefix := bootFiles(t)
			p, _ := New(shortDir(t), nil)
			ctx := context.Background()
			id, err := p.Provision(ctx, spi.Spec{Properties: spi.Any(`{"kernel":"` + prefix + `-kernel","shutdown_timeout":"300ms","vfkit":"` + bin + `"}`)})
			if err != nil {
				t.Fatal(err)
			}
			ds := describe(t, p, nil)
			vmtest.WaitFile(t, ds[0]["console"].(string), "fake kernel booting")
			ds = describe(t, p, nil)
			e, _ := ds[0]["vm_state_error"].(string)
			if _, ok := ds[0]["vm_state"]; ok || !strings.Contains(e, RESTFile) {
				t.Fatalf("described: %+v", ds[0])
			}
			if mode == "endless" && !strings.Contains(e, "reply larger than") {
				t.Fatalf("endless reply: %q", e)
			}
			var proc vm.Process
			vm.ReadJSON(filepath.Join(ds[0]["state_dir"].(string), vm.ProcessFile), &proc)
			if err := p.Destroy(ctx, *id, spi.Context{}); err != nil {
				t.Fatal(err)
			}
			if proc.Alive() {
				t.Fatal("still alive")
			}
		})
	}
}

// TestPersistentDiskSymlinkRefused: a symlink planted where a persistent disk lives (the
// disks folder is the plugin's state, not trusted) is not handed to vfkit as the VM's disk.
func TestPersistentDiskSymlinkRefused(t *testing.T) {
	bin := standIn(t, "normal")
	prefix := bootFiles(t)
	root := shortDir(t)
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("not a disk"), 0o600)
	os.MkdirAll(filepath.Join(root, "disks", "web-1"), 0o700)
	if err := os.Symlink(secret, filepath.Join(root, "disks", "web-1", "disk0.img")); err != nil {
		t.Fatal(err)
	}
	p, _ := New(root, nil)
	lid := spi.LogicalID("web-1")
	_, err := p.Provision(context.Background(), spi.Spec{LogicalID: &lid,
		Properties: spi.Any(`{"kernel":"` + prefix + `-kernel","disks":[{"size":"1M","persistent":true}],"vfkit":"` + bin + `"}`)})
	if err == nil || !strings.Contains(err.Error(), "not a regular file") || !strings.Contains(err.Error(), "disk0.img") {
		t.Fatalf("Provision over a planted symlink: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "instances")); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
}

// TestOversizedLaunchRecordRefused: another instance's launch.json is read back (for address
// allocation) with a bound; a huge one stops allocation with an error naming it, instead of
// costing its size in memory or handing its address out twice.
func TestOversizedLaunchRecordRefused(t *testing.T) {
	bin := standIn(t, "normal")
	prefix := bootFiles(t)
	root := shortDir(t)
	p, _ := New(root, nil)
	d, _ := p.Store.Create("vfkit-planted")
	big := `{"network":"web","address":"10.99.0.10/24","pad":"` + strings.Repeat("x", 2*vm.MaxRecord) + `"}`
	os.WriteFile(d.Path(vm.LaunchFile), []byte(big), 0o644)
	_, err := p.Provision(context.Background(), spi.Spec{
		Properties: spi.Any(`{"kernel":"` + prefix + `-kernel","network":{"name":"web","socket":"/s.sock"},"vfkit":"` + bin + `"}`)})
	if err == nil || !strings.Contains(err.Error(), "vfkit-planted") || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Provision: %v", err)
	}
}

// TestGzipBombKernelRefused: a kernel that decompresses past maxKernel is refused, and what
// was written is removed.
func TestGzipBombKernelRefused(t *testing.T) {
	dir := vm.Dir(t.TempDir())
	k := filepath.Join(t.TempDir(), "k")
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	zero := make([]byte, 1<<20)
	for i := 0; i < maxKernel>>20+2; i++ {
		zw.Write(zero)
	}
	zw.Close()
	os.WriteFile(k, b.Bytes(), 0o644)
	if _, err := prepareKernel(dir, k); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("prepareKernel: %v", err)
	}
	if _, err := os.Stat(dir.Path(KernelFile)); err == nil {
		t.Fatal("partial kernel left behind")
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		props string
		ok    bool
	}{
		{`{"moby":"/x/hello","cpus":1,"memory":512,"disks":[{"size":"1G","persistent":true}]}`, true},
		{`{"kernel":"/k","initrd":"/i","cmdline":"c","network":{"name":"n","socket":"/s.sock"}}`, true},
		{`{"disk":"/d.raw","nat":false,"metadata":"none","shutdown_timeout":"3s"}`, true},
		{`{}`, true},
		{`null`, true},
		{`{"moby":"/x","kernel":"/k"}`, false},
		{`{"initrd":"/i"}`, false},
		{`{"kernel":"/k","memory":-1}`, false},
		{`{"kernel":"/k","shutdown_timeout":"x"}`, false},
		{`{"kernel":"/k","publish":["0:80"]}`, false},
		{`{"kernel":"/k","disks":[{"size":"0"}]}`, false},
		{`{"kernel":"/k","metadata":"fw_cfg"}`, false},
		{`{"network":{"name":"n"}}`, false},
		{`{"network":{"name":"n","socket":"rel.sock"}}`, false},
		{`{"network":{"socket":"/s.sock"}}`, false},
		{`{"network":{"name":"n","socket":"/s","subnet":"10.0.0.0/30"}}`, false},
		{`{} {}`, false},
	} {
		t.Run(tc.props, func(t *testing.T) {
			err := (&backend{}).Validate(spi.Any(tc.props))
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func FuzzValidate(f *testing.F) {
	f.Add([]byte(`{"kernel":"/k","disks":[{"size":"1G"}],"network":{"name":"n","socket":"/s"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parse(b, false)
		if err == nil && p.Network != nil && p.Network.Socket == "" {
			t.Fatalf("accepted a network without a socket: %q", b)
		}
	})
}
