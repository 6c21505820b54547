// Command mobykit builds immutable LinuxKit-style images and runs the InfraKit plugins that boot
// them as fleets. This package is wiring only: each subcommand lives in its own file, registers
// itself with addCommand from an init function, and calls into the packages that do the work.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
)

var root = &cobra.Command{
	Use:           "mobykit",
	Short:         "Build immutable LinuxKit-style images and roll fleets onto them",
	SilenceUsage:  true,
	SilenceErrors: true,
}

var verbose bool

// addCommand registers a subcommand; called from the init functions of this package's files.
func addCommand(c *cobra.Command) { root.AddCommand(c) }

func main() {
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "log debug messages to stderr")
	root.PersistentPreRun = func(*cobra.Command, []string) {
		level := slog.LevelInfo
		if verbose {
			level = slog.LevelDebug
		}
		slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	}
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "mobykit:", err)
		os.Exit(1)
	}
}
