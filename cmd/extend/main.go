// Command extend is mobykit's extend image: it grows the only partition of each disk named
// (or of every partitioned disk) and its ext4 or XFS file system to the end of the disk, as
// LinuxKit's extend does (see docs/images.md).
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/mobykit/mobykit/disks"
)

func main() {
	fsType := flag.String("type", "ext4", "Type of filesystem to extend (ext4 or xfs)")
	stopOnError := flag.Bool("stop-on-error", true, "Stops extending the remaining devices on first error")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	e := &disks.Extender{Sys: disks.Host, Tools: disks.HostTools{}, Log: log, MountDir: "/mnt/tmp"}
	if err := run(e, *fsType, *stopOnError, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "extend:", err)
		os.Exit(1)
	}
}

func run(e *disks.Extender, fsType string, stopOnError bool, args []string) error {
	if len(args) > 0 {
		for _, a := range args {
			d, err := e.Sys.Disk(a)
			if err != nil {
				return err
			}
			if err := e.Extend(d, fsType); err != nil {
				return err
			}
		}
		return nil
	}
	all, err := e.Sys.Disks()
	if err != nil {
		return err
	}
	for _, d := range all {
		if c, err := disks.ProbeDevice(d.Path); err != nil || !c.IsPartitionTable() {
			e.Log.Info("no partition table found; skipping", "device", d.Path)
			continue
		}
		if err := e.Extend(d, fsType); err != nil {
			if stopOnError {
				return err
			}
			e.Log.Warn("could not extend; skipping", "device", d.Path, "err", err)
		}
	}
	return nil
}
