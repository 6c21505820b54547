package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/mobykit/mobykit/assembler"
	"github.com/mobykit/mobykit/assembler/format"
	"github.com/mobykit/mobykit/assembler/initrd"
	"github.com/mobykit/mobykit/assembler/spec"
)

func init() {
	var (
		o        assembler.Options
		fl       assembler.Flags
		compress string
		dryRun   bool
		jsonOut  bool
	)
	c := &cobra.Command{
		Use:   "build [flags] spec.yml [more.yml ...]",
		Short: "Build a kernel and initramfs (and other formats) from LinuxKit YAML specs",
		Long: `Build merges the spec files in order, resolves every image (from the local
cache, else from its registry, only for --arch) and writes the outputs of each
--format into --dir. Rebuilds reuse every unchanged part.

The output flags mean what they mean to linuxkit build: -o FILE writes the single
output of a single format to FILE (the tar format unless --format says otherwise),
-o - streams it to stdout; --dir and --name place the outputs of every other build.
-o used to name the output folder: -o DIR on a folder is now an error asking for --dir.

Formats: ` + strings.Join(format.Names(), ", ") + `.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := spec.Load(args...)
			if err != nil {
				return err
			}
			if dryRun {
				b, err := m.Defaulted().Bytes()
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			fl.Specs = args
			notes, err := fl.Apply(&o)
			if err != nil {
				return err
			}
			for _, n := range notes {
				fmt.Fprintln(cmd.ErrOrStderr(), "mobykit build:", n)
			}
			o.Stdout = cmd.OutOrStdout()
			if o.Compression, err = initrd.ParseCompression(compress); err != nil {
				return err
			}
			if o.BaseDir == "" {
				o.BaseDir = filepath.Dir(args[0])
			}
			if term.IsTerminal(int(os.Stderr.Fd())) {
				o.Progress = os.Stderr
			}
			res, err := assembler.Build(cmd.Context(), m, o)
			if err != nil {
				return err
			}
			switch {
			case o.OutputFile == "-":
				// stdout holds the output itself
			case jsonOut:
				return printJSON(cmd, res)
			default:
				for _, p := range res.Outputs {
					fmt.Fprintln(cmd.OutOrStdout(), p)
				}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "built %s in %.2fs: initramfs %.1f MB (%.1f MB uncompressed), %d of %d parts reused%s\n",
				o.Name, res.Duration.Seconds(), float64(res.InitrdSize)/1e6, float64(res.UncompressedSize)/1e6, res.Reused, res.Segments, peakRSS())
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&fl.Dir, "dir", "", "folder for the output files (default: the current folder)")
	f.StringVarP(&fl.File, "output", "o", "", "file for a single output, or - for stdout (not a folder: see --dir)")
	f.StringVar(&fl.Name, "name", "", "base name of the output files (default: the last spec's file name)")
	f.StringSliceVarP(&fl.Formats, "format", "f", nil, "output formats, repeatable (default kernel+initrd, or tar with -o): "+strings.Join(format.Names(), ", "))
	f.StringVar(&fl.Size, "size", "", "size of disk formats: 1024M, 2G (as linuxkit; default: fit the contents)")
	f.BoolVar(&o.DecompressKernel, "decompress-kernel", false, "write the kernel decompressed (gzip'ed image or bzImage payload)")
	f.StringVar(&fl.InputTar, "input-tar", "", "tar of an earlier build (linuxkit's reuse hint; mobykit's cache already reuses unchanged images, so it is only checked)")
	f.StringVar(&o.Bootloader, "bootloader", assembler.DefaultBootloader, "image the disk and ISO formats take their bootloader from (mobykit pkg build images/bootloader)")
	f.BoolVar(&o.NoSBOM, "no-sbom", false, "do not merge the images' SBOMs into /"+assembler.DefaultSBOMOutput)
	f.StringVar(&o.SBOMOutput, "sbom-output", assembler.DefaultSBOMOutput, "path of the merged SBOM in the image")
	f.StringVar(&o.Arch, "arch", "", "target architecture (default: the host's)")
	f.StringVar(&o.CacheDir, "cache", "", "image cache directory (default $MOBYKIT_CACHE or ~/.mobykit/cache)")
	f.StringSliceVar(&o.Insecure, "insecure-registry", nil, "registry host[:port] to reach over plain HTTP (loopback always is)")
	f.BoolVar(&o.Pull, "pull", false, "ask registries again even for cached images")
	f.StringSliceVar(&o.Archives, "image-archive", nil, "docker save or OCI tarball to load into the cache first")
	f.StringVar(&compress, "compress", "gzip", "initramfs compression: gzip, zstd, lz4 (fastest to boot, needs CONFIG_RD_LZ4) or none")
	f.BoolVar(&dryRun, "dry-run", false, "print the merged, defaulted spec and exit")
	f.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	addCommand(c)
}

// peakRSS reports the process's peak resident memory where Linux tells it.
func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmHWM:" {
			if kb, err := strconv.ParseFloat(f[1], 64); err == nil {
				return fmt.Sprintf(", peak RSS %.0f MB", kb/1024)
			}
		}
	}
	return ""
}
