// Command format is mobykit's format image: it partitions and formats the first blank disk,
// or the disk named on the command line, with LinuxKit's format flags (see docs/images.md).
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/mobykit/mobykit/disks"
)

func main() {
	var opt disks.FormatOptions
	flag.BoolVar(&opt.Force, "force", false, "Force format of specified single device (default false)")
	flag.StringVar(&opt.Label, "label", "", "Disk label to apply")
	flag.StringVar(&opt.Type, "type", "ext4", "Type of filesystem to create (ext4 or xfs)")
	flag.StringVar(&opt.Partition, "partition", "dos", "Type of partition table to create (dos or gpt)")
	verbose := flag.Bool("verbose", false, "Enable verbose output (default false)")
	flag.Parse()
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	f := &disks.Formatter{Sys: disks.Host, Tools: disks.HostTools{}, Log: log}
	if _, err := f.Run(opt, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "format:", err)
		os.Exit(1)
	}
}
