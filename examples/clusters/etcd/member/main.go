//go:build linux

// Command etcd-member prepares one member of the etcd cluster example
// (examples/clusters/etcd) before etcd starts. It runs as an onboot container after the
// metadata agent and the data disk's format and mount:
//
//   - it puts the address instance-qemu gives the VM on the group network (kernel command
//     line: mobykit.ip=ADDR/N mobykit.mac=MAC) on the interface with that MAC; on a cloud the
//     address comes from DHCP and the command line has none;
//   - it reads the member's name (its logical ID, an address) and every member's address from
//     the userdata (/run/config/etcd/name and /run/config/etcd/peers);
//   - it decides how etcd starts (see Decide: restart from the data folder, create the
//     cluster, or join a running one, `member add` included) and writes etcd's environment
//     to /run/etcd/env, which the etcd service sources.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

func cmdline() map[string]string {
	b, _ := os.ReadFile("/proc/cmdline")
	m := map[string]string{}
	for _, f := range strings.Fields(string(b)) {
		if k, v, ok := strings.Cut(f, "="); ok {
			m[k] = v
		}
	}
	return m
}

// configure puts addr (CIDR) on the interface whose MAC is mac and brings it up.
func configure(mac, addr string) error {
	ip, ipn, err := net.ParseCIDR(addr)
	if err != nil || ip.To4() == nil {
		return fmt.Errorf("address %q: want IPv4 CIDR", addr)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return err
	}
	name := ""
	for _, i := range ifs {
		if strings.EqualFold(i.HardwareAddr.String(), mac) {
			name = i.Name
		}
	}
	if name == "" {
		return fmt.Errorf("no interface with MAC %s", mac)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := ifr.SetInet4Addr(ip.To4()); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFADDR, ifr); err != nil {
		return fmt.Errorf("%s: set address: %w", name, err)
	}
	ifr.SetInet4Addr(net.IP(ipn.Mask).To4())
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFNETMASK, ifr); err != nil {
		return fmt.Errorf("%s: set netmask: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s: get flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP | unix.IFF_RUNNING)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s: bring up: %w", name, err)
	}
	log.Printf("etcd-member: %s on %s (%s)", addr, name, mac)
	return nil
}

// userdata reads /run/config/etcd/NAME, trimmed.
func userdata(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/run/config/etcd", name))
	if err != nil {
		return "", fmt.Errorf("userdata: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func run() error {
	cl := cmdline()
	if addr := cl["mobykit.ip"]; addr != "" {
		if err := configure(cl["mobykit.mac"], addr); err != nil {
			return fmt.Errorf("group network: %w", err)
		}
	}
	name, err := userdata("name")
	if err != nil {
		return err
	}
	peers, err := userdata("peers")
	if err != nil {
		return err
	}
	dataDir := os.Getenv("ETCD_DATA_DIR")
	if dataDir == "" {
		dataDir = "/var/lib/etcd/data"
	}
	c := Config{Name: name, Peers: strings.Fields(peers), DataDir: dataDir}
	if err := c.Validate(); err != nil {
		return err
	}
	p, err := Decide(context.Background(), c, c.cluster())
	if err != nil {
		return err
	}
	log.Printf("etcd-member: %s starts %s: %s", name, p.State, p.Why)
	return writeFile("/run/etcd/env", c.Env(p))
}

// writeFile writes through a temporary file and a rename.
func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func main() {
	log.SetFlags(0)
	if err := run(); err != nil {
		log.Fatalf("etcd-member: %v", err)
	}
}
