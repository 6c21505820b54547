package group

import (
	"fmt"
	"log/slog"

	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/rpc"
)

// RPCPlugins resolves plugin names to JSON-RPC clients on unix sockets (or tcp:// addresses).
// Find maps a lookup name (the part of "lookup/subtype" before the slash) to its address; in
// production it is spi/discovery's lookup in the plugin directory.
type RPCPlugins struct {
	Find func(lookup string) (address string, err error)
}

var _ Plugins = RPCPlugins{}

func (p RPCPlugins) find(name spi.PluginName) (address, subtype string, err error) {
	lookup, subtype := name.Split()
	address, err = p.Find(lookup)
	if err != nil {
		slog.Debug("plugin lookup", "plugin", name, "err", err)
		// InfraKit's text: users see "Failed to find Flavor plugin 'x':plugin not found:x".
		return "", "", fmt.Errorf("plugin not found:%s", lookup)
	}
	return address, subtype, nil
}

// Instance returns a client of the instance plugin name.
func (p RPCPlugins) Instance(name spi.PluginName) (spi.Instance, error) {
	address, subtype, err := p.find(name)
	if err != nil {
		return nil, err
	}
	return rpc.NewInstanceClient(address, subtype), nil
}

// Flavor returns a client of the flavor plugin name.
func (p RPCPlugins) Flavor(name spi.PluginName) (spi.Flavor, error) {
	address, subtype, err := p.find(name)
	if err != nil {
		return nil, err
	}
	return rpc.NewFlavorClient(address, subtype), nil
}
