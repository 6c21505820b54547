package instanceqemu

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mobykit/mobykit/internal/testenv"
	"github.com/mobykit/mobykit/spi"
)

// TestVDENetwork joins two VMs through a vde_switch (Debian's vde2) instead of multicast and
// checks that one pings the other.
func TestVDENetwork(t *testing.T) {
	testenv.RequireQEMU(t)
	sw := testenv.RequireTool(t, "vde_switch", "vde2")
	kernel, initrd := buildGuest(t)
	root, err := os.MkdirTemp("", "iv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	ctl, pidFile := filepath.Join(root, "switch"), filepath.Join(root, "switch.pid")
	if out, err := exec.Command(sw, "-s", ctl, "-d", "-p", pidFile).CombinedOutput(); err != nil {
		t.Fatalf("vde_switch: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				syscall.Kill(pid, syscall.SIGTERM)
			}
		}
	})
	ctx := context.Background()
	p, err := New(filepath.Join(root, "state"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ds, _ := p.DescribeInstances(ctx, nil, false)
		for _, d := range ds {
			p.Destroy(ctx, d.ID, spi.Context{Reason: spi.ReasonTerminate})
		}
	})
	props, _ := json.Marshal(map[string]any{
		"kernel": kernel, "initrd": initrd, "cmdline": "console=ttyS0 quiet", "memory": 256,
		"network": map[string]any{"name": "v", "subnet": "10.98.0.0/24", "vde": ctl}, "shutdown_timeout": "1s",
	})
	lids := []spi.LogicalID{"10.98.0.21", "10.98.0.22"}
	for i := range lids {
		lid := lids[i]
		if _, err := p.Provision(ctx, spi.Spec{Properties: props, LogicalID: &lid, Init: "peer=" + string(lids[1-i])}); err != nil {
			t.Fatal(err)
		}
	}
	ds, _ := p.DescribeInstances(ctx, nil, true)
	for _, d := range ds {
		var pr struct{ Console string }
		json.Unmarshal(d.Properties, &pr)
		waitConsole(t, pr.Console, "PEER-OK", 90*time.Second)
	}
}
