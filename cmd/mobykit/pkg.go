package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/mobykit/mobykit/assembler/image"
	"github.com/mobykit/mobykit/pkgbuild"
)

func init() {
	var (
		cacheDir string
		workDir  string
		arch     string
		force    bool
		output   string
		push     bool
		registry string
		insecure []string
		plats    []string
	)
	// builder returns a Builder for --arch, or for --platforms (several: one multi-platform
	// image per recipe).
	builder := func(cmd *cobra.Command, c *image.Cache) (*pkgbuild.Builder, error) {
		b := &pkgbuild.Builder{Cache: c, WorkDir: workDir, Arch: arch, Force: force, Log: slog.Default()}
		if len(plats) == 0 {
			return b, nil
		}
		if cmd.Flags().Changed("arch") {
			return nil, fmt.Errorf("give --arch or --platforms, not both")
		}
		arches, err := pkgbuild.ParsePlatforms(plats...)
		if err != nil {
			return nil, fmt.Errorf("--platforms: %w", err)
		}
		if b.Arch = arches[0]; len(arches) > 1 {
			b.Arches = arches
		}
		return b, nil
	}
	pusher := func(c *image.Cache) *image.Resolver {
		return image.NewResolver(c, image.WithInsecure(insecure...))
	}
	// emitPushed prints "REF DIGEST" per push: on stdout for pkg push, on stderr for
	// pkg build --push, whose stdout lists the built references.
	emitPushed := func(cmd *cobra.Command, ps []*image.Pushed, w io.Writer) error {
		for _, p := range ps {
			if output == "json" {
				if err := json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"pushed": p.Ref, "digest": p.Digest.String(), "platforms": p.Platforms, "sboms": p.SBOMs}); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintf(w, "%s %s\n", p.Ref, p.Digest)
		}
		return nil
	}
	emit := func(cmd *cobra.Command, ref string, res *pkgbuild.Result) error {
		switch output {
		case "json":
			v := map[string]any{"ref": ref}
			if res != nil {
				v["latest"], v["digest"], v["cached"], v["size"] = res.Latest, res.Digest.String(), res.Cached, res.Size
				if res.Platforms != nil {
					v["platforms"] = res.Platforms
				}
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(v)
		case "text", "":
			_, err := fmt.Fprintln(cmd.OutOrStdout(), ref)
			return err
		}
		return fmt.Errorf("--output %q: want text or json", output)
	}
	// eachRecipe loads each recipe DIR of args in turn and calls fn with it and a Builder from
	// the flags, on the image cache when withCache (show-tag needs none).
	eachRecipe := func(cmd *cobra.Command, args []string, withCache bool, fn func(*pkgbuild.Builder, *pkgbuild.Recipe) error) error {
		var c *image.Cache
		if withCache {
			var err error
			if c, err = image.OpenCache(cacheDir); err != nil {
				return err
			}
		}
		b, err := builder(cmd, c)
		if err != nil {
			return err
		}
		for _, dir := range args {
			r, err := pkgbuild.LoadRecipe(dir)
			if err != nil {
				return err
			}
			if err := fn(b, r); err != nil {
				return err
			}
		}
		return nil
	}
	pkg := &cobra.Command{
		Use:   "pkg",
		Short: "Build mobykit's system images (images/NAME/build.yml) into the local image cache",
	}
	build := &cobra.Command{
		Use:   "build DIR...",
		Short: "Build the images whose recipes are DIR/build.yml; prints ORG/NAME:TAG of each",
		Long: `Build each recipe into the local OCI-layout cache (the one mobykit build reads), tagged
ORG/NAME:HASH (a hash of the recipe and its inputs) and ORG/NAME:latest. An image whose tag the
cache already holds is not rebuilt.

--platforms linux/amd64,linux/arm64 builds every image for each platform (Go cross-compiled,
cgo with Debian's cross compiler, Debian packages and the kernel of the target architecture)
under one tag, ORG/NAME:HASH derived from the platforms' own tags; pkg push (with the same
--platforms) uploads it as one OCI index.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachRecipe(cmd, args, true, func(b *pkgbuild.Builder, r *pkgbuild.Recipe) error {
				res, err := b.Build(cmd.Context(), r)
				if err != nil {
					return err
				}
				if err := emit(cmd, res.Ref, res); err != nil {
					return err
				}
				if !push {
					return nil
				}
				ps, err := pkgbuild.Push(cmd.Context(), pusher(b.Cache), res.Ref, registry)
				if err != nil {
					return err
				}
				return emitPushed(cmd, ps, cmd.ErrOrStderr())
			})
		},
	}
	pushCmd := &cobra.Command{
		Use:   "push DIR...",
		Short: "Push the images the recipes DIR/build.yml build (already in the cache) to a registry",
		Long: `Push each recipe's image from the local cache as REGISTRY/ORG/NAME:HASH and
REGISTRY/ORG/NAME:latest (--registry host[:port][/path]; default: ORG/NAME's own registry, Docker
Hub). Credentials come from the docker config (~/.docker/config.json or $DOCKER_CONFIG: auths and
credHelpers, as 'docker login' writes them). Blobs the registry already has are not uploaded
again. An image cached for several platforms is pushed as one multi-platform index.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachRecipe(cmd, args, true, func(b *pkgbuild.Builder, r *pkgbuild.Recipe) error {
				ps, err := b.Push(cmd.Context(), r, pusher(b.Cache), registry)
				if err != nil {
					return err
				}
				return emitPushed(cmd, ps, cmd.OutOrStdout())
			})
		},
	}
	showTag := &cobra.Command{
		Use:   "show-tag DIR...",
		Short: "Print the ORG/NAME:TAG each recipe would build, without building",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachRecipe(cmd, args, false, func(b *pkgbuild.Builder, r *pkgbuild.Recipe) error {
				tag, err := b.Tag(cmd.Context(), r)
				if err != nil {
					return err
				}
				return emit(cmd, r.Repo()+":"+tag, nil)
			})
		},
	}
	for _, c := range []*cobra.Command{build, showTag, pushCmd} {
		c.Flags().StringVar(&workDir, "work-dir", pkgbuild.DefaultWorkDir(), "where downloaded packages and scratch modules are kept ($MOBYKIT_PKG_CACHE)")
		c.Flags().StringVar(&arch, "arch", "amd64", "target architecture")
		c.Flags().StringSliceVar(&plats, "platforms", nil, "build for these platforms (linux/amd64,linux/arm64): one multi-platform image per recipe, tagged as one")
		c.Flags().StringVarP(&output, "output", "o", "text", "text (one reference a line) or json (one object a line)")
	}
	for _, c := range []*cobra.Command{build, pushCmd} {
		c.Flags().StringVar(&cacheDir, "cache", image.DefaultCacheDir(), "image cache folder ($MOBYKIT_CACHE)")
		c.Flags().StringVar(&registry, "registry", "", "push to host[:port][/path] instead of the images' own registry")
		c.Flags().StringSliceVar(&insecure, "insecure-registry", nil, "registry host[:port] to reach over plain HTTP (loopback always is)")
	}
	build.Flags().BoolVar(&force, "force", false, "rebuild even when the cache holds the tag")
	build.Flags().BoolVar(&push, "push", false, "push each image after building it (see mobykit pkg push)")
	pkg.AddCommand(build, showTag, pushCmd)
	addCommand(pkg)
}
