package launcher

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"

	"github.com/mobykit/mobykit/spi/discovery"
	"github.com/mobykit/mobykit/spi/goplugin"
	"github.com/mobykit/mobykit/spi/rpc"
)

// RunExecutable loads a plugin executable through go-plugin (spi/goplugin) and serves what it
// offers on the socket name in dir until ctx ends; then the executable is stopped. It is how a
// plugin built as a separate program joins the unix-socket world the group controller uses.
func RunExecutable(ctx context.Context, dir, name string, argv []string) error {
	if err := validName(name); err != nil {
		return fmt.Errorf("launcher: %w", err)
	}
	if len(argv) == 0 {
		return fmt.Errorf("launcher: no executable given for %s", name)
	}
	claim, err := discovery.Take(dir, name, os.Getpid())
	if err != nil {
		return err
	}
	defer claim.Release()
	c, err := goplugin.Open(exec.Command(argv[0], argv[1:]...))
	if err != nil {
		return fmt.Errorf("launcher: %s: %w", name, err)
	}
	defer c.Close()
	plugins, err := c.Plugins(ctx)
	if err != nil {
		return fmt.Errorf("launcher: %s: %w", name, err)
	}
	srv, err := rpc.Start(claim.Socket, plugins...)
	if err != nil {
		return fmt.Errorf("launcher: serving %s: %w", name, err)
	}
	slog.Info("plugin executable listening", "plugin", name, "executable", argv[0], "socket", claim.Socket, "interfaces", srv.Handler.Interfaces())
	<-ctx.Done()
	return srv.Close()
}

// servedByGoPlugin reports whether this process was started by a go-plugin host.
func servedByGoPlugin() bool {
	return os.Getenv(goplugin.Handshake.MagicCookieKey) == goplugin.Handshake.MagicCookieValue
}

// serveGoPlugin serves kind over go-plugin (stdout handshake) instead of a socket.
func serveGoPlugin(kind string) error {
	reg, err := lookup(kind)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	plugins, err := reg.factory(ctx, Options{Kind: kind, Name: reg.socket, StateDir: stateDir(reg.socket), Logger: slog.Default().With("plugin", kind)})
	if err != nil {
		return err
	}
	goplugin.Serve(plugins...)
	return nil
}
