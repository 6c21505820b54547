// Package fwcfg carries userdata to a QEMU guest through the fw_cfg device: on the host it
// gives the qemu arguments that attach a file as a named fw_cfg entry, and in the guest it reads
// such an entry back, from sysfs (/sys/firmware/qemu_fw_cfg, the qemu_fw_cfg kernel module) or,
// on x86 when that module is not loaded, straight from the fw_cfg I/O ports.
package fwcfg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/mobykit/mobykit/metadata/config"
)

// UserdataName is the fw_cfg entry mobykit puts userdata in. QEMU reserves names outside
// "opt/" for itself, and asks for a reverse-DNS prefix under it.
const UserdataName = "opt/com.mobykit/userdata"

// SysfsRoot is where the qemu_fw_cfg kernel module exposes the entries.
const SysfsRoot = "/sys/firmware/qemu_fw_cfg"

// maxName is the size of a name in the fw_cfg file directory, NUL included.
const maxName = 56

// ErrNotFound is returned (wrapped) when there is no fw_cfg device or no entry of that name.
var ErrNotFound = errors.New("fw_cfg entry not found")

// CheckName reports whether name is usable as a user fw_cfg entry name.
func CheckName(name string) error {
	if !strings.HasPrefix(name, "opt/") || len(name) >= maxName || strings.ContainsAny(name, ",\x00") {
		return fmt.Errorf("fw_cfg name %q: must start with \"opt/\", be shorter than %d bytes and hold no ',' or NUL", name, maxName)
	}
	return nil
}

// QEMUArgs returns the qemu arguments that expose file to the guest as fw_cfg entry name,
// for example: -fw_cfg name=opt/com.mobykit/userdata,file=/path/userdata.
func QEMUArgs(name, file string) ([]string, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	// qemu option values escape a comma by doubling it.
	return []string{"-fw_cfg", "name=" + name + ",file=" + strings.ReplaceAll(file, ",", ",,")}, nil
}

// WritePayload writes userdata to dir/userdata.fwcfg (atomically) and returns that path and the
// qemu arguments that hand it to the guest as UserdataName.
func WritePayload(dir string, userdata []byte) (string, []string, error) {
	p := filepath.Join(dir, "userdata.fwcfg")
	tmp, err := os.CreateTemp(dir, ".userdata.fwcfg.tmp*")
	if err != nil {
		return "", nil, fmt.Errorf("fwcfg: write payload in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(userdata); err != nil {
		tmp.Close()
		return "", nil, fmt.Errorf("fwcfg: write %s: %w", p, err)
	}
	if err := tmp.Close(); err != nil {
		return "", nil, fmt.Errorf("fwcfg: write %s: %w", p, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return "", nil, fmt.Errorf("fwcfg: write %s: %w", p, err)
	}
	args, err := QEMUArgs(UserdataName, p)
	return p, args, err
}

// ReadSysfs reads entry name through the qemu_fw_cfg module's sysfs tree under root
// (normally SysfsRoot): root/by_name/<name>/raw. An entry over limit bytes is refused with a
// *config.TooLargeError, before it is read when sysfs reports its size.
func ReadSysfs(root, name string, limit int64) ([]byte, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(root, "by_name")); err != nil {
		return nil, fmt.Errorf("fwcfg: %s: no sysfs interface (is the qemu_fw_cfg module loaded?): %w", root, ErrNotFound)
	}
	p := filepath.Join(root, "by_name", filepath.FromSlash(name), "raw")
	b, err := config.ReadFileMax(p, limit)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("fwcfg: %s: %w", p, ErrNotFound)
	}
	var tl *config.TooLargeError
	if errors.As(err, &tl) {
		tl.Source = "fw_cfg entry " + name + " (" + p + ")"
		return nil, fmt.Errorf("fwcfg: %w", tl)
	}
	if err != nil {
		return nil, fmt.Errorf("fwcfg: read %s: %w", p, err)
	}
	return b, nil
}

// Device is the fw_cfg "traditional" interface: select an item, then read its bytes in
// sequence. Port-I/O and test implementations satisfy it.
type Device interface {
	Select(key uint16)
	io.Reader
}

const (
	keySignature = 0x0000
	keyFileDir   = 0x0019
)

// ReadDevice finds name in the device's file directory and reads its contents. The size the
// directory gives is the device's word: an entry over limit bytes is refused with a
// *config.TooLargeError before anything is allocated for it.
func ReadDevice(d Device, name string, limit int64) ([]byte, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	d.Select(keySignature)
	sig := make([]byte, 4)
	if _, err := io.ReadFull(d, sig); err != nil || string(sig) != "QEMU" {
		return nil, fmt.Errorf("fwcfg: no QEMU fw_cfg signature (read %q): %w", sig, ErrNotFound)
	}
	d.Select(keyFileDir)
	var count uint32
	if err := binary.Read(d, binary.BigEndian, &count); err != nil {
		return nil, fmt.Errorf("fwcfg: read file directory: %w", err)
	}
	if count > 4096 {
		return nil, fmt.Errorf("fwcfg: file directory claims %d entries", count)
	}
	for i := uint32(0); i < count; i++ {
		var e struct {
			Size     uint32
			Select   uint16
			Reserved uint16
			Name     [maxName]byte
		}
		if err := binary.Read(d, binary.BigEndian, &e); err != nil {
			return nil, fmt.Errorf("fwcfg: read file directory entry %d: %w", i, err)
		}
		if n, _, _ := bytes.Cut(e.Name[:], []byte{0}); string(n) == name {
			if int64(e.Size) > limit {
				return nil, fmt.Errorf("fwcfg: %w", &config.TooLargeError{Source: "fw_cfg entry " + name + " (I/O ports)", Size: int64(e.Size), Limit: limit})
			}
			d.Select(e.Select)
			b := make([]byte, e.Size)
			if _, err := io.ReadFull(d, b); err != nil {
				return nil, fmt.Errorf("fwcfg: read %s: %w", name, err)
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("fwcfg: %s: %w", name, ErrNotFound)
}
