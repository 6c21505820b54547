package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mobykit/mobykit/group"
	"github.com/mobykit/mobykit/launcher"
	"github.com/mobykit/mobykit/launcher/instancefile"
	"github.com/mobykit/mobykit/launcher/vanilla"
	"github.com/mobykit/mobykit/spi/discovery"
	"github.com/mobykit/mobykit/spi/rpc"
)

// The built-in test partners; the other plugins register from their own cmd files.
func init() {
	launcher.Register("instance-file", func(ctx context.Context, o launcher.Options) ([]rpc.Plugin, error) {
		p, err := instancefile.New(o.StateDir)
		if err != nil {
			return nil, err
		}
		return []rpc.Plugin{rpc.Instance(p)}, nil
	}, launcher.DefaultName("file"), launcher.Describe("instances recorded as JSON files (InfraKit's file plugin)"))
	launcher.Register("flavor-vanilla", func(ctx context.Context, o launcher.Options) ([]rpc.Plugin, error) {
		return []rpc.Plugin{rpc.Flavor(vanilla.Flavor{})}, nil
	}, launcher.DefaultName("vanilla"), launcher.Describe("InfraKit's vanilla flavor: tags, init lines, attachments"))
	addCommand(pluginCmd())
}

func pluginCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plugin",
		Short: "Start, list and stop InfraKit plugins on their sockets",
		Long: "Plugins listen on unix sockets in $INFRAKIT_PLUGINS_DIR, else $INFRAKIT_HOME/plugins,\n" +
			"else ~/.infrakit/plugins. See docs/plugins.md.",
	}
	cmd.AddCommand(pluginStartCmd(), pluginExecCmd(), pluginLsCmd(), pluginStopCmd())
	return cmd
}

func pluginStartCmd() *cobra.Command {
	var detach bool
	var wait time.Duration
	var listen string
	c := &cobra.Command{
		Use:   "start KIND[:NAME]...",
		Short: "Start plugins built into mobykit (in the foreground, or --detach)",
		Long: "Start plugins built into mobykit, each on the socket NAME (default: the kind's default\n" +
			"name) in the plugin directory. In the foreground they run until Ctrl-C or SIGTERM;\n" +
			"with --detach each runs as its own background process logging to <dir>/<NAME>.log.\n\n" +
			"Kinds: " + kindList(),
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			specs := make([]launcher.Spec, 0, len(args))
			for _, a := range args {
				s, err := launcher.ParseSpec(a)
				if err != nil {
					return err
				}
				s.Listen = listen
				specs = append(specs, s)
			}
			if listen != "" && len(specs) != 1 {
				return fmt.Errorf("--listen serves one plugin; %d given", len(specs))
			}
			dir, err := discovery.EnsureDir()
			if err != nil {
				return err
			}
			if _, err := groupStore.Endpoints(); err != nil {
				return err
			}
			if detach {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("finding the mobykit executable: %w", err)
				}
				// The store's settings reach the detached plugin in its environment, kept off its
				// command line.
				err = launcher.Detach(cmd.Context(), dir, specs, launcher.DetachOptions{Wait: wait, Env: groupStore.Env(), Command: func(s launcher.Spec) []string {
					argv := []string{exe, "plugin", "start", s.String()}
					if s.Listen != "" {
						argv = append(argv, "--listen", s.Listen)
					}
					if verbose {
						argv = append(argv, "--verbose")
					}
					return append(argv, groupStore.Args()...)
				}})
				if err != nil {
					return err
				}
				for _, s := range specs {
					addr, err := discovery.Find(dir, s.Name)
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "started %s on %s\n", s, addr)
				}
				return nil
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return launcher.Run(ctx, dir, specs)
		},
	}
	c.Flags().BoolVarP(&detach, "detach", "d", false, "run each plugin as a background process")
	c.Flags().DurationVar(&wait, "wait", 15*time.Second, "with --detach, how long to wait for each socket to answer")
	group.AddStoreFlags(c.Flags(), &groupStore)
	c.Flags().StringVar(&listen, "listen", "", "serve one plugin on TCP HOST:PORT (recorded in <dir>/NAME.listen) instead of a unix socket; no access control, use loopback")
	return c
}

