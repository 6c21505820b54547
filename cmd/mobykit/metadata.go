package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/mobykit/mobykit/metadata/imds"
	"github.com/mobykit/mobykit/metadata/iso"
)

func init() { addCommand(metadataCmd()) }

func metadataCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "metadata",
		Short: "Make metadata payloads for VMs and serve local VMs an EC2-compatible metadata service",
	}
	c.AddCommand(metadataCreateCmd(), metadataServeCmd(), metadataConnectCmd())
	return c
}

// readData returns DATA, or the contents of the file if it is written @FILE (@- is stdin).
func readData(arg string) ([]byte, error) {
	name, ok := strings.CutPrefix(arg, "@")
	if !ok {
		return []byte(arg), nil
	}
	if name == "-" {
		return io.ReadAll(os.Stdin)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read userdata: %w", err)
	}
	return b, nil
}

func metadataCreateCmd() *cobra.Command {
	var instanceID, hostname, label string
	c := &cobra.Command{
		Use:   "create FILE.iso DATA|@FILE",
		Short: "Write a metadata CD image holding userdata",
		Long: `Write an ISO9660 image (label "cidata") holding the userdata as LinuxKit's single
"config" file and as NoCloud's "user-data" (with a "meta-data" giving the instance id and
hostname), for LinuxKit's and mobykit's metadata agents and for cloud-init. The same input
always gives the same bytes.`,
		Example: `  mobykit metadata create meta.iso '{"hostname":{"content":"node1"}}'
  mobykit metadata create meta.iso @userdata.json --instance-id i-0001`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := readData(args[1])
			if err != nil {
				return err
			}
			if err := iso.WriteFile(args[0], iso.Metadata(data, instanceID, hostname), iso.Options{Label: label}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d bytes of userdata)\n", args[0], len(data))
			return nil
		},
	}
	c.Flags().StringVar(&instanceID, "instance-id", "", "NoCloud instance-id in meta-data (default iid-mobykit)")
	c.Flags().StringVar(&hostname, "hostname", "", "NoCloud local-hostname in meta-data")
	c.Flags().StringVar(&label, "label", iso.LabelCIDATA, "volume label")
	return c
}

func metadataServeCmd() *cobra.Command {
	var listen, recordsFile, data, instanceID, hostname, localIP string
	var requireToken bool
	c := &cobra.Command{
		Use:   "serve",
		Short: "Serve an EC2-compatible metadata service (IMDSv1/v2) to local VMs",
		Long: `Serve /latest/api/token, /latest/meta-data/... and /latest/user-data.

With --instance-id (and --data), one VM's record is served on --listen to every client.
With --records FILE (a JSON list of records: InstanceID, Hostname, LocalIPv4, PublicIPv4,
PublicKeys [{Name, Key}], Tags {}, UserData (base64), Addr), each client is served the record
whose Addr is its source address. instance-qemu uses the Go API (metadata/imds) instead, with a
private unix socket per VM. Any local user can connect to --listen: every record it serves is
readable by every local user (and by every guest whose network reaches it).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []imds.Option
			if requireToken {
				opts = append(opts, imds.WithTokenRequired())
			}
			s := imds.New(opts...)
			defer s.Close()
			var h http.Handler
			switch {
			case recordsFile != "":
				b, err := os.ReadFile(recordsFile)
				if err != nil {
					return fmt.Errorf("read records: %w", err)
				}
				var recs []imds.Record
				if err := json.Unmarshal(b, &recs); err != nil {
					return fmt.Errorf("records %s: %w", recordsFile, err)
				}
				for _, r := range recs {
					if err := s.Register(r); err != nil {
						return err
					}
				}
				h = s.Handler()
			case instanceID != "":
				var ud []byte
				if data != "" {
					var err error
					if ud, err = readData(data); err != nil {
						return err
					}
				}
				if err := s.Register(imds.Record{InstanceID: instanceID, Hostname: hostname, LocalIPv4: localIP, UserData: ud}); err != nil {
					return err
				}
				h = s.InstanceHandler(instanceID)
			default:
				return fmt.Errorf("give --instance-id or --records")
			}
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen %s: %w", listen, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "serving metadata on http://%s\n", l.Addr())
			srv := s.HTTPServer(h)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() { <-ctx.Done(); srv.Close() }()
			if err := srv.Serve(l); err != nil && err != http.ErrServerClosed {
				return err
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8169", "address to listen on")
	f.StringVar(&recordsFile, "records", "", "JSON file of records, selected by client source address")
	f.StringVar(&instanceID, "instance-id", "", "serve one record with this instance id to every client")
	f.StringVar(&data, "data", "", "userdata for --instance-id: DATA or @FILE")
	f.StringVar(&hostname, "hostname", "", "hostname for --instance-id")
	f.StringVar(&localIP, "local-ipv4", "", "local-ipv4 for --instance-id")
	f.BoolVar(&requireToken, "require-token", false, "refuse IMDSv1 requests (EC2's HttpTokens=required)")
	return c
}

func metadataConnectCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "connect unix:PATH|HOST:PORT",
		Short:  "Relay stdin/stdout to a unix socket or TCP address (run by QEMU's guestfwd for each guest connection)",
		Args:   cobra.ExactArgs(1),
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			// QEMU connects stdin, stdout and stderr all to the guest's connection: an error
			// message would reach the guest as its answer, so a failure is only the
			// connection closing.
			if err := imds.Relay(context.Background(), args[0], os.Stdin, os.Stdout); err != nil {
				os.Exit(1)
			}
			return nil
		},
	}
}
