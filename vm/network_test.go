package vm

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mobykit/mobykit/spi"
)

// plant creates instance id's state folder in s with content as its launch.json.
func plant(t *testing.T, s Store, id, content string) Dir {
	t.Helper()
	d, err := s.Create(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.Path(LaunchFile), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestAllocateAddress(t *testing.T) {
	s := Store{Root: filepath.Join(t.TempDir(), "instances")}
	got, err := AllocateAddress(s, "n", "10.5.0.0/24", nil)
	if err != nil || got != "10.5.0.10/24" {
		t.Fatalf("first address %q %v", got, err)
	}
	plant(t, s, "vm-a", `{"network":"n","address":"10.5.0.10/24"}`)
	plant(t, s, "vm-b", `{"network":"other","address":"10.5.0.11/24"}`)
	plant(t, s, "vm-c", `{"kind":"no network"}`)
	if _, err := s.Create("vm-provisioning"); err != nil { // no launch.json yet: skipped
		t.Fatal(err)
	}
	if got, err := AllocateAddress(s, "n", "10.5.0.0/24", nil); err != nil || got != "10.5.0.11/24" {
		t.Fatalf("second address %q %v", got, err)
	}
	lid := spi.LogicalID("10.5.0.3")
	if got, err := AllocateAddress(s, "n", "10.5.0.0/24", &lid); err != nil || got != "10.5.0.3/24" {
		t.Fatalf("logical-ID address %q %v", got, err)
	}
	name := spi.LogicalID("web-1") // not an address: allocated like no logical ID
	if got, err := AllocateAddress(s, "n", "10.5.0.0/24", &name); err != nil || got != "10.5.0.11/24" {
		t.Fatalf("named logical ID %q %v", got, err)
	}
	if got, err := AllocateAddress(s, "d", "", nil); err != nil || got != "10.99.0.10/24" {
		t.Fatalf("default subnet %q %v", got, err)
	}
	// A /28 has .10 to .14; once those are taken, allocation says so.
	for i := 10; i <= 14; i++ {
		plant(t, s, fmt.Sprintf("full-%d", i), fmt.Sprintf(`{"network":"full","address":"10.6.0.%d/28"}`, i))
	}
	if _, err := AllocateAddress(s, "full", "10.6.0.0/28", nil); err == nil || !strings.Contains(err.Error(), "no free address") || !strings.Contains(err.Error(), "full") {
		t.Fatalf("full network: %v", err)
	}
}

// TestAllocateLogicalIDOutsideSubnetRefused: a logical ID that is an IPv4 address outside
// the network's subnet (or its network or broadcast address) is refused, naming the logical
// ID and the network, rather than given to a VM that could then not reach its peers.
func TestAllocateLogicalIDOutsideSubnetRefused(t *testing.T) {
	s := Store{Root: t.TempDir()}
	for _, tc := range []struct{ lid, want string }{
		{"10.7.0.5", "outside the subnet"},
		{"192.168.1.1", "outside the subnet"},
		{"10.5.0.0", "network or broadcast"},
		{"10.5.0.255", "network or broadcast"},
	} {
		lid := spi.LogicalID(tc.lid)
		_, err := AllocateAddress(s, "web", "10.5.0.0/24", &lid)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.lid) || !strings.Contains(err.Error(), "network web") {
			t.Errorf("logical ID %s: %v", tc.lid, err)
		}
	}
}

// TestAllocateUnreadableRecordRefused: another instance's launch.json that cannot be
// decoded (garbage, a folder in its place, an address on this network that does not parse)
// stops allocation with an error naming the instance and the file: skipping it could hand
// that instance's address out twice.
func TestAllocateUnreadableRecordRefused(t *testing.T) {
	for name, setup := range map[string]func(s Store){
		"garbage":     func(s Store) { plant(t, s, "vm-bad", `{"network":"n","addr`) },
		"bad address": func(s Store) { plant(t, s, "vm-bad", `{"network":"n","address":"10.5.0.10"}`) },
		"folder": func(s Store) {
			d, _ := s.Create("vm-bad")
			os.Mkdir(d.Path(LaunchFile), 0o700)
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := Store{Root: t.TempDir()}
			plant(t, s, "vm-good", `{"network":"n","address":"10.5.0.10/24"}`)
			setup(s)
			got, err := AllocateAddress(s, "n", "10.5.0.0/24", nil)
			if err == nil || !strings.Contains(err.Error(), "vm-bad") || !strings.Contains(err.Error(), filepath.Join(s.Root, "vm-bad", LaunchFile)) {
				t.Fatalf("allocated %q, err %v", got, err)
			}
		})
	}
}

