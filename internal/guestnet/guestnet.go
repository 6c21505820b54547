// Package guestnet joins a VM to its group network from inside the guest. The instance
// plugins (instance-qemu, instance-vfkit) give a kernel-booted VM its address on the group
// network on the kernel command line, as mobykit.ip=ADDR/N and mobykit.mac=MAC (the MAC of
// the NIC on that network); the example member programs read it with ReadCmdline, check it
// with Cmdline.Group, and put the address on the NIC with Group.Configure. On a cloud the
// address comes from DHCP and the command line has neither.
//
// The command line is written by the host: it is input crossing a boundary, so its length is
// bounded and the group settings are refused, with the parameter named, unless they are an
// IPv4 unicast address with a prefix length and an Ethernet unicast MAC.
package guestnet

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
)

// Kernel command line parameters the instance plugins set.
const (
	ParamIP       = "mobykit.ip"       // the VM's address on the group network, CIDR form
	ParamMAC      = "mobykit.mac"      // the MAC of the NIC on the group network
	ParamInstance = "mobykit.instance" // the instance ID
)

// MaxCmdline bounds the kernel command line read and parsed, in bytes. Linux's own limit
// (COMMAND_LINE_SIZE) is 2048 on x86 and 4096 on arm64; this leaves room for bootconfig.
const MaxCmdline = 64 << 10

// CmdlinePath is where the running kernel shows its command line.
const CmdlinePath = "/proc/cmdline"

// Cmdline holds the kernel command line's key=value parameters. A parameter given twice
// keeps its last value, as for the kernel's own parameters (the host appends its own after
// those of the image's spec). Words without "=" are left out.
type Cmdline map[string]string

// ReadCmdline reads and parses the running kernel's command line (CmdlinePath).
func ReadCmdline() (Cmdline, error) {
	f, err := os.Open(CmdlinePath)
	if err != nil {
		return nil, fmt.Errorf("kernel command line: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxCmdline+1))
	if err != nil {
		return nil, fmt.Errorf("kernel command line: %s: %w", CmdlinePath, err)
	}
	return ParseCmdline(string(b))
}

// ParseCmdline parses a kernel command line: words separated by white space, each key=value
// kept (quotes are not interpreted). It refuses a line longer than MaxCmdline.
func ParseCmdline(s string) (Cmdline, error) {
	if len(s) > MaxCmdline {
		return nil, fmt.Errorf("kernel command line: more than %d bytes", MaxCmdline)
	}
	m := Cmdline{}
	for _, f := range strings.Fields(s) {
		if k, v, ok := strings.Cut(f, "="); ok {
			m[k] = v
		}
	}
	return m, nil
}

// Group is a VM's place on its group network, as the host gives it.
type Group struct {
	Addr netip.Prefix     // the VM's IPv4 address and the network's prefix length
	MAC  net.HardwareAddr // the MAC of the NIC on the group network
}

// String returns the address in CIDR form and the MAC, "10.99.0.10/24 (52:54:00:12:34:56)".
func (g Group) String() string { return fmt.Sprintf("%s (%s)", g.Addr, g.MAC) }

// Group returns the group network settings of the command line; ok is false when it has none
// (no mobykit.ip: a cloud, where DHCP gives the address). An error names the parameter that
// is malformed, or missing (mobykit.mac without mobykit.ip, or the other way round).
func (c Cmdline) Group() (g Group, ok bool, err error) {
	ip, hasIP := c[ParamIP]
	mac, hasMAC := c[ParamMAC]
	if !hasIP && !hasMAC {
		return Group{}, false, nil
	}
	if !hasIP {
		return Group{}, false, fmt.Errorf("kernel command line: %s=%s without %s", ParamMAC, quote(mac), ParamIP)
	}
	if !hasMAC {
		return Group{}, false, fmt.Errorf("kernel command line: %s=%s without %s", ParamIP, quote(ip), ParamMAC)
	}
	if g.Addr, err = parseAddr(ip); err != nil {
		return Group{}, false, fmt.Errorf("kernel command line: %s=%s: %w", ParamIP, quote(ip), err)
	}
	if g.MAC, err = parseMAC(mac); err != nil {
		return Group{}, false, fmt.Errorf("kernel command line: %s=%s: %w", ParamMAC, quote(mac), err)
	}
	return g, true, nil
}

// parseAddr accepts an IPv4 unicast address with a prefix length from 1 to 32.
func parseAddr(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("want an IPv4 address with a prefix length, like 10.99.0.10/24")
	}
	a := p.Addr()
	switch {
	case p.Bits() == 0:
		return netip.Prefix{}, fmt.Errorf("prefix length 0: want 1 to 32")
	case a.IsUnspecified(), a.IsLoopback(), a.IsMulticast(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return netip.Prefix{}, fmt.Errorf("%s is not a unicast address", a)
	}
	return p, nil
}

// parseMAC accepts an Ethernet (48-bit) unicast MAC other than all zeros.
func parseMAC(s string) (net.HardwareAddr, error) {
	m, err := net.ParseMAC(s)
	if err != nil || len(m) != 6 {
		return nil, fmt.Errorf("want an Ethernet MAC, like 52:54:00:12:34:56")
	}
	if m[0]&1 != 0 {
		return nil, fmt.Errorf("%s is a multicast MAC, not a NIC's", m)
	}
	if string(m) == string(make(net.HardwareAddr, 6)) {
		return nil, fmt.Errorf("%s is not a NIC's MAC", m)
	}
	return m, nil
}

// quote shows a value from the command line in an error: quoted, and cut at 64 bytes.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}

// Interface returns the name of the interface among ifs whose MAC is mac. It refuses none,
// and more than one (a bridge or a VLAN sharing the NIC's MAC would make the choice a guess).
func Interface(ifs []net.Interface, mac net.HardwareAddr) (string, error) {
	var names []string
	for _, i := range ifs {
		if len(mac) > 0 && string(i.HardwareAddr) == string(mac) {
			names = append(names, i.Name)
		}
	}
	switch len(names) {
	case 0:
		return "", fmt.Errorf("no interface with MAC %s", mac)
	case 1:
		return names[0], nil
	default:
		return "", fmt.Errorf("interfaces %s all have MAC %s: want one", strings.Join(names, ", "), mac)
	}
}
