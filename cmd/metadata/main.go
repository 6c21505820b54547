// Command metadata is the in-VM metadata agent (the `metadata` system image, run as an onboot
// container): it finds the machine's metadata and userdata, from the cloud it booted on or from
// the CD-ROM / fw_cfg / file a local VM was given, and lays them out under /run/config exactly
// as LinuxKit's metadata package does. All the work is in metadata/provider and
// metadata/config; this is flag parsing and wiring.
//
//	metadata [-v] [-root DIR] [-timeout D] [-no-hostname] [-strict] [PROVIDER...]
//
// PROVIDER is aws, gcp, hetzner, openstack, scaleway, vultr, digitalocean, equinixmetal,
// packet, cdrom, fwcfg or file=PATH; without any, LinuxKit's default order is used
// (provider.DefaultNames).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/mobykit/mobykit/metadata/config"
	"github.com/mobykit/mobykit/metadata/provider"
)

func main() {
	verbose := flag.Bool("v", false, "verbose (debug) logging")
	root := flag.String("root", config.DefaultRoot, "directory to lay the metadata out in")
	timeout := flag.Duration("timeout", 2*time.Second, "timeout of each metadata request and probe")
	noHostname := flag.Bool("no-hostname", false, "do not set the hostname")
	strict := flag.Bool("strict", false, "exit 1 when no provider is found or extraction had errors (default: log and exit 0, like LinuxKit)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags] [PROVIDER...]\n\nproviders: aws gcp hetzner openstack scaleway vultr digitalocean equinixmetal packet cdrom fwcfg file=PATH\ndefault: %v\n\nflags:\n", os.Args[0], provider.DefaultNames)
		flag.PrintDefaults()
	}
	flag.Parse()
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	os.Exit(run(*root, *timeout, !*noHostname, *strict, flag.Args()))
}

func run(root string, timeout time.Duration, setHostname, strict bool, names []string) int {
	cfg := provider.DefaultConfig()
	cfg.Timeout = timeout
	set, err := provider.Parse(names, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "metadata:", err)
		return 2
	}
	dir, err := config.Open(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "metadata:", err)
		return 1
	}
	defer dir.Close()
	opts := provider.Options{}
	if setHostname {
		opts.SetHostname = syscall.Sethostname
	}
	res, err := provider.Run(context.Background(), set, dir, opts)
	if errors.Is(err, provider.ErrNoProvider) {
		fmt.Fprintln(os.Stderr, "metadata: no metadata/userdata found:", err)
		if strict {
			return 1
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "metadata: provider %s: wrote %s (userdata %d bytes, hostname %q)\n", res.Provider, root, len(res.Userdata), res.Hostname)
	if err != nil {
		fmt.Fprintln(os.Stderr, "metadata: completed with errors:", err)
		if strict {
			return 1
		}
	}
	return 0
}
