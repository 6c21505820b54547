package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/mobykit/mobykit/launcher"
	flavormoby "github.com/mobykit/mobykit/plugins/flavor-moby"
	instancehyperkit "github.com/mobykit/mobykit/plugins/instance-hyperkit"
	instanceqemu "github.com/mobykit/mobykit/plugins/instance-qemu"
	instancevfkit "github.com/mobykit/mobykit/plugins/instance-vfkit"
	"github.com/mobykit/mobykit/spi/rpc"
	"github.com/mobykit/mobykit/vm"
)

// The local VM plugins and the moby flavor, startable with `mobykit plugin start KIND`.
func init() {
	launcher.Register("instance-qemu", func(ctx context.Context, o launcher.Options) ([]rpc.Plugin, error) {
		p, err := instanceqemu.New(o.StateDir, o.Logger)
		if err != nil {
			return nil, err
		}
		go func() { <-ctx.Done(); p.Close() }() // stop serving metadata; the VMs keep running
		return []rpc.Plugin{rpc.Instance(p)}, nil
	}, launcher.Describe("QEMU VMs (state under the plugin's state folder; VMs outlive the plugin)"))
	launcher.Register("instance-hyperkit", func(_ context.Context, o launcher.Options) ([]rpc.Plugin, error) {
		p, err := instancehyperkit.New(o.StateDir, o.Logger)
		if err != nil {
			return nil, err
		}
		return []rpc.Plugin{rpc.Instance(p)}, nil
	}, launcher.Describe("HyperKit VMs on macOS (vpnkit networking)"))
	launcher.Register("instance-vfkit", func(_ context.Context, o launcher.Options) ([]rpc.Plugin, error) {
		p, err := instancevfkit.New(o.StateDir, o.Logger)
		if err != nil {
			return nil, err
		}
		return []rpc.Plugin{rpc.Instance(p)}, nil
	}, launcher.Describe("vfkit (Virtualization.framework) VMs on macOS, Intel and Apple Silicon"))
	launcher.Register("flavor-moby", func(ctx context.Context, o launcher.Options) ([]rpc.Plugin, error) {
		f, err := flavormoby.New(o.StateDir, flavormoby.AssemblerBuilder{CacheDir: os.Getenv("MOBYKIT_CACHE")}, o.Logger)
		if err != nil {
			return nil, err
		}
		go func() { <-ctx.Done(); f.Close() }() // cancel the builds under way
		return []rpc.Plugin{rpc.Flavor(f)}, nil
	}, launcher.Describe("builds a group's image spec and points its instances at it"))

	moby := &cobra.Command{
		Use:   "moby",
		Short: "Helpers for groups using the flavor-moby plugin",
	}
	var write bool
	var plugins []string
	pin := &cobra.Command{
		Use:   "pin GROUP.json",
		Short: "Record the content digest of each flavor-moby spec file in the group file (spec_digest)",
		Long: `InfraKit's config hash covers the group's Properties, not the files they name. Pinning
writes the current digest of each flavor-moby spec file into its Flavor Properties, so that
after editing a spec, pin then commit rolls the group onto the new image. Relative spec paths
are read from the group file's folder (and sent inline by 'mobykit group commit', whose
content already changes the hash, so pinning them is optional). Prints the pinned document,
or rewrites the file with --write.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			doc, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			out, err := flavormoby.Pin(doc, filepath.Dir(args[0]), plugins...)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			out = append(out, '\n')
			if write {
				return vm.WriteFileAtomic(args[0], out, 0o644)
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	pin.Flags().BoolVarP(&write, "write", "w", false, "rewrite GROUP.json in place")
	pin.Flags().StringSliceVar(&plugins, "flavor", []string{"flavor-moby"}, "Flavor plugin names to pin")
	moby.AddCommand(pin)
	addCommand(moby)
}
