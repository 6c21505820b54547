package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/mobykit/mobykit/group"
	"github.com/mobykit/mobykit/group/cli"
	"github.com/mobykit/mobykit/launcher"
	flavormoby "github.com/mobykit/mobykit/plugins/flavor-moby"
	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/discovery"
	"github.com/mobykit/mobykit/spi/rpc"
)

// `mobykit group ...`: a thin client of the group plugin (mobykit's controller, or InfraKit's)
// over its socket. The logic and rendering live in group/cli.
func init() {
	var name, output string
	var interval time.Duration
	g := &cobra.Command{Use: "group", Short: "Commit, inspect and roll groups of machines through the group plugin"}
	g.PersistentFlags().StringVar(&name, "name", "group", "name of the group plugin (its socket in the plugin directory)")
	g.PersistentFlags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	g.PersistentFlags().DurationVar(&interval, "interval", 2*time.Second, "how often --wait/--watch poll the rollout status")

	setup := func(cmd *cobra.Command) (cli.Client, cli.Printer, context.Context, context.CancelFunc, error) {
		p := cli.Printer{W: cmd.OutOrStdout()}
		switch output {
		case "text":
		case "json":
			p.JSON = true
		default:
			return nil, p, nil, nil, fmt.Errorf("--output %q: want text or json", output)
		}
		addr, err := groupAddress(name)
		if err != nil {
			return nil, p, nil, nil, err
		}
		ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt)
		return rpc.NewGroupClient(addr, name), p, ctx, cancel, nil
	}
	watch := func(ctx context.Context, c cli.Client, id spi.GroupID, cmd *cobra.Command, until cli.Until) error {
		return cli.Watch(ctx, c, id, interval, cmd.OutOrStdout(), output == "json", until, nil)
	}

	var pretend, wait bool
	var waitFor string
	var mobyFlavors []string
	commit := &cobra.Command{
		Use: "commit FILE", Short: "Commit a group spec (InfraKit format, JSON or YAML; - for stdin)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			until, err := cli.ParseUntil(waitFor)
			if err != nil {
				return err
			}
			wait = wait || cmd.Flags().Changed("wait-for")
			spec, err := cli.ReadSpec(args[0], cmd.InOrStdin())
			if err != nil {
				return err
			}
			// Relative flavor-moby spec paths are relative to the group file: send their content.
			base := filepath.Dir(args[0])
			if args[0] == "-" {
				base = "."
			}
			if spec, err = flavormoby.InlineGroup(spec, base, mobyFlavors...); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			c, p, ctx, cancel, err := setup(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			details, err := c.CommitGroup(ctx, spec, pretend)
			if err != nil {
				return fmt.Errorf("commit group %s: %w", spec.ID, err)
			}
			if err := p.Commit(spec.ID, details, pretend); err != nil {
				return err
			}
			if wait && !pretend {
				return watch(ctx, c, spec.ID, cmd, until)
			}
			return nil
		},
	}
	commit.Flags().BoolVar(&pretend, "pretend", false, "only say what the commit would do")
	commit.Flags().BoolVar(&wait, "wait", false, "show the rollout's progress until it is done and every member at the new config is healthy (non-zero exit if it pauses); see --wait-for")
	commit.Flags().StringVar(&waitFor, "wait-for", string(cli.UntilHealthy), "what --wait waits for once no rollout runs: healthy (every member at the new config seen healthy by the flavor) or exist (the group has its size); implies --wait")
	commit.Flags().StringSliceVar(&mobyFlavors, "moby-flavor", []string{"flavor-moby"}, "Flavor plugin names whose relative spec paths are read from the group file's folder and sent inline")

	var watchFlag bool
	describe := &cobra.Command{
		Use: "describe ID", Short: "Show a group's members and rollout status", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, p, ctx, cancel, err := setup(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			id := spi.GroupID(args[0])
			d, err := c.DescribeGroup(ctx, id)
			if err != nil {
				return fmt.Errorf("describe group %s: %w", id, err)
			}
			var status *spi.RolloutStatus
			if st, err := c.UpdateStatus(ctx, id); err == nil { // InfraKit's plugin has no rollout status
				status = &st
			}
			if err := p.Describe(id, d, status); err != nil {
				return err
			}
			if watchFlag {
				return watch(ctx, c, id, cmd, cli.UntilExist)
			}
			return nil
		},
	}
	describe.Flags().BoolVarP(&watchFlag, "watch", "w", false, "then follow the rollout until it is done or paused")

	ls := &cobra.Command{
		Use: "ls", Short: "List the committed groups", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, p, ctx, cancel, err := setup(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			specs, err := c.InspectGroups(ctx)
			if err != nil {
				return fmt.Errorf("list groups: %w", err)
			}
			return p.List(cli.Summaries(specs))
		},
	}

	scale := &cobra.Command{
		Use: "scale ID N", Short: "Set a scaled group's size", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[1])
			if err != nil {
				return fmt.Errorf("size %q: not a number", args[1])
			}
			c, p, ctx, cancel, err := setup(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			id := spi.GroupID(args[0])
			if err := c.SetSize(ctx, id, n); err != nil {
				return fmt.Errorf("scale group %s to %d: %w", id, n, err)
			}
			return p.Message(id, fmt.Sprintf("Group %s scaled to %d", id, n))
		},
	}

	simple := func(use, short, done string, f func(cli.Client, context.Context, spi.GroupID) error) *cobra.Command {
		return &cobra.Command{
			Use: use + " ID", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, p, ctx, cancel, err := setup(cmd)
				if err != nil {
					return err
				}
				defer cancel()
				id := spi.GroupID(args[0])
				if err := f(c, ctx, id); err != nil {
					return fmt.Errorf("%s group %s: %w", use, id, err)
				}
				return p.Message(id, fmt.Sprintf(done, id))
			},
		}
	}
	g.AddCommand(commit, describe, ls, scale,
		simple("destroy", "Drain and destroy every member, and forget the group", "Destroy %s initiated", cli.Client.DestroyGroup),
		simple("free", "Stop managing the group; its members are left running", "Freed %s", cli.Client.FreeGroup),
		simple("pause", "Pause the group's rollout", "Rollout of %s paused", cli.Client.PauseUpdate),
		simple("resume", "Resume the group's paused rollout", "Rollout of %s resumed", cli.Client.ResumeUpdate),
		simple("rollback", "Roll the group back to its previous spec", "Rolling %s back", cli.Client.RollbackUpdate),
	)
	addCommand(g)
}

