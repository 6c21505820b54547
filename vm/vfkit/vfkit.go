// Package vfkit builds vfkit command lines (vfkit is the command-line front end of macOS's
// Virtualization.framework that Podman and minikube use: github.com/crc-org/vfkit) and talks
// to vfkit's RESTful API (GET /vm/state, POST /vm/state) over a unix socket. It only describes
// and queries the process; vm starts and supervises it.
//
// vfkit runs only on macOS, so on other hosts this is tested against golden command lines and
// a stand-in executable.
package vfkit

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Config describes one vfkit VM.
type Config struct {
	// Binary is the executable; default "vfkit".
	Binary string
	// CPUs defaults to 1, MemoryMB to 1024.
	CPUs     int
	MemoryMB int
	// Kernel, Initrd and Cmdline boot Linux directly (--bootloader linux). The kernel must be
	// uncompressed on arm64 (Virtualization.framework does not decompress it).
	Kernel, Initrd, Cmdline string
	// EFIVarStore, instead of Kernel, boots by EFI (--bootloader efi): the firmware's variable
	// store, created when missing. The firmware boots BootDisk or BootISO.
	EFIVarStore string
	// BootDisk is a raw disk image attached first (virtio-blk).
	BootDisk string
	// BootISO is an ISO attached read-only as USB mass storage (EFI boot from a CD image).
	BootISO string
	// Disks are raw images attached as virtio-blk devices, after BootDisk.
	Disks []string
	// DataISO is the metadata CD (label cidata), attached as a virtio-blk device.
	DataISO string
	// NICs are virtio-net devices, in order (eth0, eth1...).
	NICs []NIC
	// Console is the file the guest's serial console (hvc0) is logged to; "stdio" puts it
	// on vfkit's stdin/stdout; "" adds no serial device.
	Console string
	// RESTSocket is the unix socket vfkit serves its RESTful API on; "" disables it.
	RESTSocket string
}

// NIC is one virtio-net device: NAT through the host (the default), or a unixgram socket of
// a user-supplied switch (vmnet-helper, gvproxy...) that several VMs can share.
type NIC struct {
	// Socket is the switch's unixgram socket; "" means NAT.
	Socket string
	// MAC is the fixed address, "xx:xx:xx:xx:xx:xx"; "" lets vfkit pick one at random.
	MAC string
}

// checkValue refuses what vfkit's "key=value,key=value" option syntax cannot carry.
func checkValue(what, v string) error {
	if strings.ContainsAny(v, ",\"\n\x00") {
		return fmt.Errorf("vfkit: %s %q must not contain ',', '\"', a newline or NUL", what, v)
	}
	return nil
}

func checkPath(what, p string) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("vfkit: %s %q must be an absolute path", what, p)
	}
	return checkValue(what, p)
}

