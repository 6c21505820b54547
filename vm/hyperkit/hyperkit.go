// Package hyperkit builds HyperKit command lines (macOS's lightweight hypervisor) the way
// moby/hyperkit's Go package and `linuxkit run hyperkit` do: kexec boot of a kernel and
// initrd, virtio-blk disks, a metadata CD on AHCI, vpnkit networking (with a stable UUID and a
// preferred IPv4 address), the serial console to a log file, and HyperKit's own PID file. It
// only describes the process; vm starts and supervises it.
//
// HyperKit runs only on macOS, so on other hosts this is tested against golden command lines
// and a stand-in executable.
package hyperkit

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"strings"
)

// Config describes one HyperKit VM.
type Config struct {
	// Binary is the executable; default "hyperkit".
	Binary string
	// CPUs defaults to 1, MemoryMB to 1024.
	CPUs     int
	MemoryMB int
	// Kernel, Initrd and Cmdline: HyperKit boots Linux by kexec; Kernel is required.
	Kernel, Initrd, Cmdline string
	// Disks are raw images attached as virtio-blk devices.
	Disks []string
	// DataISO is a metadata CD attached on AHCI.
	DataISO string
	// VPNKitSock is vpnkit's ethernet socket; "" means no network.
	VPNKitSock string
	// VPNKitUUID makes vpnkit hand the VM the same MAC and address every time.
	VPNKitUUID string
	// PreferredIPv4 asks vpnkit for this address.
	PreferredIPv4 string
	// UUID is the VM's UUID (-U).
	UUID string
	// Console is "stdio" or a folder where HyperKit puts its tty symlink and console log
	// (autopty=DIR/tty, log=DIR/console-ring).
	Console string
	// PidFile is where HyperKit writes its PID (-F).
	PidFile string
}

// Args returns the command line, Binary first.
func (c Config) Args() ([]string, error) {
	if c.Kernel == "" {
		return nil, errors.New("hyperkit: a kernel is required (HyperKit boots Linux by kexec)")
	}
	if strings.ContainsAny(c.Kernel+c.Initrd, ",") {
		return nil, errors.New("hyperkit: kernel and initrd paths must not contain ','")
	}
	bin := c.Binary
	if bin == "" {
		bin = "hyperkit"
	}
	cpus, mem := c.CPUs, c.MemoryMB
	if cpus <= 0 {
		cpus = 1
	}
	if mem <= 0 {
		mem = 1024
	}
	a := []string{bin, "-A", "-u"}
	if c.PidFile != "" {
		a = append(a, "-F", c.PidFile)
	}
	a = append(a, "-c", fmt.Sprint(cpus), "-m", fmt.Sprintf("%dM", mem), "-s", "0:0,hostbridge", "-s", "31,lpc")
	slot := 1
	if c.VPNKitSock != "" {
		s := fmt.Sprintf("%d:0,virtio-vpnkit,path=%s", slot, c.VPNKitSock)
		if c.VPNKitUUID != "" {
			s += ",uuid=" + c.VPNKitUUID
		}
		if c.PreferredIPv4 != "" {
			if ip := net.ParseIP(c.PreferredIPv4); ip == nil || ip.To4() == nil {
				return nil, fmt.Errorf("hyperkit: preferred IPv4 %q is not an IPv4 address", c.PreferredIPv4)
			}
			s += ",preferred_ipv4=" + c.PreferredIPv4
		}
		a = append(a, "-s", s)
		slot++
	} else if c.PreferredIPv4 != "" {
		return nil, errors.New("hyperkit: a preferred IPv4 address needs vpnkit networking")
	}
	for _, d := range c.Disks {
		if strings.Contains(d, ",") {
			return nil, fmt.Errorf("hyperkit: disk path %q must not contain ','", d)
		}
		a = append(a, "-s", fmt.Sprintf("%d:0,virtio-blk,%s", slot, d))
		slot++
	}
	if c.DataISO != "" {
		a = append(a, "-s", fmt.Sprintf("%d,ahci-cd,%s", slot, c.DataISO))
		slot++
	}
	a = append(a, "-s", fmt.Sprintf("%d,virtio-rnd", slot))
	if c.UUID != "" {
		a = append(a, "-U", c.UUID)
	}
	switch c.Console {
	case "", "stdio":
		a = append(a, "-l", "com1,stdio")
	default:
		a = append(a, "-l", fmt.Sprintf("com1,autopty=%s/tty,log=%s/console-ring", c.Console, c.Console))
	}
	a = append(a, "-f", fmt.Sprintf("kexec,%s,%s,earlyprintk=serial %s", c.Kernel, c.Initrd, c.Cmdline))
	return a, nil
}

// IPv4UUID is the UUID InfraKit's and LinuxKit's HyperKit plugins give vpnkit for a VM
// whose logical ID is an IPv4 address: zeros followed by the address's 4 bytes, which vpnkit
// maps to that fixed address. It returns "" when ip is not IPv4.
func IPv4UUID(ip string) string {
	a := net.ParseIP(ip).To4()
	if a == nil {
		return ""
	}
	return fmt.Sprintf("00000000-0000-0000-0000-0000%02x%02x%02x%02x", a[0], a[1], a[2], a[3])
}

// UUID derives a stable RFC 4122 (version 5 layout) UUID from a key, for -U and vpnkit.
func UUID(key string) string {
	h := sha256.Sum256([]byte("mobykit-hyperkit:" + key))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}
