package qemu

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mobykit/mobykit/internal/testenv"
	"github.com/mobykit/mobykit/vm"
	"github.com/mobykit/mobykit/vm/vmtest"
)

// NetModules are the modules, in load order, a busybox guest needs for a virtio NIC on
// Debian's cloud kernel, and FwCfgModule the one for /sys/firmware/qemu_fw_cfg.
var (
	netModules  = []string{"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "failover", "net_failover", "virtio_net"}
	fwCfgModule = "qemu_fw_cfg"
)

// syncBuffer collects the console while QEMU writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRunBoots boots Debian's cloud kernel with a busybox initramfs through Run, as
// `mobykit run qemu PREFIX` does, and checks on the serial console that the guest ran, read
// its userdata from fw_cfg, and served HTTP on a published port.
func TestRunBoots(t *testing.T) {
	testenv.RequireQEMU(t)
	kernel := testenv.Kernel(t)
	dir := t.TempDir()
	prefix := filepath.Join(dir, "guest")
	ird := vmtest.NewBusybox(t, "")
	mods := ird.Modules(t, testenv.KernelDir(t), append(netModules, fwCfgModule)...)
	ird.Add("init", 0o755, fmt.Sprintf(`#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys
for m in %s; do insmod $m; done
echo "MARKER-BOOTED"
echo "USERDATA=$(cat /sys/firmware/qemu_fw_cfg/by_name/opt/org.mobyproject.test/raw)"
ip link set lo up; ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0
mkdir -p /www; echo hello-from-guest > /www/index.html
httpd -p 80 -h /www
echo MARKER-HTTPD
sleep 30
poweroff -f
`, strings.Join(mods, " ")))
	ird.Write(t, prefix+"-initrd.img")
	if err := os.Symlink(kernel, prefix+"-kernel"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(prefix+"-cmdline", []byte("console=ttyS0 quiet panic=-1\n"), 0o644)

	hostPort := testenv.FreePort(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var console syncBuffer
	copied := make(chan struct{})
	go func() { io.Copy(&console, r); close(copied) }()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	state := filepath.Join(dir, "state")
	done := make(chan error, 1) // receives Run's result, then is closed
	start := time.Now()
	go func() {
		defer close(done)
		done <- Run(ctx, RunOptions{
			Path:     prefix,
			MemoryMB: 256,
			Disks:    []vm.DiskSpec{{Size: "16M"}},
			Data:     []byte("hello-userdata"),
			Metadata: func(d vm.Dir, data []byte) (string, []FwCfg, error) {
				p := d.Path("userdata")
				return "", []FwCfg{{Name: "opt/org.mobyproject.test", File: p}}, os.WriteFile(p, data, 0o644)
			},
			Publish:  []Forward{{HostPort: hostPort, GuestPort: 80}},
			StateDir: state,
			Stdin:    devNull(t),
			Stdout:   w,
			Stderr:   w,
			Grace:    time.Second,
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})

	waitFor(t, &console, "MARKER-HTTPD", 60*time.Second, done)
	t.Logf("boot to MARKER-HTTPD: %v", time.Since(start))
	if !strings.Contains(console.String(), "USERDATA=hello-userdata") {
		t.Errorf("guest did not read its fw_cfg userdata; console:\n%s", console.String())
	}
	if _, err := os.Stat(filepath.Join(state, "disk0.qcow2")); err != nil {
		t.Errorf("disk not created in the state folder: %v", err)
	}
	var p vm.Process
	if err := vm.ReadJSON(filepath.Join(state, vm.ProcessFile), &p); err != nil || !p.Alive() {
		t.Errorf("process record: %+v alive=%v err=%v", p, p.Alive(), err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("console:\n%s", console.String())
		}
	})
	body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", hostPort), 20*time.Second)
	if strings.TrimSpace(body) != "hello-from-guest" {
		t.Errorf("published port answered %q", body)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not stop the VM after cancel")
	}
	if p.Alive() {
		t.Fatal("qemu still running after Run returned")
	}
	w.Close()
	<-copied
}

func devNull(t *testing.T) *os.File {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func waitFor(t *testing.T, console fmt.Stringer, marker string, d time.Duration, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(console.String(), marker) {
		select {
		case err := <-done:
			t.Fatalf("qemu exited (%v) before %q; console:\n%s", err, marker, console.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q on the console within %v; console:\n%s", marker, d, console.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string, d time.Duration) string {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(d)
	for {
		resp, err := c.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