// Args returns the command line, Binary first.
func (c Config) Args() ([]string, error) {
	bin := c.Binary
	if bin == "" {
		bin = "vfkit"
	}
	cpus, mem := c.CPUs, c.MemoryMB
	if cpus <= 0 {
		cpus = 1
	}
	if mem <= 0 {
		mem = 1024
	}
	a := []string{bin, "--cpus", strconv.Itoa(cpus), "--memory", strconv.Itoa(mem)}
	switch {
	case c.Kernel != "" && c.EFIVarStore != "":
		return nil, errors.New("vfkit: give a kernel or an EFI variable store, not both")
	case c.Kernel != "":
		if c.BootDisk != "" || c.BootISO != "" {
			return nil, errors.New("vfkit: a boot disk or ISO needs EFI boot, not a kernel")
		}
		if err := checkPath("kernel", c.Kernel); err != nil {
			return nil, err
		}
		bl := "linux,kernel=" + c.Kernel
		if c.Initrd != "" {
			if err := checkPath("initrd", c.Initrd); err != nil {
				return nil, err
			}
			bl += ",initrd=" + c.Initrd
		}
		// vfkit reads a quoted value as one, commas included; a '"' cannot be carried.
		if strings.ContainsAny(c.Cmdline, "\"\n\x00") {
			return nil, fmt.Errorf("vfkit: kernel command line %q must not contain '\"', a newline or NUL", c.Cmdline)
		}
		bl += `,cmdline="` + c.Cmdline + `"`
		a = append(a, "--bootloader", bl)
	case c.EFIVarStore != "":
		if c.BootDisk == "" && c.BootISO == "" {
			return nil, errors.New("vfkit: EFI boot needs a boot disk or ISO")
		}
		if err := checkPath("EFI variable store", c.EFIVarStore); err != nil {
			return nil, err
		}
		a = append(a, "--bootloader", "efi,variable-store="+c.EFIVarStore+",create")
	default:
		return nil, errors.New("vfkit: a kernel or EFI boot is required")
	}
	a = append(a, "--device", "virtio-rng")
	disks := c.Disks
	if c.BootDisk != "" {
		disks = append([]string{c.BootDisk}, disks...)
	}
	if c.DataISO != "" {
		disks = append(disks, c.DataISO)
	}
	for _, d := range disks {
		if err := checkPath("disk", d); err != nil {
			return nil, err
		}
		a = append(a, "--device", "virtio-blk,path="+d)
	}
	if c.BootISO != "" {
		if err := checkPath("boot ISO", c.BootISO); err != nil {
			return nil, err
		}
		a = append(a, "--device", "usb-mass-storage,path="+c.BootISO+",readonly")
	}
	for i, n := range c.NICs {
		s := "virtio-net,nat"
		if n.Socket != "" {
			if err := checkPath("network socket", n.Socket); err != nil {
				return nil, err
			}
			s = "virtio-net,unixSocketPath=" + n.Socket
		}
		if n.MAC != "" {
			if err := checkMAC(n.MAC); err != nil {
				return nil, fmt.Errorf("vfkit: NIC %d: %w", i, err)
			}
			s += ",mac=" + n.MAC
		}
		a = append(a, "--device", s)
	}
	switch c.Console {
	case "":
	case "stdio":
		a = append(a, "--device", "virtio-serial,stdio")
	default:
		if err := checkPath("console log", c.Console); err != nil {
			return nil, err
		}
		a = append(a, "--device", "virtio-serial,logFilePath="+c.Console)
	}
	if c.RESTSocket != "" {
		if err := checkPath("REST socket", c.RESTSocket); err != nil {
			return nil, err
		}
		if len(c.RESTSocket) > MaxSocketPath {
			return nil, fmt.Errorf("vfkit: REST socket path %s is %d bytes, more than a unix socket address holds on macOS (%d): use a shorter state folder", c.RESTSocket, len(c.RESTSocket), MaxSocketPath)
		}
		a = append(a, "--restful-uri", "unix://"+c.RESTSocket)
	} else {
		a = append(a, "--restful-uri", "none://")
	}
	return a, nil
}

// MaxSocketPath is the longest unix socket path macOS accepts (sun_path is 104 bytes, NUL
// included).
const MaxSocketPath = 103

func checkMAC(m string) error {
	parts := strings.Split(m, ":")
	if len(parts) != 6 {
		return fmt.Errorf("MAC %q: want six hex bytes separated by ':'", m)
	}
	for _, p := range parts {
		if len(p) != 2 {
			return fmt.Errorf("MAC %q: want six hex bytes separated by ':'", m)
		}
		if _, err := strconv.ParseUint(p, 16, 8); err != nil {
			return fmt.Errorf("MAC %q: want six hex bytes separated by ':'", m)
		}
	}
	return nil
}

// MAC derives a stable, locally administered unicast MAC address from a key (an instance's
// logical ID, else its ID, plus the network it is for), so a VM that is replaced under the
// same logical ID gets the same address, and the host's DHCP server the same lease.
func MAC(key string) string {
	h := sha256.Sum256([]byte("mobykit-vfkit:" + key))
	h[0] = h[0]&0xfc | 0x02
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", h[0], h[1], h[2], h[3], h[4], h[5])
}

// ParseSize parses a disk size: a number of bytes, or one followed by K, M, G or T (powers of
// 1024, an optional trailing "iB" or "B" allowed). It refuses zero and anything past 64 TiB.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	shift := 0
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			shift = 10
		case 'M':
			shift = 20
		case 'G':
			shift = 30
		case 'T':
			shift = 40
		}
		if shift != 0 {
			t = t[:n-1]
		}
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil || n == 0 || n > (64<<40)>>shift {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, K, M, G or T, at most 64T", s)
	}
	return int64(n << shift), nil
}
