package launcher

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/mobykit/mobykit/spi/discovery"
)

// Main is the whole main function of a standalone plugin binary (cmd/plugin-<name>):
//
//	func main() { launcher.Main("flavor-vanilla", factory, launcher.DefaultName("vanilla")) }
//
// It registers the kind, parses --name (socket name), --dir (plugin directory, default
// discovery.Dir()) and --verbose, serves until SIGINT or SIGTERM, and exits. Started by a
// go-plugin host (spi/goplugin, e.g. `mobykit plugin exec`), it serves over go-plugin's gRPC
// transport instead.
func Main(kind string, f Factory, opts ...RegisterOption) {
	Register(kind, f, opts...)
	if servedByGoPlugin() {
		slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
		if err := serveGoPlugin(kind); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", kind, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	fs := flag.NewFlagSet(kind, flag.ExitOnError)
	name := fs.String("name", "", "socket name in the plugin directory (default: the kind's default name)")
	dir := fs.String("dir", "", "plugin directory (default $INFRAKIT_PLUGINS_DIR, $INFRAKIT_HOME/plugins or ~/.infrakit/plugins)")
	verbose := fs.Bool("verbose", false, "log debug messages")
	_ = fs.Parse(os.Args[1:])
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	if err := mainRun(kind, *name, *dir); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", kind, err)
		os.Exit(1)
	}
}

func mainRun(kind, name, dir string) error {
	spec := kind
	if name != "" {
		spec += ":" + name
	}
	s, err := ParseSpec(spec)
	if err != nil {
		return err
	}
	if dir == "" {
		if dir, err = discovery.EnsureDir(); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, dir, []Spec{s})
}