func kindList() string {
	var names []string
	for _, k := range launcher.Kinds() {
		names = append(names, k.Kind)
	}
	return strings.Join(names, ", ")
}

func pluginLsCmd() *cobra.Command {
	var output string
	var kinds bool
	c := &cobra.Command{
		Use:   "ls",
		Short: "List the plugins in the plugin directory (or, with --kinds, the kinds mobykit can start)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			if kinds {
				ks := launcher.Kinds()
				if output == "json" {
					return json.NewEncoder(out).Encode(ks)
				}
				w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "KIND\tSOCKET\tDESCRIPTION")
				for _, k := range ks {
					fmt.Fprintf(w, "%s\t%s\t%s\n", k.Kind, k.DefaultName, k.Description)
				}
				return w.Flush()
			}
			dir, err := discovery.Dir()
			if err != nil {
				return err
			}
			st, err := launcher.List(cmd.Context(), dir)
			if err != nil {
				return err
			}
			if output == "json" {
				if st == nil {
					st = []launcher.Status{}
				}
				return json.NewEncoder(out).Encode(st)
			}
			w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tSTATE\tPID\tINTERFACES\tADDRESS")
			for _, s := range st {
				state := "stale"
				if s.Running {
					state = "running"
				}
				var ifs []string
				for k, objs := range s.Interfaces {
					ifs = append(ifs, k+"["+strings.Join(objs, ",")+"]")
				}
				sort.Strings(ifs)
				pid := "-"
				if s.PID != 0 {
					pid = fmt.Sprint(s.PID)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", s.Name, state, pid, strings.Join(ifs, " "), s.Address)
			}
			return w.Flush()
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	c.Flags().BoolVar(&kinds, "kinds", false, "list the plugin kinds built into mobykit")
	return c
}

func pluginStopCmd() *cobra.Command {
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "stop NAME...",
		Short: "Stop plugins by their pid files (SIGTERM, then SIGKILL after --timeout)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := discovery.Dir()
			if err != nil {
				return err
			}
			for _, n := range args {
				if err := launcher.Stop(dir, n, timeout); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "stopped %s\n", n)
			}
			return nil
		},
	}
	c.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait after SIGTERM")
	return c
}

func pluginExecCmd() *cobra.Command {
	var detach bool
	var wait time.Duration
	c := &cobra.Command{
		Use:   "exec NAME EXECUTABLE [ARG...]",
		Short: "Serve a plugin executable (HashiCorp go-plugin, gRPC) on the socket NAME",
		Long: "Start EXECUTABLE as a go-plugin plugin (handshake: protocol version and magic cookie),\n" +
			"and serve the Instance, Flavor or Group objects it offers on the socket NAME, so the group\n" +
			"controller and InfraKit clients reach it like any other plugin. Every cmd/plugin-* binary\n" +
			"of mobykit can be loaded this way.",
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := discovery.EnsureDir()
			if err != nil {
				return err
			}
			name, argv := args[0], args[1:]
			if _, err := groupStore.Endpoints(); err != nil {
				return err
			}
			if detach {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("finding the mobykit executable: %w", err)
				}
				return launcher.Detach(cmd.Context(), dir, []launcher.Spec{{Kind: "exec", Name: name}}, launcher.DetachOptions{Wait: wait, Env: groupStore.Env(),
					Command: func(launcher.Spec) []string {
						return append([]string{exe, "plugin", "exec", name}, argv...)
					}})
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return launcher.RunExecutable(ctx, dir, name, argv)
		},
	}
	c.Flags().SetInterspersed(false)
	c.Flags().BoolVarP(&detach, "detach", "d", false, "run in the background")
	c.Flags().DurationVar(&wait, "wait", 15*time.Second, "with --detach, how long to wait for the socket to answer")
	return c
}
