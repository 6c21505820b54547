package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mobykit/mobykit/vm"
	"github.com/mobykit/mobykit/vm/qemu"
)

func init() {
	run := &cobra.Command{
		Use:   "run",
		Short: "Boot an image locally (like linuxkit run)",
	}
	var (
		cpus, mem        int
		disks, publish   []string
		data, dataFile   string
		accel, state     string
		cmdline, network string
		metadataVia      string
		grace            time.Duration
		uefi             bool
		firmwareDir      string
	)
	q := &cobra.Command{
		Use:   "qemu PATH",
		Short: "Boot PATH-kernel/-initrd.img/-cmdline, an .iso or a disk image in QEMU, console on stdio",
		Long: `Boot an image in QEMU with its serial console on this terminal (type ^A x to quit, or
power the guest off). PATH is a prefix naming PATH-kernel, PATH-initrd.img and PATH-cmdline as
mobykit build writes them, or a file ending in .iso, or a disk image (.qcow2, .raw, .img, .vhd, .vmdk).

An ISO or disk boots with SeaBIOS, or with UEFI firmware (OVMF) with --uefi or when its
name is one the EFI formats get (NAME-efi.iso, NAME-efi-initrd.iso, NAME-efi.img,
NAME-efi-initrd.img, NAME-efi.qcow2); the VM's UEFI variables are kept in the state folder.

The state folder (default PATH-state) holds the QMP socket, the process record and the disks
created with --disk size=... ; it is kept so disks persist across runs.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := qemu.RunOptions{
				Path: args[0], Cmdline: cmdline, CPUs: cpus, MemoryMB: mem, Accel: accel,
				StateDir: state, Networking: network, Grace: grace,
				UEFI: uefi, FirmwareDir: firmwareDir,
			}
			for _, d := range disks {
				ds, err := vm.ParseDisk(d)
				if err != nil {
					return err
				}
				o.Disks = append(o.Disks, ds)
			}
			for _, p := range publish {
				f, err := qemu.ParseForward(p)
				if err != nil {
					return err
				}
				o.Publish = append(o.Publish, f)
			}
			switch {
			case data != "" && dataFile != "":
				return fmt.Errorf("give --data or --data-file, not both")
			case data != "":
				o.Data = []byte(data)
			case dataFile != "":
				b, err := os.ReadFile(dataFile)
				if err != nil {
					return fmt.Errorf("--data-file: %w", err)
				}
				o.Data = b
			}
			name := strings.TrimSuffix(filepath.Base(args[0]), filepath.Ext(args[0]))
			switch metadataVia {
			case "cd":
				o.Metadata = qemu.MetadataCD(name, name)
			case "fw_cfg":
				o.Metadata = qemu.MetadataFwCfg
			case "both":
				o.Metadata = qemu.MetadataBoth(name, name)
			default:
				return fmt.Errorf("--metadata %q: want cd, fw_cfg or both", metadataVia)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return qemu.Run(ctx, o)
		},
	}
	f := q.Flags()
	f.IntVar(&cpus, "cpus", 1, "number of virtual CPUs")
	f.IntVar(&mem, "mem", 1024, "memory in MiB")
	f.StringArrayVar(&disks, "disk", nil, "disk `[file=]PATH[,size=1G][,format=qcow2]` (repeatable); without a path it is created in the state folder")
	f.StringVar(&data, "data", "", "userdata for the guest's metadata agent")
	f.StringVar(&dataFile, "data-file", "", "file holding userdata for the guest's metadata agent")
	f.StringVar(&metadataVia, "metadata", "both", "how userdata reaches the guest: cd (metadata CD), fw_cfg, or both")
	f.StringArrayVar(&publish, "publish", nil, "publish a guest port `[hostaddr:]hostport:guestport[/tcp|udp]` on the host (repeatable)")
	f.StringVar(&accel, "accel", "auto", "accelerator: kvm, tcg, or auto (KVM where /dev/kvm works, else TCG)")
	f.StringVar(&state, "state", "", "state folder (default PATH-state)")
	f.StringVar(&cmdline, "cmdline", "", "kernel command line (default: the contents of PATH-cmdline)")
	f.StringVar(&network, "networking", "user", "networking: user (user-mode, outbound and --publish) or none")
	f.DurationVar(&grace, "shutdown-timeout", 10*time.Second, "on ^C/SIGTERM, how long to wait for an ACPI shutdown before killing QEMU")
	f.BoolVar(&uefi, "uefi", false, "boot the ISO or disk with UEFI firmware (OVMF) instead of SeaBIOS")
	f.StringVar(&firmwareDir, "firmware-dir", qemu.DefaultFirmwareDir, "folder holding OVMF_CODE_4M.fd and OVMF_VARS_4M.fd (Debian's ovmf package)")
	run.AddCommand(q)
	addCommand(run)
}
