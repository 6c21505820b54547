// Command mountie is mobykit's mount image: it mounts a file system found by -label, -uuid,
// -device (or a device argument), or else the first unmounted Linux partition, on a mount
// point, as LinuxKit's mountie does (see docs/images.md).
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"

	"github.com/mobykit/mobykit/disks"
)

func main() {
	device := flag.String("device", "", "Name of the device to mount")
	label := flag.String("label", "", "Label of the device to mount")
	uuid := flag.String("uuid", "", "UUID of the device to mount")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, *device, *label, *uuid, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "mountie:", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, device, label, uuid string, args []string) error {
	var mountpoint string
	switch len(args) {
	case 0:
		return fmt.Errorf("no mount point given")
	case 1:
		mountpoint = args[0]
	case 2:
		device, mountpoint = args[0], args[1]
	default:
		return fmt.Errorf("too many arguments: %q", args)
	}
	if err := os.MkdirAll(mountpoint, 0o755); err != nil {
		return fmt.Errorf("creating mount point: %w", err)
	}
	device, err := disks.Host.MountSource(device, label, uuid, log)
	if err != nil {
		return err
	}
	fstype, err := disks.MountType(device)
	if err != nil {
		return err
	}
	if err := unix.Mount(device, mountpoint, fstype, 0, ""); err != nil {
		return fmt.Errorf("mounting %s (%s) on %s: %w", device, fstype, mountpoint, err)
	}
	log.Info("mounted", "device", device, "type", fstype, "on", mountpoint)
	if err := disks.Host.DevLinks(); err != nil {
		log.Warn("making /dev/disk links", "err", err)
	}
	return nil
}
