package instanceqemu

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/vm"
)

func TestValidate(t *testing.T) {
	b := &backend{}
	for _, tc := range []struct {
		props string
		err   string // "" = valid
	}{
		{`{"moby":"/x/hello"}`, ""},
		{`{"Kernel":"/k","Initrd":"/i","Cmdline":"c","CPUs":2,"Memory":512}`, ""},
		{`{"iso":"/x.iso","publish":["0:80","8443:443/tcp"],"network":{"name":"n","subnet":"10.1.0.0/16"}}`, ""},
		{`{"disk":"/d.qcow2","disks":[{"size":"1G","persistent":true}],"metadata":"cd"}`, ""},
		{`null`, ""},
		{`{"memory":256}`, ""},
		{`{"kernel":"/k","iso":"/x.iso"}`, "exactly one"},
		{`{"iso":"/x.iso","initrd":"/i"}`, "need a kernel"},
		{`{"kernel":"/k","accel":"xen"}`, "accel"},
		{`{"kernel":"/k","metadata":"imds"}`, ""},
		{`{"kernel":"/k","metadata":"imds","user_net":false}`, "needs user_net"},
		{`{"kernel":"/k","metadata":"ec2"}`, "metadata"},
		{`{"kernel":"/k","disks":[{}]}`, "size is required"},
		{`{"kernel":"/k","disks":[{"size":"1G","format":"vmdk"}]}`, "format"},
		{`{"kernel":"/k","publish":["80"]}`, "publish"},
		{`{"kernel":"/k","publish":["0:80"],"user_net":false}`, "user_net"},
		{`{"kernel":"/k","outbound":true,"user_net":false}`, "outbound needs user_net"},
		{`{"kernel":"/k","network":{}}`, "name is required"},
		{`{"kernel":"/k","network":{"name":"n","subnet":"fd00::/64"}}`, "IPv4 CIDR"},
		{`{"kernel":"/k","network":{"name":"n","subnet":"10.5.0.0/29"}}`, "network.subnet \"10.5.0.0/29\": want a /28 or larger"},
		{`{"kernel":"/k","network":{"name":"n","subnet":"10.5.0.0/28"}}`, ""},
		{`{"kernel":"/k","network":{"name":"n","mcast":"10.0.0.1:5"}}`, "multicast"},
		{`{"kernel":"/k","shutdown_timeout":"soon"}`, "shutdown_timeout"},
		{`{"kernel":3}`, "Properties"},
	} {
		t.Run(tc.props, func(t *testing.T) {
			err := b.Validate(spi.Any(tc.props))
			if tc.err == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.err)
			}
		})
	}
}

