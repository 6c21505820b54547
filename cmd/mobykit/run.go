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
		arch             string
		uefi             bool
		grace            time.Duration
	)
	q := &cobra.Command{
		Use:   "qemu PATH",
		Short: "Boot PATH-kernel/-initrd.img/-cmdline, an .iso or a disk image in QEMU, console on stdio",
		Long: `Boot an image in QEMU with its serial console on this terminal (type ^A x to quit, or
power the guest off). PATH is a prefix naming PATH-kernel, PATH-initrd.img and PATH-cmdline as
mobykit build writes them, or a file ending in .iso, or a disk image (.qcow2, .raw, .img, .vhd, .vmdk).

The state folder (default PATH-state) holds the QMP socket, the process record and the disks
created with --disk size=... ; it is kept so disks persist across runs.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := qemu.RunOptions{
				Path: args[0], Cmdline: cmdline, CPUs: cpus, MemoryMB: mem, Accel: accel,
				StateDir: state, Networking: network, Grace: grace, Arch: arch, UEFI: uefi,
			}
			// arm64 defaults to UEFI: without firmware the virt machine has no ACPI, so no
			// power button for a clean shutdown (the cloud kernel lacks gpio-keys)
			if a, _ := qemu.QEMUArch(arch); a == "aarch64" && !cmd.Flags().Changed("uefi") {
				o.UEFI = true
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
	f.StringVar(&arch, "arch", "amd64", "guest architecture: amd64 (qemu-system-x86_64) or arm64 (qemu-system-aarch64 -M virt; TCG unless the host is arm64 with KVM)")
	f.BoolVar(&uefi, "uefi", false, "boot through UEFI firmware (OVMF, or AAVMF for arm64), its variable store kept in the state folder (default: on for arm64, where it gives ACPI power-off; --uefi=false boots the kernel directly)")
	f.StringVar(&accel, "accel", "auto", "accelerator: kvm, tcg, or auto (KVM where /dev/kvm works, else TCG)")
	f.StringVar(&state, "state", "", "state folder (default PATH-state)")
	f.StringVar(&cmdline, "cmdline", "", "kernel command line (default: the contents of PATH-cmdline)")
	f.StringVar(&network, "networking", "user", "networking: user (user-mode, outbound and --publish) or none")
	f.DurationVar(&grace, "shutdown-timeout", 10*time.Second, "on ^C/SIGTERM, how long to wait for an ACPI shutdown before killing QEMU")
	run.AddCommand(q)
	addCommand(run)
}
