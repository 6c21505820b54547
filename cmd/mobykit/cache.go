package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"text/tabwriter"

	"github.com/spf13/cobra"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/mobykit/mobykit/assembler/image"
)

func printJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func init() {
	var dir string
	c := &cobra.Command{
		Use:   "cache",
		Short: "Inspect and manage the local image cache",
		Long: `The cache is an OCI image layout (default $MOBYKIT_CACHE or ~/.mobykit/cache)
holding every image pulled by 'mobykit build', plus the unpacked layers and
compressed initramfs parts that make rebuilds fast.`,
	}
	c.PersistentFlags().StringVar(&dir, "cache", "", "cache directory (default $MOBYKIT_CACHE or ~/.mobykit/cache)")
	open := func() (*image.Cache, error) { return image.OpenCache(dir) }

	var jsonOut bool
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List cached images",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cache, err := open()
			if err != nil {
				return err
			}
			ents, err := cache.List()
			if err != nil {
				return err
			}
			if jsonOut {
				return printJSON(cmd, ents)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REFERENCE\tPLATFORM\tDIGEST\tSIZE")
			for _, e := range ents {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f MB\n", e.Ref, e.Platform, e.Digest.String()[:19], float64(e.Size)/1e6)
			}
			return tw.Flush()
		},
	}
	ls.Flags().BoolVar(&jsonOut, "json", false, "print JSON")

	imp := &cobra.Command{
		Use:   "import ARCHIVE...",
		Short: "Load images from docker save or OCI layout tarballs into the cache",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cache, err := open()
			if err != nil {
				return err
			}
			for _, a := range args {
				refs, err := cache.Import(a)
				if err != nil {
					return err
				}
				for _, r := range refs {
					fmt.Fprintln(cmd.OutOrStdout(), r)
				}
			}
			return nil
		},
	}

	var out, arch string
	exp := &cobra.Command{
		Use:   "export -o FILE REF...",
		Short: "Write cached images to a docker save tarball",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("export: -o FILE is required")
			}
			cache, err := open()
			if err != nil {
				return err
			}
			if arch == "" {
				arch = runtime.GOARCH
			}
			return cache.Export(args, v1.Platform{OS: "linux", Architecture: arch}, out)
		},
	}
	exp.Flags().StringVarP(&out, "output", "o", "", "tarball to write")
	exp.Flags().StringVar(&arch, "arch", "", "platform of the images (default: the host's)")

	clean := &cobra.Command{
		Use:   "clean",
		Short: "Remove everything from the cache",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cache, err := open()
			if err != nil {
				return err
			}
			if err := cache.Clean(); err != nil {
				return err
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "cache emptied:", cache.Dir())
			return nil
		},
	}
	c.AddCommand(ls, imp, exp, clean)
	addCommand(c)
}
