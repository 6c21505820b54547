package vm

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"github.com/mobykit/mobykit/spi"
)

// DefaultSubnet is a group network's subnet when its properties name none.
const DefaultSubnet = "10.99.0.0/24"

// MaxSubnetPrefix is the longest prefix a group network may have: a /28 leaves five addresses
// (.10 to .14) for FirstFreeAddress; a longer prefix would leave none or fewer.
const MaxSubnetPrefix = 28

// MaxRecord bounds a launch.json read back from another instance's state folder: that file
// is input the plugin does not control (anyone who can write the state root can plant one).
const MaxRecord = 64 << 10

// ParseSubnet checks the subnet of a group network, DefaultSubnet when s is empty: an IPv4
// CIDR of /MaxSubnetPrefix or larger. The error names the value; callers add the field.
func ParseSubnet(s string) (*net.IPNet, error) {
	if s == "" {
		s = DefaultSubnet
	}
	_, ipn, err := net.ParseCIDR(s)
	if err != nil || ipn.IP.To4() == nil {
		return nil, fmt.Errorf("subnet %q: want an IPv4 CIDR", s)
	}
	if ones, _ := ipn.Mask.Size(); ones > MaxSubnetPrefix {
		return nil, fmt.Errorf("subnet %q: want a /%d or larger", s, MaxSubnetPrefix)
	}
	return ipn, nil
}

// addressRecord is the part of a launch.json that address allocation reads: the QEMU and
// vfkit plugins both record a group-network VM's network name and CIDR address under these keys.
type addressRecord struct {
	Network string `json:"network"`
	Address string `json:"address"`
}

// ReadRecord decodes another instance's JSON record at path into v, refusing anything but a
// regular file (a symlink, a FIFO that would block the read, a device) and more than MaxRecord
// bytes. The file is opened non-blocking and without following a final symlink, then checked
// on the open descriptor, so it cannot be swapped between the check and the read. An error
// wrapping fs.ErrNotExist means there is no such file.
func ReadRecord(path string, v any) error {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return fmt.Errorf("%s: a symlink, not a regular file", path)
		}
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file (%s)", path, fi.Mode().Type())
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxRecord+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > MaxRecord {
		return fmt.Errorf("%s: larger than %d bytes", path, MaxRecord)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// AllocateAddress returns, in CIDR form, the address of a VM on the group network called
// network whose subnet is subnet (checked by ParseSubnet, so DefaultSubnet when empty):
//
//   - when the logical ID is an IPv4 address, that address, which must be a host address of
//     the subnet (not outside it, not its network or broadcast address);
//   - else the lowest address from .10 up that no instance in store holds on the same network
//     (FirstFreeAddress), as its launch.json records.
//
// Every other instance's launch.json is read with ReadRecord. A state folder with none is
// skipped (it is being provisioned, so holds no address yet, or being removed); one that is
// unreadable, too large, not a regular file, not JSON, or whose address on this network does
// not parse stops allocation, since its address might otherwise be handed out twice. The
// errors name the network, logical ID, instance and file.
//
// The caller must hold the lock that serialises Provision (vm.Instances holds it around
// Backend.Launch and the write of launch.json), so two Provisions cannot take one address.
func AllocateAddress(store Store, network, subnetCIDR string, lid *spi.LogicalID) (string, error) {
	subnet, err := ParseSubnet(subnetCIDR)
	if err != nil {
		return "", fmt.Errorf("network %s: %w", network, err)
	}
	ones, _ := subnet.Mask.Size()
	if lid != nil {
		if ip := net.ParseIP(string(*lid)); ip != nil && ip.To4() != nil {
			ip = ip.To4()
			if !subnet.Contains(ip) {
				return "", fmt.Errorf("network %s: logical ID %s is outside the subnet %s", network, *lid, subnet)
			}
			if ones < 31 && (ip.Equal(subnet.IP.To4()) || ip.Equal(broadcast(subnet))) {
				return "", fmt.Errorf("network %s: logical ID %s is the network or broadcast address of %s", network, *lid, subnet)
			}
			return fmt.Sprintf("%s/%d", ip, ones), nil
		}
	}
	ids, err := store.List()
	if err != nil {
		return "", fmt.Errorf("network %s: %w", network, err)
	}
	used := map[string]bool{}
	for _, id := range ids {
		var rec addressRecord
		path := filepath.Join(store.Root, id, LaunchFile)
		err := ReadRecord(path, &rec)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("network %s: record of instance %s: %w", network, id, err)
		}
		if rec.Network != network {
			continue
		}
		ip, _, err := net.ParseCIDR(rec.Address)
		if err != nil {
			return "", fmt.Errorf("network %s: record of instance %s: %s: address %q: want CIDR form", network, id, path, rec.Address)
		}
		used[ip.String()] = true
	}
	if addr, ok := FirstFreeAddress(subnet, used); ok {
		return addr, nil
	}
	return "", fmt.Errorf("network %s: no free address in %s", network, subnet)
}

// FirstFreeAddress returns, in CIDR form, the lowest address of subnet from .10 up (below the
// broadcast address) that used does not hold, or false when every one is taken. AllocateAddress
// uses it.
func FirstFreeAddress(subnet *net.IPNet, used map[string]bool) (string, bool) {
	ones, _ := subnet.Mask.Size()
	base := binary.BigEndian.Uint32(subnet.IP.To4())
	size := uint32(1) << (32 - ones)
	for i := uint32(10); i < size-1; i++ {
		ip := make(net.IP, 4)
		binary.BigEndian.PutUint32(ip, base+i)
		if !used[ip.String()] {
			return fmt.Sprintf("%s/%d", ip, ones), true
		}
	}
	return "", false
}

func broadcast(n *net.IPNet) net.IP {
	ip := make(net.IP, 4)
	base, mask := n.IP.To4(), n.Mask
	if len(mask) == net.IPv6len {
		mask = mask[12:]
	}
	for i := range ip {
		ip[i] = base[i] | ^mask[i]
	}
	return ip
}
