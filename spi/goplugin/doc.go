// Package goplugin is mobykit's second plugin transport: a plugin built as a separate
// executable, started and loaded through HashiCorp go-plugin over gRPC, with go-plugin's
// handshake (protocol version and magic cookie) before any call.
//
// The gRPC services are written by hand, without protoc: each InfraKit interface is a gRPC
// service ("mobykit.spi.Instance", "mobykit.spi.Flavor", "mobykit.spi.Group",
// "mobykit.spi.Handshake", ...) whose unary methods carry the very request and response
// structs of spi/rpc, encoded with a JSON codec. The plugin side dispatches through
// rpc.Handler, so both transports run the same code and report the same errors.
//
// Plugin executable:
//
//	func main() { goplugin.Serve(rpc.Instance(myInstance)) }
//
// Host:
//
//	c, err := goplugin.Open(exec.Command("/path/to/plugin"))
//	defer c.Close()
//	inst, err := c.Instance("")          // spi.Instance, after the Hello version check
//	plugins, err := c.Plugins(ctx)       // the same objects, to re-serve on a unix socket
package goplugin
