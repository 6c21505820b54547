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
				plat := e.Platform
				if e.Subject != "" && len(e.Subject) > 19 {
					plat = "SBOM of " + e.Subject[:19] // an attestation manifest
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f MB\n", e.Ref, plat, e.Digest.String()[:19], float64(e.Size)/1e6)
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
	var registry, to string
	var insecure []string
	push := &cobra.Command{
		Use:   "push REF...",
		Short: "Push cached images to a registry",
		Long: `Push each cached image to its own registry, to --registry host[:port][/path] (keeping its
repository path and tag), or to --to REF (one image). Credentials come from the docker config
(~/.docker/config.json or $DOCKER_CONFIG, auths and credHelpers). Blobs the registry already has
are not uploaded again; an image cached for several platforms is pushed as one index.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to != "" && (len(args) != 1 || registry != "") {
				return fmt.Errorf("push: --to takes one image and no --registry")
			}
			cache, err := open()
			if err != nil {
				return err
			}
			r := image.NewResolver(cache, image.WithInsecure(insecure...))
			for _, a := range args {
				dst := to
				if dst == "" {
					if dst, err = image.Retarget(a, registry); err != nil {
						return err
					}
				}
				p, err := r.Push(cmd.Context(), a, dst)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", p.Ref, p.Digest)
			}
			return nil
		},
	}
	push.Flags().StringVar(&registry, "registry", "", "push to host[:port][/path] instead of each image's own registry")
	push.Flags().StringVar(&to, "to", "", "push the one image to this reference")

	pull := &cobra.Command{
		Use:   "pull REF...",
		Short: "Pull images into the cache (again, even when cached)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cache, err := open()
			if err != nil {
				return err
			}
			r := image.NewResolver(cache, image.WithArch(arch), image.WithInsecure(insecure...))
			for _, a := range args {
				img, err := r.Pull(cmd.Context(), a)
				if err != nil {
					return err
				}
				d, err := img.Digest()
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", a, d)
			}
			return nil
		},
	}
	for _, c := range []*cobra.Command{push, pull} {
		c.Flags().StringSliceVar(&insecure, "insecure-registry", nil, "registry host[:port] to reach over plain HTTP (loopback always is)")
	}

	rm := &cobra.Command{
		Use:   "rm REF...",
		Short: "Remove images from the cache, and the blobs only they used",
		Long: `Remove each image (every platform, or only --arch's) from the cache, with the blobs and
unpacked layers no other cached image uses. Do not run it while a build uses the same cache.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cache, err := open()
			if err != nil {
				return err
			}
			var p *v1.Platform
			if arch != "" {
				p = &v1.Platform{OS: "linux", Architecture: arch}
			}
			for _, a := range args {
				if _, err := cache.Remove(a, p); err != nil {
					return err
				}
			}
			return nil
		},
	}
	pull.Flags().StringVar(&arch, "arch", "", "platform to pull (default: the host's)")
	rm.Flags().StringVar(&arch, "arch", "", "remove only this platform (default: every one)")

	c.AddCommand(ls, imp, exp, clean, push, pull, rm)
	addCommand(c)
}
