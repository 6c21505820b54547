package guestnet

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// Configure puts g's address and netmask on the interface whose MAC is g.MAC and brings it
// up, in the network namespace of the calling thread (needs CAP_NET_ADMIN). It returns the
// interface's name.
func (g Group) Configure() (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("group network: list interfaces: %w", err)
	}
	name, err := Interface(ifs, g.MAC)
	if err != nil {
		return "", fmt.Errorf("group network: %w", err)
	}
	if err := setAddr(name, g); err != nil {
		return "", fmt.Errorf("group network: %s: %w", name, err)
	}
	return name, nil
}

func setAddr(name string, g Group) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	ip := g.Addr.Addr().As4()
	if err := ifr.SetInet4Addr(ip[:]); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFADDR, ifr); err != nil {
		return fmt.Errorf("set address %s: %w", g.Addr.Addr(), err)
	}
	mask := net.CIDRMask(g.Addr.Bits(), 32)
	if err := ifr.SetInet4Addr(mask); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFNETMASK, ifr); err != nil {
		return fmt.Errorf("set netmask /%d: %w", g.Addr.Bits(), err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP | unix.IFF_RUNNING)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up: %w", err)
	}
	return nil
}
