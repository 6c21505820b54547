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
	if err := e.Run(*fsType, *stopOnError, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "extend:", err)
		os.Exit(1)
	}
}
