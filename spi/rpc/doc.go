// Package rpc is InfraKit's plugin wire protocol for mobykit: JSON-RPC 2.0 (gorilla/rpc v2
// json2 semantics) over HTTP/1.1 on unix sockets, both server and client, exactly as described
// in docs/infrakit/PROTOCOL.md §1-§8 and checked by replaying its vectors.
//
// Server side: wrap an implementation with Instance, InstanceTypes, Flavor, FlavorTypes or Group
// and hand the resulting Plugins to Serve (or NewHandler for an http.Handler of your own):
//
//	err := rpc.Serve(ctx, "/root/.infrakit/plugins/instance-qemu", rpc.Instance(impl))
//
// Every call gets HTTP 200 with a JSON-RPC body (error code -32000 for implementation errors,
// -32600 for bad envelopes or params), "Handshake.Hello" lists the served objects and
// GET /info/api.json describes the interfaces.
//
// Client side: NewInstanceClient, NewFlavorClient and NewGroupClient return spi implementations
// that send InfraKit's exact request bodies, do Handshake.Hello once per client object with
// InfraKit's version check, and honour INFRAKIT_CLIENT_TIMEOUT (default 15s). Errors returned
// by the remote implementation come back as *Error whose Error() is the remote message verbatim.
package rpc
