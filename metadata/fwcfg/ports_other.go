//go:build !(linux && amd64)

package fwcfg

import "fmt"

// ReadPorts is only implemented on amd64; elsewhere use the qemu_fw_cfg sysfs interface.
func ReadPorts(dmiDir, name string, limit int64) ([]byte, error) {
	return nil, fmt.Errorf("fwcfg: I/O port access is only implemented on amd64: %w", ErrNotFound)
}
