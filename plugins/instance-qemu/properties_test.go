package instanceqemu

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

func TestAllocate(t *testing.T) {
	root := t.TempDir()
	p, err := New(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := p.Backend.(*backend)
	n := &Network{Name: "n", Subnet: "10.5.0.0/24"}
	got, err := b.allocate(n, nil)
	if err != nil || got != "10.5.0.10/24" {
		t.Fatalf("first address %q %v", got, err)
	}
	d, _ := b.store.Create("qemu-a")
	d.WriteJSON("launch.json", map[string]any{"network": "n", "address": "10.5.0.10/24"})
	d2, _ := b.store.Create("qemu-b")
	d2.WriteJSON("launch.json", map[string]any{"network": "other", "address": "10.5.0.11/24"})
	if got, _ := b.allocate(n, nil); got != "10.5.0.11/24" {
		t.Fatalf("second address %q", got)
	}
	lid := spi.LogicalID("10.5.0.3")
	if got, _ := b.allocate(n, &lid); got != "10.5.0.3/24" {
		t.Fatalf("logical-ID address %q", got)
	}
	small := &Network{Name: "n", Subnet: "10.5.0.0/29"}
	if _, err := b.allocate(small, nil); err == nil {
		t.Fatal("allocated from a subnet with no room above .10")
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