// TestAllocateOversizedRecordRefused: a launch.json larger than MaxRecord is refused after
// reading at most MaxRecord+1 bytes, naming the file (a planted huge file costs no memory).
func TestAllocateOversizedRecordRefused(t *testing.T) {
	s := Store{Root: t.TempDir()}
	plant(t, s, "vm-big", `{"network":"n","address":"10.5.0.10/24","pad":"`+strings.Repeat("x", 2*MaxRecord)+`"}`)
	_, err := AllocateAddress(s, "n", "10.5.0.0/24", nil)
	if err == nil || !strings.Contains(err.Error(), "vm-big") || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized record: %v", err)
	}
	// A symlink to an endless device would be bounded too, but is refused before reading.
	d, _ := s.Create("vm-zero")
	os.Symlink("/dev/zero", d.Path(LaunchFile))
	os.RemoveAll(filepath.Join(s.Root, "vm-big"))
	if _, err := AllocateAddress(s, "n", "10.5.0.0/24", nil); err == nil || !strings.Contains(err.Error(), "vm-zero") || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("symlink to /dev/zero: %v", err)
	}
}

// TestAllocateFIFORecordRefused: a FIFO planted as launch.json would block a plain read
// forever (and Provision with it, holding the plugin's lock); it is refused at once.
func TestAllocateFIFORecordRefused(t *testing.T) {
	s := Store{Root: t.TempDir()}
	d, _ := s.Create("vm-fifo")
	if err := syscall.Mkfifo(d.Path(LaunchFile), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := AllocateAddress(s, "n", "10.5.0.0/24", nil); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "vm-fifo") || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("FIFO record: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("allocation blocked on a FIFO for a minute")
	}
}

// TestNetworkSubnetTooSmallRefused: a subnet longer than /28 leaves no room above .10 and is
// refused when the properties are checked, naming the value; so are non-IPv4 subnets.
func TestNetworkSubnetTooSmallRefused(t *testing.T) {
	for s, want := range map[string]string{
		"10.5.0.0/29": "/28 or larger", "10.5.0.0/32": "/28 or larger",
		"fd00::/64": "IPv4 CIDR", "10.5.0.0": "IPv4 CIDR", "x": "IPv4 CIDR",
	} {
		if _, err := ParseSubnet(s); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), s) {
			t.Errorf("ParseSubnet(%q): %v", s, err)
		}
		if _, err := AllocateAddress(Store{Root: t.TempDir()}, "n", s, nil); err == nil || !strings.Contains(err.Error(), "network n") {
			t.Errorf("AllocateAddress with subnet %q: %v", s, err)
		}
	}
	for _, s := range []string{"", "10.5.0.0/28", "10.99.1.0/24", "10.0.0.0/8"} {
		if _, err := ParseSubnet(s); err != nil {
			t.Errorf("ParseSubnet(%q): %v", s, err)
		}
	}
}

// netBackend is shBackend with a group-network address, allocated as the QEMU and vfkit
// plugins do, recorded in launch.json. The pause between reading the records and returning
// widens the window in which an unserialised Provision would read the same records.
type netBackend struct{ shBackend }

func (b *netBackend) Launch(ctx context.Context, dir Dir, id spi.ID, spec spi.Spec) (Launch, error) {
	addr, err := AllocateAddress(Store{Root: filepath.Dir(string(dir))}, "n", "10.5.0.0/24", spec.LogicalID)
	if err != nil {
		return Launch{}, err
	}
	time.Sleep(20 * time.Millisecond)
	l, err := b.shBackend.Launch(ctx, dir, id, spec)
	l.Properties["network"], l.Properties["address"] = "n", addr
	return l, err
}

// TestConcurrentProvisionsGetDistinctAddresses: Provisions racing on one Instances each get
// their own address, since allocation runs under the lock that also covers writing
// launch.json.
func TestConcurrentProvisionsGetDistinctAddresses(t *testing.T) {
	ctx := context.Background()
	in := &Instances{Store: Store{Root: filepath.Join(t.TempDir(), "instances")}, Backend: &netBackend{}, Prefix: "net-", Grace: 5 * time.Second}
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := in.Provision(ctx, spi.Spec{})
			if err == nil {
				t.Cleanup(func() { in.Destroy(ctx, *id, spi.Context{Reason: spi.ReasonTerminate}) })
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ids, _ := in.Store.List()
	seen := map[string]string{}
	for _, id := range ids {
		var rec addressRecord
		if err := ReadRecord(filepath.Join(in.Store.Root, id, LaunchFile), &rec); err != nil {
			t.Fatal(err)
		}
		ip, _, err := net.ParseCIDR(rec.Address)
		if err != nil {
			t.Fatalf("%s: address %q", id, rec.Address)
		}
		if other, dup := seen[ip.String()]; dup {
			t.Fatalf("%s and %s both got %s", id, other, ip)
		}
		seen[ip.String()] = id
	}
	if len(seen) != n {
		t.Fatalf("%d addresses for %d instances: %v", len(seen), n, seen)
	}
}
