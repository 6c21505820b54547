package qemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/mobykit/mobykit/vm"
	"github.com/mobykit/mobykit/vm/qmp"
)

// MetadataFunc puts userdata where a guest finds it: it may write files into the VM's state
// folder and returns a metadata CD image to attach and/or fw_cfg entries. The metadata
// package provides the real ones; see DataISOFunc.
type MetadataFunc func(dir vm.Dir, userdata []byte) (dataISO string, fwcfg []FwCfg, err error)

// RunOptions configure Run: `mobykit run qemu` in library form.
type RunOptions struct {
	// Path is a boot prefix, ISO or disk image (vm.FindBoot).
	Path string
	// Cmdline, when set, replaces PREFIX-cmdline.
	Cmdline  string
	CPUs     int
	MemoryMB int
	Accel    string
	// Disks to attach; those without a path are created in the state folder (disk0.qcow2, ...).
	Disks []vm.DiskSpec
	// Data is userdata handed to the guest through Metadata; nil for none.
	Data     []byte
	Metadata MetadataFunc
	// Publish are host ports forwarded to the guest over a user-mode NIC.
	Publish []Forward
	// Networking is "user" (default) or "none".
	Networking string
	// StateDir holds the QMP socket, the process record and created disks; default
	// Path + "-state". It is kept after the VM exits (disks live there).
	StateDir string
	// Stdin/Stdout/Stderr carry the serial console; nil means os.Stdin etc.
	Stdin, Stdout, Stderr *os.File
	// Grace is how long a cancelled Run waits for an ACPI shutdown before killing; default 10s.
	Grace time.Duration
	// Binary overrides the QEMU executable.
	Binary string
	// Arch is the guest architecture, a GOARCH or QEMU name: amd64/x86_64 (default) or
	// arm64/aarch64 (qemu-system-aarch64 -M virt, TCG on other hosts; console ttyAMA0).
	Arch string
	// UEFI boots through UEFI firmware (a kernel is handed to it by QEMU): OVMF on x86_64,
	// AAVMF on aarch64, with a copy of the firmware's variable store kept in the state
	// folder. Without it, x86_64 uses QEMU's BIOS and aarch64 boots the kernel directly.
	UEFI bool
	// Firmware overrides the UEFI firmware code image (its variable store, FirmwareVars).
	Firmware, FirmwareVars string
}

// QEMUArch returns QEMU's name of a guest architecture given by its GOARCH or QEMU name.
func QEMUArch(arch string) (string, error) {
	switch arch {
	case "", "amd64", "x86_64":
		return "x86_64", nil
	case "arm64", "aarch64":
		return "aarch64", nil
	}
	return "", fmt.Errorf("arch %q: want amd64 (x86_64) or arm64 (aarch64)", arch)
}

// DefaultFirmware returns the UEFI code and variable store images Debian installs for a guest
// architecture (QEMU name): ovmf's OVMF_CODE/OVMF_VARS, qemu-efi-aarch64's AAVMF_CODE/AAVMF_VARS.
func DefaultFirmware(arch string) (code, vars string) {
	if arch == "aarch64" {
		return "/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd"
	}
	return "/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"
}