// groupAddress finds the group plugin's socket (or .listen URL) in the plugin directory.
func groupAddress(name string) (string, error) {
	dir, err := discovery.Dir()
	if err != nil {
		return "", err
	}
	lookup, _ := spi.PluginName(name).Split()
	addr, err := discovery.Find(dir, lookup)
	if err != nil {
		return "", fmt.Errorf("group plugin %q in %s: %w (is `mobykit plugin start group` running?)", name, dir, err)
	}
	return addr, nil
}

// groupStore is set by `plugin start`'s --store and etcd flags (group.AddStoreFlags).
var groupStore group.StoreOptions

// The built-in plugin "group": mobykit's controller on the socket "group", its state in
// $MOBYKIT_GROUP_DIR, $INFRAKIT_HOME/groups or ~/.mobykit/groups (or in etcd with --store
// etcd://..., under leader election), instance and flavor plugins found in the same plugin
// directory.
func init() {
	launcher.Register("group", func(ctx context.Context, o launcher.Options) ([]rpc.Plugin, error) {
		find := func(lookup string) (string, error) { return discovery.Find(o.Dir, lookup) }
		c, err := group.OpenService(ctx, group.OpenOptions{Store: groupStore, Address: o.Address, Find: find, Logger: o.Logger})
		if err != nil {
			return nil, err
		}
		go func() {
			<-ctx.Done()
			c.Stop()
		}()
		return []rpc.Plugin{rpc.Group(c)}, nil
	}, launcher.Describe("mobykit group controller: Group/0.1.1 with rolling updates, pause/resume/rollback, resume after restart"))
}
