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
	// UEFI boots the ISO or disk with UEFI firmware (OVMF) instead of SeaBIOS; an image named
	// as the EFI formats are (vm.Boot.UEFI) boots with UEFI without it.
	UEFI bool
	// FirmwareDir holds OVMF_CODE_4M.fd and OVMF_VARS_4M.fd; default /usr/share/OVMF, where
	// Debian's ovmf package puts them.
	FirmwareDir string
}

// OVMF files, as Debian's ovmf package names them.
const (
	DefaultFirmwareDir = "/usr/share/OVMF"
	OVMFCode           = "OVMF_CODE_4M.fd"
	OVMFVars           = "OVMF_VARS_4M.fd"
	// VarsFile is the VM's copy of the variable store in its state folder.
	VarsFile = "OVMF_VARS.fd"
)

// uefiFirmware returns the firmware code image and the VM's variable store, copied from the
// firmware's template into the state folder the first time (later boots keep what the guest
// stored there, as a machine's NVRAM does).
func uefiFirmware(fwDir string, dir vm.Dir) (code, vars string, err error) {
	if fwDir == "" {
		fwDir = DefaultFirmwareDir
	}
	code, tmpl := filepath.Join(fwDir, OVMFCode), filepath.Join(fwDir, OVMFVars)
	for _, p := range []string{code, tmpl} {
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("UEFI firmware %s: %w (install Debian's ovmf package)", p, err)
		}
	}
	vars = dir.Path(VarsFile)
	if _, err := os.Stat(vars); err == nil {
		return code, vars, nil
	}
	b, err := os.ReadFile(tmpl)
	if err != nil {
		return "", "", fmt.Errorf("UEFI firmware: %w", err)
	}
	tmp := vars + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return "", "", fmt.Errorf("UEFI variable store: %w", err)
	}
	if err := os.Rename(tmp, vars); err != nil {
		os.Remove(tmp)
		return "", "", fmt.Errorf("UEFI variable store: %w", err)
	}
	return code, vars, nil
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
	cfg := Config{
		Binary:   o.Binary,
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
	if o.UEFI || boot.UEFI {
		if boot.Kernel != "" {
			return fmt.Errorf("run %s: --uefi boots an ISO or a disk image, not a kernel", o.Path)
		}
		if cfg.UEFI, cfg.UEFIVars, err = uefiFirmware(o.FirmwareDir, dir); err != nil {
			return fmt.Errorf("run %s: %w", o.Path, err)
		}
	}
	if boot.Disk != "" {
		cfg.Disks = append(cfg.Disks, Disk{Path: boot.Disk, Format: boot.DiskFormat, Boot: true})
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
			if err := CreateDisk(p, f, d.Size); err != nil {
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
