package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mobykit/mobykit/launcher"
	instanceaws "github.com/mobykit/mobykit/plugins/instance-aws"
	"github.com/mobykit/mobykit/plugins/instance-aws/ami"
	"github.com/mobykit/mobykit/spi/discovery"
	"github.com/mobykit/mobykit/spi/rpc"
)

// pluginOptions are `mobykit aws serve`'s flags; `mobykit plugin start instance-aws` leaves
// them empty and the SDK's chain decides.
var pluginOptions instanceaws.Options

// The built-in plugin "instance-aws": EC2 instances through the SDK's standard chain
// (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL, shared config, IMDS).
func init() {
	launcher.Register("instance-aws", func(ctx context.Context, o launcher.Options) ([]rpc.Plugin, error) {
		opts := pluginOptions
		opts.Logger = o.Logger
		p, err := instanceaws.Open(ctx, opts)
		if err != nil {
			return nil, err
		}
		return []rpc.Plugin{rpc.Instance(p)}, nil
	}, launcher.Describe("EC2 instances (aws-sdk-go-v2; region, profile, endpoint and credentials from the AWS environment)"))
}

// `mobykit aws import`: a raw disk image to a registered AMI.
func init() {
	var o instanceaws.Options
	a := &cobra.Command{Use: "aws", Short: "Amazon EC2: import images as AMIs, serve the instance-aws plugin"}
	a.PersistentFlags().StringVar(&o.Region, "region", "", "AWS region (default: AWS_REGION or the profile's)")
	a.PersistentFlags().StringVar(&o.Profile, "profile", "", "shared config profile (default: AWS_PROFILE or default)")
	a.PersistentFlags().StringVar(&o.Endpoint, "endpoint", "", "endpoint URL for every AWS service, e.g. a local emulator (default: AWS_ENDPOINT_URL or AWS)")

	var in ami.Input
	var bootMode, method, output string
	var tags []string
	var noENA bool
	var parallel int
	imp := &cobra.Command{
		Use:   "import IMAGE.raw",
		Short: "Register a raw disk image as an AMI, or print the AMI that already carries its digest",
		Long: `Import uploads a raw disk image (mobykit build --format aws or raw-bios) to an EBS snapshot, by the
EBS direct API (--method ebs, default: no bucket or role needed) or by S3 and ImportSnapshot
(--method s3 --bucket B, needs the vmimport role), waits for it, registers an AMI with the
given boot mode and tags it with the image's sha256 digest. An AMI owned by the account that
already carries the digest is reused. The AMI ID is printed on stdout; progress on stderr.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: want text or json", output)
			}
			in.Path = args[0]
			in.BootMode = ami.BootMode(bootMode)
			in.Method = ami.Method(method)
			if noENA {
				in.ENA = new(bool)
			}
			in.Tags = map[string]string{}
			for _, t := range tags {
				k, v, ok := strings.Cut(t, "=")
				if !ok || k == "" {
					return fmt.Errorf("--tag %q: want KEY=VALUE", t)
				}
				in.Tags[k] = v
			}
			in.Progress = progressPrinter(cmd.ErrOrStderr())
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer cancel()
			cfg, err := instanceaws.LoadConfig(ctx, o)
			if err != nil {
				return err
			}
			im := ami.New(cfg, nil)
			if parallel > 0 {
				im.Parallel = parallel
			}
			res, err := im.Import(ctx, in)
			fmt.Fprintln(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			verb := "registered"
			if res.Reused {
				verb = "reused"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%s %s (%s, %s)\n", verb, res.ImageID, res.Name, res.Digest)
			fmt.Fprintln(cmd.OutOrStdout(), res.ImageID)
			return nil
		},
	}
	f := imp.Flags()
	f.StringVar(&in.Name, "name", "", "AMI name prefix; the AMI is <name>-<12 hex of digest> (default: file name)")
	f.StringVar(&in.Description, "description", "", "AMI and snapshot description")
	f.StringVar(&bootMode, "boot-mode", string(ami.BootUEFIPreferred), "firmware: uefi, legacy-bios or uefi-preferred")
	f.StringVar(&in.Architecture, "arch", "x86_64", "x86_64 or arm64")
	f.BoolVar(&noENA, "no-ena", false, "do not mark the AMI as supporting ENA networking")
	f.StringVar(&in.RootDeviceName, "root-device", "/dev/xvda", "root device name")
	f.StringVar(&in.VolumeType, "volume-type", "gp3", "root volume type")
	f.StringVar(&method, "method", string(ami.MethodEBS), "upload method: ebs (EBS direct API) or s3 (S3 + ImportSnapshot)")
	f.StringVar(&in.Bucket, "bucket", "", "S3 bucket for --method s3")
	f.StringVar(&in.Key, "key", "", "S3 key for --method s3 (default mobykit/<digest>.raw)")
	f.StringVar(&in.RoleName, "role", "vmimport", "ImportSnapshot service role for --method s3")
	f.StringArrayVar(&tags, "tag", nil, "extra KEY=VALUE tag on the AMI and snapshot (repeatable)")
	f.IntVar(&parallel, "parallel", 8, "blocks uploaded at once with --method ebs")
	f.StringVarP(&output, "output", "o", "text", "output format: text (the AMI ID) or json")
	a.AddCommand(imp)

	var name string
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Serve the instance-aws plugin in the foreground, with --region/--profile/--endpoint",
		Long: `Serve runs the instance-aws plugin on its socket in the plugin directory until Ctrl-C or
SIGTERM, like "mobykit plugin start instance-aws" but taking the AWS flags.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pluginOptions = o
			dir, err := discovery.EnsureDir()
			if err != nil {
				return err
			}
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			return launcher.Run(ctx, dir, []launcher.Spec{{Kind: "instance-aws", Name: name}})
		},
	}
	serve.Flags().StringVar(&name, "name", "instance-aws", "socket name in the plugin directory")
	a.AddCommand(serve)
	addCommand(a)
}

// progressPrinter returns an ami progress callback drawing one updating line per phase,
// at most ten times a second.
func progressPrinter(w io.Writer) func(phase string, done, total int64) {
	var mu sync.Mutex
	var last time.Time
	var lastPhase string
	return func(phase string, done, total int64) {
		mu.Lock()
		defer mu.Unlock()
		if phase == lastPhase && done < total && time.Since(last) < 100*time.Millisecond {
			return
		}
		if phase != lastPhase && lastPhase != "" {
			fmt.Fprintln(w)
		}
		last, lastPhase = time.Now(), phase
		switch {
		case phase == "snapshot" || phase == "register":
			fmt.Fprintf(w, "\r%-9s %3d%%", phase, done*100/max(total, 1))
		default:
			fmt.Fprintf(w, "\r%-9s %6.1f / %.1f MiB", phase, float64(done)/(1<<20), float64(total)/(1<<20))
		}
	}
}
