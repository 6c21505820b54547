package group

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/mobykit/mobykit/group/store"
)

// Open builds the controller that the built-in "group" plugin runs: options from the
// environment (OptionsFromEnv), the file store in dir (store.DefaultDir() when dir is ""), and
// plugins found by find (spi/discovery's lookup of a socket name), logging to logger (nil:
// slog.Default()). The stored groups are loaded and supervised before it returns; call Stop
// when done.
func Open(ctx context.Context, dir string, find func(lookup string) (string, error), logger *slog.Logger) (*Controller, error) {
	opts, err := OptionsFromEnv()
	if err != nil {
		return nil, err
	}
	opts.Logger = logger
	if dir == "" {
		if dir, err = store.DefaultDir(); err != nil {
			return nil, err
		}
	}
	st, err := store.NewFileStore(dir)
	if err != nil {
		return nil, err
	}
	c := New(RPCPlugins{Find: find}, st, opts)
	if err := c.Start(ctx); err != nil {
		c.Stop()
		return nil, fmt.Errorf("group controller: %w", err)
	}
	c.log.Info("group controller started", "store", dir, "poll", c.opts.PollInterval, "groups", len(c.groups))
	return c, nil
}