func TestProvisionNeedsBootSource(t *testing.T) {
	if _, err := parse(spi.Any(`{"memory":256}`), true); err == nil || !strings.Contains(err.Error(), "exactly one") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzValidate(f *testing.F) {
	f.Add([]byte(`{"kernel":"/k","publish":["0:80"],"network":{"name":"n"}}`))
	f.Fuzz(func(t *testing.T, b []byte) { (&backend{}).Validate(b) })
}

func TestMcastStable(t *testing.T) {
	a, b := mcastFor("net-a"), mcastFor("net-b")
	if a != mcastFor("net-a") || a == b || !strings.HasPrefix(a, "230.") {
		t.Fatalf("mcastFor: %s %s", a, b)
	}
}

// provisionOnNetwork provisions, on the plugin at root, a kernel-booted VM with only a
// group-network NIC. The kernel is a placeholder: every test using this expects Provision to
// stop at address allocation, before QEMU starts.
func provisionOnNetwork(t *testing.T, p *Plugin, lid *spi.LogicalID) error {
	t.Helper()
	k := filepath.Join(t.TempDir(), "kernel")
	os.WriteFile(k, []byte("not a kernel"), 0o644)
	_, err := p.Provision(context.Background(), spi.Spec{LogicalID: lid,
		Properties: spi.Any(`{"kernel":"` + k + `","user_net":false,"network":{"name":"web","subnet":"10.5.0.0/24"}}`)})
	return err
}

// TestProvisionLogicalIDOutsideSubnetRefused: instance-qemu once gave a VM its logical ID as
// address even outside the network's subnet; Provision now refuses, naming both, and leaves
// no state folder behind.
func TestProvisionLogicalIDOutsideSubnetRefused(t *testing.T) {
	p, err := New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	lid := spi.LogicalID("10.7.0.5")
	err = provisionOnNetwork(t, p, &lid)
	if err == nil || !strings.Contains(err.Error(), "logical ID 10.7.0.5 is outside the subnet 10.5.0.0/24") || !strings.Contains(err.Error(), "network web") {
		t.Fatalf("Provision: %v", err)
	}
	if ids, _ := p.Store.List(); len(ids) != 0 {
		t.Fatalf("left behind: %v", ids)
	}
}

// TestProvisionUnreadableRecordRefused: instance-qemu once skipped another instance's
// launch.json it could not read, so could hand that instance's address out again. Garbage,
// an oversized file and a FIFO each now stop Provision with an error naming the instance.
func TestProvisionUnreadableRecordRefused(t *testing.T) {
	for name, plant := range map[string]func(d vm.Dir) error{
		"garbage": func(d vm.Dir) error { return os.WriteFile(d.Path(vm.LaunchFile), []byte(`{"network":"web",`), 0o644) },
		"oversized": func(d vm.Dir) error {
			big := `{"network":"web","address":"10.5.0.10/24","pad":"` + strings.Repeat("x", 2*vm.MaxRecord) + `"}`
			return os.WriteFile(d.Path(vm.LaunchFile), []byte(big), 0o644)
		},
		"fifo": func(d vm.Dir) error { return syscall.Mkfifo(d.Path(vm.LaunchFile), 0o644) },
	} {
		t.Run(name, func(t *testing.T) {
			p, err := New(t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			d, err := p.Store.Create("qemu-planted")
			if err != nil {
				t.Fatal(err)
			}
			if err := plant(d); err != nil {
				t.Fatal(err)
			}
			err = provisionOnNetwork(t, p, nil)
			if err == nil || !strings.Contains(err.Error(), "record of instance qemu-planted") {
				t.Fatalf("Provision: %v", err)
			}
		})
	}
}

// TestExampleGroupsNetwork: the example groups run on instance-qemu pass its property checks
// (their subnets are /24, above the /28 minimum) and each logical ID that is an address gets
// that address on the group's network.
func TestExampleGroupsNetwork(t *testing.T) {
	for _, f := range []string{"../../examples/clusters/local/group.json", "../../examples/clusters/etcd/group.json"} {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var g struct {
			Properties struct {
				Allocation struct{ LogicalIDs []spi.LogicalID }
				Instance   struct {
					Plugin     string
					Properties spi.Any
				}
			}
		}
		if err := json.Unmarshal(raw, &g); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if g.Properties.Instance.Plugin != "instance-qemu" {
			t.Fatalf("%s: plugin %q", f, g.Properties.Instance.Plugin)
		}
		p, err := parse(g.Properties.Instance.Properties, false)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if p.Network == nil {
			t.Fatalf("%s: no group network", f)
		}
		for _, lid := range g.Properties.Allocation.LogicalIDs {
			addr, err := vm.AllocateAddress(vm.Store{Root: t.TempDir()}, p.Network.Name, p.Network.Subnet, &lid)
			if err != nil || !strings.HasPrefix(addr, string(lid)+"/") {
				t.Fatalf("%s: logical ID %s: address %q, %v", f, lid, addr, err)
			}
		}
	}
}

// TestDiskBootOverlay: a boot disk is shared read-only; each instance writes to its own
// qcow2 overlay backed by it (real qemu-img).
func TestDiskBootOverlay(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed (apt-get install qemu-utils)")
	}
	base := filepath.Join(t.TempDir(), "base.img")
	if err := os.WriteFile(base, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := vm.Dir(t.TempDir())
	d, err := overlay(dir, base, "raw")
	if err != nil {
		t.Fatal(err)
	}
	if !d.Boot || d.Format != "qcow2" {
		t.Fatalf("disk %+v", d)
	}
	out, err := exec.Command("qemu-img", "info", "--output=json", d.Path).Output()
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Format          string `json:"format"`
		BackingFilename string `json:"backing-filename"`
		BackingFormat   string `json:"backing-filename-format"`
	}
	json.Unmarshal(out, &info)
	if info.Format != "qcow2" || info.BackingFilename != base || info.BackingFormat != "raw" {
		t.Fatalf("overlay info %+v", info)
	}
	if _, err := overlay(vm.Dir(t.TempDir()), filepath.Join(t.TempDir(), "missing.img"), "raw"); err == nil {
		t.Fatal("overlay of a missing disk succeeded")
	}
}
