package instanceqemu

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mobykit/mobykit/internal/testenv"
	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/vm"
	"github.com/mobykit/mobykit/vm/qmp"
	"github.com/mobykit/mobykit/vm/vmtest"
)

var netModules = []string{"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "failover", "net_failover", "virtio_net", "qemu_fw_cfg"}

// guestInit configures the user NIC and the group NIC (found by the MAC the plugin puts on
// the command line), prints its userdata, serves its instance ID over HTTP, and pings the
// peer named in its userdata ("peer=ADDR").
const guestInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys
for m in %s; do insmod $m; done
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p"; }
ID=$(arg mobykit.instance); IP=$(arg mobykit.ip); MAC=$(arg mobykit.mac)
E0=$(arg test.eth0); [ -n "$E0" ] || E0=10.0.2.15/24
ip link set lo up
ip link set eth0 up; ip addr add $E0 dev eth0
UD=$(cat /sys/firmware/qemu_fw_cfg/by_name/opt/com.mobykit/userdata/raw 2>/dev/null)
imds() { timeout 5 wget -q -O - http://169.254.169.254/latest/$1; }  # (busybox wget -T segfaults)
[ -n "$UD" ] || UD=$(imds user-data)
echo "USERDATA=$UD"
for i in /sys/class/net/*; do
  if [ "$(cat $i/address)" = "$MAC" ]; then G=$(basename $i); ip link set $G up; ip addr add $IP dev $G; fi
done
mkdir -p /www; echo "$ID" > /www/index.html; httpd -p 80 -h /www
echo "UP $ID $IP on $G"
PEER=${UD#peer=}
while :; do
  ping -c 1 -W 1 $PEER >/dev/null 2>&1 && echo "PEER-OK $PEER"
  [ "$E0" = 10.0.2.15/24 ] || { I=$(imds meta-data/instance-id) && echo "IMDS-OK $I"; }
  sleep 1
done
`

func buildGuest(t *testing.T) (kernel, initrd string) { return buildGuestWith(t, guestInit) }

// buildGuestWith builds a busybox initramfs whose init is script, a format string given the
// network modules to load.
func buildGuestWith(t *testing.T, script string) (kernel, initrd string) {
	kernel = testenv.Kernel(t)
	ird := vmtest.NewBusybox(t, "")
	mods := ird.Modules(t, testenv.KernelDir(t), netModules...)
	ird.Add("init", 0o755, fmt.Sprintf(script, strings.Join(mods, " ")))
	return kernel, ird.Write(t, filepath.Join(t.TempDir(), "initrd.img"))
}

func waitConsole(t *testing.T, path, marker string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), marker) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %s within %v:\n%s", marker, path, d, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func qemuPids(t *testing.T, root string) []string {
	out, _ := exec.Command("pgrep", "-f", root).Output()
	return strings.Fields(string(out))
}

// TestPluginTwoVMs provisions two VMs of one group on an L2 network with fixed addresses
// (their logical IDs), userdata and a published port, and checks: both listed at once with
// their tags; each reads its userdata (the first from fw_cfg, the second from the plugin's
// EC2-compatible metadata server), serves HTTP on its published port and reaches the other
// over the group network; a restarted plugin finds them and serves their metadata again;
// Destroy leaves no process or state.
func TestPluginTwoVMs(t *testing.T) {
	testenv.RequireQEMU(t)
	kernel, initrd := buildGuest(t)
	root, err := os.MkdirTemp("", "iq") // short: the QMP socket path must fit in 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	ctx := context.Background()
	p, err := New(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.IMDSRelay = testRelay(t)
	t.Cleanup(func() {
		ds, _ := p.DescribeInstances(ctx, nil, false)
		for _, d := range ds {
			p.Destroy(ctx, d.ID, spi.Context{Reason: spi.ReasonTerminate})
		}
	})
	net := fmt.Sprintf("test-%d", os.Getpid())
	propsFor := func(imds bool) spi.Any {
		m := map[string]any{
			"kernel": kernel, "initrd": initrd, "cmdline": "console=ttyS0 quiet",
			"memory": 256, "publish": []string{"0:80"},
			"network":          map[string]any{"name": net},
			"disks":            []map[string]any{{"size": "8M", "persistent": true}},
			"shutdown_timeout": "1s",
		}
		if imds {
			m["metadata"] = "imds"
			m["cmdline"] = "console=ttyS0 quiet test.eth0=169.254.169.15/24"
		}
		b, _ := json.Marshal(m)
		return b
	}
	for _, im := range []bool{false, true} {
		if err := p.Validate(ctx, propsFor(im)); err != nil {
			t.Fatal(err)
		}
	}
	lids := []spi.LogicalID{"10.99.0.21", "10.99.0.22"}
	start := time.Now()
	var ids []spi.ID
	for i, lid := range lids {
		lid := lid
		peer := lids[1-i]
		id, err := p.Provision(ctx, spi.Spec{
			Properties: propsFor(i == 1), LogicalID: &lid, Init: "peer=" + string(peer),
			Tags: map[string]string{spi.GroupTag: "g", spi.ConfigHashTag: "h1", spi.LogicalIDTag: string(lid)},
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, *id)
	}
	t.Logf("provisioned 2 VMs in %v", time.Since(start))
	ds, err := p.DescribeInstances(ctx, map[string]string{spi.GroupTag: "g"}, true)
	if err != nil || len(ds) != 2 {
		t.Fatalf("listed right after Provision: %v, %v", ds, err)
	}
	for _, d := range ds {
		var pr struct {
			Ports   map[string]string
			Address string
			Console string
			QMP     string
		}
		json.Unmarshal(d.Properties, &pr)
		if d.LogicalID == nil || pr.Address != string(*d.LogicalID)+"/24" {
			t.Fatalf("%s: address %q for logical ID %v", d.ID, pr.Address, d.LogicalID)
		}
		waitConsole(t, pr.Console, "UP "+string(d.ID), 90*time.Second)
		t.Logf("%s up after %v", d.ID, time.Since(start))
		waitConsole(t, pr.Console, "USERDATA=peer=", time.Second)
		waitConsole(t, pr.Console, "PEER-OK", 60*time.Second)
		resp, err := http.Get("http://" + pr.Ports["80/tcp"] + "/")
		if err != nil {
			t.Fatalf("%s: published port: %v", d.ID, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.TrimSpace(string(b)) != string(d.ID) {
			t.Fatalf("%s answered %q on its published port", d.ID, b)
		}
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := qmp.Dial(qctx, pr.QMP)
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.QueryStatus(qctx)
		if err != nil || !st.Running {
			t.Fatalf("%s: QMP status %+v %v", d.ID, st, err)
		}
		// The metadata CD is in the drive the cloud kernel's ata_piix sees.
		blocks, err := c.Execute(qctx, "query-block", nil)
		c.Close()
		cancel()
		wantCD := *d.LogicalID == lids[0] // the other gets its userdata from the metadata server
		if err != nil || strings.Contains(string(blocks), "metadata.iso") != wantCD || (wantCD && !strings.Contains(string(blocks), `"ide0-cd1"`)) {
			t.Fatalf("%s: metadata CD not attached: %s %v", d.ID, blocks, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "disks", "10.99.0.21", "disk0.qcow2")); err != nil {
		t.Fatalf("persistent disk: %v", err)
	}

	imdsVM := ds[0]
	if *imdsVM.LogicalID != lids[1] {
		imdsVM = ds[1]
	}
	var ipr struct{ Console string }
	json.Unmarshal(imdsVM.Properties, &ipr)
	waitConsole(t, ipr.Console, "IMDS-OK "+string(imdsVM.ID), 30*time.Second)

	// A restarted plugin adopts the running VMs, and serves their metadata again.
	p.Close()
	p2, err := New(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	p2.IMDSRelay = testRelay(t)
	t.Cleanup(func() { p2.Close() })
	os.WriteFile(ipr.Console, nil, 0o644) // QEMU appends; start afresh to see new lines only
	waitConsole(t, ipr.Console, "IMDS-OK "+string(imdsVM.ID), 30*time.Second)
	ds2, _ := p2.DescribeInstances(ctx, map[string]string{spi.GroupTag: "g"}, false)
	if len(ds2) != 2 {
		t.Fatalf("restarted plugin lists %d VMs", len(ds2))
	}
	for _, id := range ids {
		if err := p2.Destroy(ctx, id, spi.Context{Reason: spi.ReasonTerminate}); err != nil {
			t.Fatal(err)
		}
	}
	if left, _ := vm.Store.List(vm.Store{Root: filepath.Join(root, "instances")}); len(left) != 0 {
		t.Fatalf("state left: %v", left)
	}
	if pids := qemuPids(t, root); len(pids) != 0 {
		t.Fatalf("qemu processes left: %v", pids)
	}
	if _, err := os.Stat(filepath.Join(root, "disks", "10.99.0.21", "disk0.qcow2")); err != nil {
		t.Fatalf("persistent disk gone after Destroy: %v", err)
	}
}
