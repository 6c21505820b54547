package sysinit

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPrepareProcessInterfaces runs runtime.json's interfaces and bindNS for real, in network
// namespaces made for the test: this goroutine's thread moves to a fresh namespace (standing for
// the host's) and a child process gets its own (standing for the container's).
func TestPrepareProcessInterfaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	runtime.LockOSThread() // never unlocked: the thread dies with the test goroutine
	if err := unix.Unshare(unix.CLONE_NEWNET | unix.CLONE_NEWNS); err != nil {
		t.Skipf("unshare: %v", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatal(err)
	}
	child := exec.Command("sleep", "60")
	child.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := child.Start(); err != nil {
		t.Skipf("start a process in a new network namespace: %v", err)
	}
	defer func() { child.Process.Kill(); child.Wait() }()
	pid := child.Process.Pid

	nsFile := filepath.Join(t.TempDir(), "netns")
	rt := &Runtime{
		Interfaces: []Interface{{Name: "veth0", Peer: "veth1"}},
		BindNS:     Namespaces{Net: nsFile},
	}
	if err := PrepareProcess(pid, rt); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(nsFile, unix.MNT_DETACH)
	if _, err := net.InterfaceByName("veth1"); err != nil {
		t.Errorf("veth peer not left in the root namespace: %v", err)
	}
	if _, err := net.InterfaceByName("veth0"); err == nil {
		t.Errorf("veth0 still in the root namespace")
	}
	dev, err := os.ReadFile("/proc/" + itoa(pid) + "/net/dev")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dev), "veth0:") {
		t.Errorf("veth0 not in the container's namespace:\n%s", dev)
	}
	var want, got unix.Stat_t
	unix.Stat("/proc/"+itoa(pid)+"/ns/net", &want)
	if err := unix.Stat(nsFile, &got); err != nil || got.Ino != want.Ino || got.Dev != want.Dev {
		t.Errorf("bindNS net: %s is not the container's namespace (%v)", nsFile, err)
	}

	// errors name the interface
	if err := PrepareProcess(pid, &Runtime{Interfaces: []Interface{{Name: "nope0"}}}); err == nil || !strings.Contains(err.Error(), "nope0") {
		t.Errorf("moving a missing interface: %v", err)
	}
	if err := PrepareProcess(pid, &Runtime{Interfaces: []Interface{{Name: "v", Add: "veth"}}}); err == nil || !strings.Contains(err.Error(), "peer") {
		t.Errorf("veth without peer: %v", err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
