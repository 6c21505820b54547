package guestnet

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mobykit/mobykit/internal/testenv"
)

// TestConfigure runs Configure for real in a network namespace made for the test (this
// goroutine's thread moves to it, so the host's interfaces are never touched): a veth pair
// stands for the VM's NICs, and the address must land on the one with the given MAC, up.
func TestConfigure(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	// ip makes the test's interfaces.
	ipTool := testenv.RequireTool(t, "ip", "iproute2")
	runtime.LockOSThread() // never unlocked: the thread dies with the test goroutine
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Skipf("unshare: %v", err)
	}
	// exec forks from this locked thread, so ip works in the test's namespace.
	if out, err := exec.Command(ipTool, "link", "add", "gn0", "address", "52:54:00:00:00:01", "type", "veth",
		"peer", "name", "gn1", "address", "52:54:00:00:00:02").CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v\n%s", err, out)
	}

	g := Group{Addr: netip.MustParsePrefix("10.99.0.10/24"), MAC: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 2}}
	name, err := g.Configure()
	if err != nil {
		t.Fatal(err)
	}
	if name != "gn1" {
		t.Fatalf("configured %s, want gn1 (MAC %s)", name, g.MAC)
	}
	for _, tc := range []struct {
		name, addr string
		up         bool
	}{{"gn1", "10.99.0.10/24", true}, {"gn0", "", false}} {
		i, err := net.InterfaceByName(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := i.Addrs()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				got = append(got, a.String())
			}
		}
		if strings.Join(got, " ") != tc.addr {
			t.Errorf("%s has IPv4 addresses %v, want %q", tc.name, got, tc.addr)
		}
		if up := i.Flags&net.FlagUp != 0; up != tc.up {
			t.Errorf("%s up %v, want %v", tc.name, up, tc.up)
		}
	}

	// Errors name what was being done.
	g.MAC = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 9}
	if _, err := g.Configure(); err == nil || !strings.Contains(err.Error(), "group network: no interface with MAC 52:54:00:00:00:09") {
		t.Errorf("absent MAC: %v", err)
	}
}
