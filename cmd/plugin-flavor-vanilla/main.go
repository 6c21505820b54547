// Command plugin-flavor-vanilla is InfraKit's vanilla flavor as a standalone binary, served on
// <plugin dir>/vanilla (or --name).
package main

import (
	"context"

	"github.com/mobykit/mobykit/launcher"
	"github.com/mobykit/mobykit/launcher/vanilla"
	"github.com/mobykit/mobykit/spi/rpc"
)

func main() {
	launcher.Main("flavor-vanilla", func(ctx context.Context, o launcher.Options) ([]rpc.Plugin, error) {
		return []rpc.Plugin{rpc.Flavor(vanilla.Flavor{})}, nil
	}, launcher.DefaultName("vanilla"))
}