// uefiVars returns the VM's own copy of the firmware's variable store, made from vars in the
// state folder on first use (temp + rename) and kept, as a machine's NVRAM is.
func uefiVars(dir vm.Dir, vars string) (string, error) {
	dst := dir.Path("uefi-vars.fd")
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	src, err := os.ReadFile(vars)
	if err != nil {
		return "", fmt.Errorf("UEFI variable store: %w (install ovmf or qemu-efi-aarch64)", err)
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, src, 0o644); err != nil {
		return "", fmt.Errorf("UEFI variable store: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("UEFI variable store: %w", err)
	}
	return dst, nil
}

// armConsole maps an x86 serial console name on a kernel command line (console=ttyS0, as
// LinuxKit specs write it) to the virt machine's PL011 UART, ttyAMA0.
func armConsole(cmdline string) string {
	f := strings.Fields(cmdline)
	for i, w := range f {
		if rest, ok := strings.CutPrefix(w, "console=ttyS0"); ok {
			f[i] = "console=ttyAMA0" + rest
		}
	}
	return strings.Join(f, " ")
}

// Run boots a VM in the foreground with its serial console on Stdin/Stdout and returns when
// QEMU exits. Cancelling ctx asks the guest to power off (ACPI through QMP) and kills QEMU after
// Grace. A requested shutdown is a success: Run returns nil when the guest powered off within
// Grace (QEMU exited with status 0), and an error when QEMU had to be killed or failed.
func Run(ctx context.Context, o RunOptions) error {
	boot, err := vm.FindBoot(o.Path)
	if err != nil {
		return err
	}
	state := o.StateDir
	if state == "" {
		state = strings.TrimSuffix(o.Path, filepath.Ext(o.Path)) + "-state"
	}
	if err := os.MkdirAll(state, 0o755); err != nil {
		return fmt.Errorf("run %s: state folder: %w", o.Path, err)
	}
	state, err = filepath.Abs(state)
	if err != nil {
		return err
	}
	dir := vm.Dir(state)
	arch, err := QEMUArch(o.Arch)
	if err != nil {
		return fmt.Errorf("run %s: %w", o.Path, err)
	}
	cfg := Config{
		Binary:   o.Binary,
		Arch:     arch,
		Name:     "mobykit-run:" + state,
		Accel:    o.Accel,
		CPUs:     o.CPUs,
		MemoryMB: o.MemoryMB,
		Kernel:   boot.Kernel, Initrd: boot.Initrd, Cmdline: boot.Cmdline,
		ISO:      boot.ISO,
		QMP:      dir.Path(vm.QMPFile),
		NoReboot: true,
	}
	if o.Cmdline != "" {
		cfg.Cmdline = o.Cmdline
	}
	if arch == "aarch64" {
		if c := armConsole(cfg.Cmdline); c != cfg.Cmdline {
			slog.Info("console=ttyS0 is the virt machine's ttyAMA0", "cmdline", c)
			cfg.Cmdline = c
		}
	}
	// An image named as the EFI formats name theirs boots only with UEFI (vm.Boot.UEFI).
	if o.UEFI || o.Firmware != "" || boot.UEFI {
		code, vars := DefaultFirmware(arch)
		if o.Firmware != "" {
			code, vars = o.Firmware, o.FirmwareVars
		}
		if _, err := os.Stat(code); err != nil {
			return fmt.Errorf("run %s: UEFI firmware: %w (install ovmf or qemu-efi-aarch64)", o.Path, err)
		}
		cfg.UEFI = code
		if vars != "" {
			if cfg.UEFIVars, err = uefiVars(dir, vars); err != nil {
				return fmt.Errorf("run %s: %w", o.Path, err)
			}
		}
	}
	if boot.Disk != "" {
		cfg.Disks = append(cfg.Disks, Disk{Path: boot.Disk, Format: boot.DiskFormat, Boot: true})
	}
	if boot.RootDisk != "" {
		// the first virtio disk: /dev/vda
		cfg.Disks = append(cfg.Disks, Disk{Path: boot.RootDisk, Format: "raw", ReadOnly: true})
		cfg.Cmdline = strings.TrimSpace(cfg.Cmdline + " " + boot.RootArgs("/dev/vda"))
	}
	for i, d := range o.Disks {
		p := d.Path
		if p == "" {
			p = dir.Path(fmt.Sprintf("disk%d.%s", i, orDefault(d.Format, "qcow2")))
		}
		if d.Size != "" {
			f := d.Format
			if f == "" && !strings.HasSuffix(p, ".qcow2") {
				f = "raw"
			}
			create := CreateDisk
			if d.Path == "" { // in the state folder
				create = CreateStateDisk
			}
			if err := create(p, f, d.Size); err != nil {
				return fmt.Errorf("run %s: %w", o.Path, err)
			}
		} else if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("run %s: disk: %w", o.Path, err)
		}
		cfg.Disks = append(cfg.Disks, Disk{Path: p, Format: d.Format})
	}
	if o.Data != nil {
		if o.Metadata == nil {
			return fmt.Errorf("run %s: userdata given but no metadata writer", o.Path)
		}
		iso, fw, err := o.Metadata(dir, o.Data)
		if err != nil {
			return fmt.Errorf("run %s: metadata: %w", o.Path, err)
		}
		cfg.DataISO, cfg.FwCfg = iso, fw
	}
	switch o.Networking {
	case "", "user":
		cfg.NICs = []NIC{{Kind: NICUser, MAC: MAC(state), Forwards: o.Publish}}
	case "none":
		if len(o.Publish) > 0 {
			return fmt.Errorf("run %s: --publish needs user networking", o.Path)
		}
	default:
		return fmt.Errorf("run %s: networking %q: want user or none", o.Path, o.Networking)
	}
	stdin, stdout, stderr := orFile(o.Stdin, os.Stdin), orFile(o.Stdout, os.Stdout), orFile(o.Stderr, os.Stderr)
	cfg.Console = "stdio-plain"
	if isTerminal(stdin) {
		cfg.Console = "stdio"
	}
	argv, err := cfg.Args()
	if err != nil {
		return fmt.Errorf("run %s: %w", o.Path, err)
	}
	os.Remove(cfg.QMP) // a stale socket from an earlier run
	slog.Debug("starting qemu", "argv", argv)
	p, cmd, err := vm.Start(vm.StartOptions{Argv: argv, Marker: state, Stdin: stdin, Stdout: stdout, Stderr: stderr, Foreground: true})
	if err != nil {
		return fmt.Errorf("run %s: %w", o.Path, err)
	}
	if err := dir.WriteJSON(vm.ProcessFile, p); err != nil {
		slog.Warn("cannot record the qemu process", "err", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer os.Remove(dir.Path(vm.ProcessFile))
	select {
	case err := <-done:
		return exitErr(o.Path, err)
	case <-ctx.Done():
	}
	grace := o.Grace
	if grace == 0 {
		grace = 10 * time.Second
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), grace+10*time.Second)
	defer cancel()
	how, serr := p.Shutdown(stopCtx, func(ctx context.Context) error { return qmp.Powerdown(ctx, cfg.QMP) }, grace)
	return stoppedErr(o.Path, grace, how, serr, <-done)
}

// stoppedErr is Run's result once a shutdown was requested: nil when the guest powered off
// (QEMU exited with status 0 without being signalled), an error naming what happened when QEMU
// had to be terminated or killed, or failed.
func stoppedErr(path string, grace time.Duration, how vm.Stopped, stopErr, waitErr error) error {
	switch how {
	case vm.Graceful, vm.AlreadyGone:
		return exitErr(path, waitErr)
	}
	msg := fmt.Sprintf("run %s: shutdown requested, but the guest did not power off within %v; qemu %v", path, grace, how)
	if stopErr != nil {
		return fmt.Errorf("%s: %w", msg, stopErr)
	}
	return errors.New(msg)
}

func exitErr(path string, err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("run %s: qemu exited with status %d", path, ee.ExitCode())
	}
	if err != nil {
		return fmt.Errorf("run %s: %w", path, err)
	}
	return nil
}

func orFile(f, def *os.File) *os.File {
	if f != nil {
		return f
	}
	return def
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0 && term.IsTerminal(int(f.Fd()))
}
