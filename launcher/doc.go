// Package launcher starts, lists and stops mobykit's InfraKit plugins.
//
// Plugins built into the mobykit binary register a Factory under a kind name from an init
// function in their own file, so that adding one never edits this package:
//
//	func init() {
//		launcher.Register("instance-qemu", func(ctx context.Context, o launcher.Options) ([]rpc.Plugin, error) {
//			p, err := instanceqemu.New(o.StateDir)
//			if err != nil {
//				return nil, err
//			}
//			return []rpc.Plugin{rpc.Instance(p)}, nil
//		})
//	}
//
// Run serves the requested plugins in this process, each on its socket in the plugin directory
// (spi/discovery) with its pid file, until its context ends; Detach starts each one as a
// separate background process; Stop ends one by its pid file; Status lists what is there.
package launcher
