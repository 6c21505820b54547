//go:build linux && amd64

package fwcfg

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

const (
	portSelector = 0x510
	portData     = 0x511
)

func outw(port, val uint16)
func inb(port uint16) uint8

type portDevice struct{}

func (portDevice) Select(key uint16) { outw(portSelector, key) }

func (portDevice) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = inb(portData)
	}
	return len(p), nil
}

// ReadPorts reads entry name through the x86 fw_cfg I/O ports (0x510 selector, 0x511 data),
// for guests whose kernel lacks the qemu_fw_cfg module. It needs CAP_SYS_RAWIO, and it only
// touches the ports when DMI says the machine is QEMU (dmiDir is normally
// /sys/class/dmi/id), so it never pokes unknown hardware. An entry over limit bytes is refused
// (see ReadDevice).
func ReadPorts(dmiDir, name string, limit int64) ([]byte, error) {
	vendor, _ := os.ReadFile(dmiDir + "/sys_vendor")
	if !strings.Contains(string(vendor), "QEMU") {
		return nil, fmt.Errorf("fwcfg: DMI vendor %q is not QEMU, not probing I/O ports: %w", strings.TrimSpace(string(vendor)), ErrNotFound)
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_IOPERM, portSelector, 2, 1); errno != 0 {
		return nil, fmt.Errorf("fwcfg: ioperm(0x510, 2) (needs CAP_SYS_RAWIO): %w", errno)
	}
	defer syscall.Syscall(syscall.SYS_IOPERM, portSelector, 2, 0)
	return ReadDevice(portDevice{}, name, limit)
}
