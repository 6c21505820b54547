// Command swap is mobykit's swap image (installed as /swap.sh, the path LinuxKit specs run):
// it makes a swap file under /var of the given size, unless conditions say not to, and
// enables it (see docs/images.md).
package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/mobykit/mobykit/disks"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "swap:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	o, err := disks.ParseSwapArgs(args)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	points, err := disks.Host.MountPoints()
	if err != nil {
		return err
	}
	ok, err := o.CheckConditions(points, func(p string) (int64, error) {
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err != nil {
			return 0, err
		}
		return int64(st.Blocks) * st.Bsize, nil
	})
	if err != nil {
		return err
	}
	if !ok {
		log.Info("a condition is not met; no swap file made")
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(o.Path), 0o755); err != nil {
		return err
	}
	made, err := disks.MakeSwapFile(o.Path, o.Size, os.Getpagesize(), nil)
	if err != nil {
		return err
	}
	if made {
		log.Info("made swap file", "path", o.Path, "bytes", o.Size)
	}
	if err := disks.Swapon(o.Path); err != nil {
		return err
	}
	log.Info("swap enabled", "path", o.Path)
	return nil
}
