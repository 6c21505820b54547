// Command plugin-instance-file is the instance-file plugin as a standalone binary: instances
// recorded as JSON files, served on <plugin dir>/file (or --name).
package main

import (
	"context"

	"github.com/mobykit/mobykit/launcher"
	"github.com/mobykit/mobykit/launcher/instancefile"
	"github.com/mobykit/mobykit/spi/rpc"
)

func main() {
	launcher.Main("instance-file", func(ctx context.Context, o launcher.Options) ([]rpc.Plugin, error) {
		p, err := instancefile.New(o.StateDir)
		if err != nil {
			return nil, err
		}
		return []rpc.Plugin{rpc.Instance(p)}, nil
	}, launcher.DefaultName("file"))
}
