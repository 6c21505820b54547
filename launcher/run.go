package launcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/mobykit/mobykit/spi/discovery"
	"github.com/mobykit/mobykit/spi/rpc"
)

// stateDir is $INFRAKIT_HOME/state/<name>, else ~/.infrakit/state/<name>.
func stateDir(name string) string {
	home := os.Getenv("INFRAKIT_HOME")
	if home == "" {
		if h, err := os.UserHomeDir(); err == nil {
			home = filepath.Join(h, ".infrakit")
		} else {
			home = filepath.Join(os.TempDir(), "infrakit")
		}
	}
	return filepath.Join(home, "state", name)
}

// Running is a plugin served by this process.
type Running struct {
	Spec   Spec
	Claim  *discovery.Claim
	Server *rpc.Server
	cancel context.CancelFunc
}

// Stop ends the plugin's context, closes its server and releases its files.
func (r *Running) Stop() error {
	r.cancel()
	err := r.Server.Close()
	if rerr := r.Claim.Release(); err == nil {
		err = rerr
	}
	return err
}

// Start claims spec's name in dir, builds its plugins and serves them. The plugin runs until
// Stop (or until ctx ends, which its background work sees; the server itself stops on Stop).
func Start(ctx context.Context, dir string, spec Spec) (*Running, error) {
	reg, err := lookup(spec.Kind)
	if err != nil {
		return nil, err
	}
	claim, err := discovery.Take(dir, spec.Name, os.Getpid())
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	opts := Options{
		Kind: spec.Kind, Name: spec.Name, Dir: dir, StateDir: stateDir(spec.Name),
		Logger: slog.Default().With("plugin", spec.Name), Address: claim.Socket,
	}
	if spec.Listen != "" {
		opts.Address = "tcp://" + spec.Listen
	}
	plugins, err := reg.factory(pctx, opts)
	if err != nil {
		cancel()
		claim.Release()
		return nil, fmt.Errorf("launcher: starting %s: %w", spec, err)
	}
	srv, err := serve(claim, spec, plugins)
	if err != nil {
		cancel()
		claim.Release()
		return nil, fmt.Errorf("launcher: serving %s: %w", spec, err)
	}
	opts.Logger.Info("plugin listening", "kind", spec.Kind, "address", srv.Addr(), "interfaces", srv.Handler.Interfaces())
	return &Running{Spec: spec, Claim: claim, Server: srv, cancel: cancel}, nil
}

// Run starts every spec in dir and serves them until ctx ends, then stops them all and
// removes their sockets and pid files. If one fails to start, those already started are
// stopped and the error is returned.
func Run(ctx context.Context, dir string, specs []Spec) error {
	if len(specs) == 0 {
		return errors.New("launcher: no plugin to start")
	}
	var running []*Running
	stopAll := func() error {
		var errs []error
		for i := len(running) - 1; i >= 0; i-- {
			if err := running[i].Stop(); err != nil {
				errs = append(errs, fmt.Errorf("stopping %s: %w", running[i].Spec, err))
			}
		}
		return errors.Join(errs...)
	}
	for _, s := range specs {
		r, err := Start(ctx, dir, s)
		if err != nil {
			return errors.Join(err, stopAll())
		}
		running = append(running, r)
	}
	<-ctx.Done()
	slog.Info("stopping plugins", "count", len(running))
	return stopAll()
}

func serve(claim *discovery.Claim, spec Spec, plugins []rpc.Plugin) (*rpc.Server, error) {
	if spec.Listen == "" {
		return rpc.Start(claim.Socket, plugins...)
	}
	h, err := rpc.NewHandler(plugins...)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", spec.Listen)
	if err != nil {
		return nil, err
	}
	if err := claim.WriteListen("tcp://" + ln.Addr().String()); err != nil {
		ln.Close()
		return nil, err
	}
	return rpc.StartListener(ln, h), nil
}
