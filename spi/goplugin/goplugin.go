package goplugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/rpc"
)

// Handshake is checked by go-plugin on both sides before anything else: a binary that is not
// a mobykit plugin (no cookie) or speaks another protocol version is refused.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "MOBYKIT_PLUGIN",
	MagicCookieValue: "infrakit-spi-over-grpc",
}

// pluginName is the one go-plugin plugin a mobykit executable serves.
const pluginName = "spi"

// servicePrefix prefixes the gRPC service names: "Instance" becomes "mobykit.spi.Instance".
const servicePrefix = "mobykit.spi."

// grpcPlugin is go-plugin's glue: its server side registers the services, its client side
// returns a Conn.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	plugins []rpc.Plugin
}

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	h, err := rpc.NewHandler(p.plugins...)
	if err != nil {
		return err
	}
	Register(s, h)
	return nil
}

func (p *grpcPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return &Conn{conn: conn}, nil
}

// Register registers h's methods on s as hand-written gRPC services, one per JSON-RPC service.
func Register(s grpc.ServiceRegistrar, h *rpc.Handler) {
	byService := map[string][]string{}
	for _, m := range h.Methods() {
		svc, name, _ := strings.Cut(m, ".")
		byService[svc] = append(byService[svc], name)
	}
	services := make([]string, 0, len(byService))
	for s := range byService {
		services = append(services, s)
	}
	sort.Strings(services)
	for _, svc := range services {
		desc := grpc.ServiceDesc{ServiceName: servicePrefix + svc, HandlerType: (*any)(nil)}
		for _, name := range byService[svc] {
			full := svc + "." + name
			desc.Methods = append(desc.Methods, grpc.MethodDesc{
				MethodName: name,
				Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
					var params json.RawMessage
					if err := dec(&params); err != nil {
						return nil, err
					}
					call := func(ctx context.Context, _ any) (any, error) {
						res, err := srv.(*rpc.Handler).Call(ctx, full, params)
						if err != nil {
							return nil, toStatus(err)
						}
						return res, nil
					}
					if icpt == nil {
						return call(ctx, nil)
					}
					return icpt(ctx, params, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + servicePrefix + svc + "/" + name}, call)
				},
			})
		}
		s.RegisterService(&desc, h)
	}
}

// toStatus carries an error's message (verbatim) and its JSON-RPC code over gRPC.
func toStatus(err error) error {
	code := codes.Unknown
	var e *rpc.Error
	if errors.As(err, &e) && e.Code == rpc.CodeInvalidRequest {
		code = codes.InvalidArgument
	}
	if strings.HasPrefix(err.Error(), "rpc: can't find") {
		code = codes.Unimplemented
	}
	return status.Error(code, err.Error())
}

// Conn is a connection to a plugin executable. It implements rpc.Caller, so spi/rpc's
// clients (rpc.NewInstanceClientFrom...) work over it unchanged.
type Conn struct {
	conn *grpc.ClientConn
}

var _ rpc.Caller = (*Conn)(nil)

// NewConn wraps a gRPC connection to a server where Register was called.
func NewConn(conn *grpc.ClientConn) *Conn { return &Conn{conn: conn} }

// Call invokes "Service.Method". Errors of the remote implementation come back as *rpc.Error
// with the remote message verbatim.
func (c *Conn) Call(ctx context.Context, method string, params, result any) error {
	svc, name, ok := strings.Cut(method, ".")
	if !ok {
		return fmt.Errorf("goplugin: ill-formed method %q", method)
	}
	err := c.conn.Invoke(ctx, "/"+servicePrefix+svc+"/"+name, params, result, grpc.CallContentSubtype(codecName))
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("goplugin: %s: %w", method, err)
	}
	switch st.Code() {
	case codes.Unknown:
		return &rpc.Error{Code: rpc.CodeServer, Message: st.Message()}
	case codes.InvalidArgument:
		return &rpc.Error{Code: rpc.CodeInvalidRequest, Message: st.Message()}
	case codes.Unimplemented:
		if strings.HasPrefix(st.Message(), "unknown service") {
			// gRPC's own answer for a service the plugin does not register.
			return &rpc.Error{Code: rpc.CodeServer, Message: fmt.Sprintf("rpc: can't find service %q", method)}
		}
		return &rpc.Error{Code: rpc.CodeServer, Message: st.Message()}
	}
	return fmt.Errorf("goplugin: %s: %w", method, err)
}

// Hello asks the plugin which interfaces and objects it serves.
func (c *Conn) Hello(ctx context.Context) (rpc.HelloResponse, error) {
	var h rpc.HelloResponse
	err := c.Call(ctx, "Handshake.Hello", rpc.HelloRequest{}, &h)
	return h, err
}

// PluginMap is the go-plugin plugin set of a mobykit plugin (served plugins empty on the host).
func PluginMap(plugins ...rpc.Plugin) plugin.PluginSet {
	return plugin.PluginSet{pluginName: &grpcPlugin{plugins: plugins}}
}

// Serve is the main function of a plugin executable: it serves plugins over go-plugin's gRPC
// transport until the host goes away. Started by hand (without the host's magic cookie), it
// prints go-plugin's message saying it is a plugin and exits.
func Serve(plugins ...rpc.Plugin) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         PluginMap(plugins...),
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr, JSONFormat: true}),
	})
}

// Client is a running plugin executable.
type Client struct {
	pc   *plugin.Client
	conn *Conn
}

// Open starts cmd as a plugin executable, does go-plugin's handshake and connects over gRPC.
func Open(cmd *exec.Cmd) (*Client, error) { return open(cmd, Handshake) }

func open(cmd *exec.Cmd, hs plugin.HandshakeConfig) (*Client, error) {
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  hs,
		Plugins:          PluginMap(),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "goplugin", Level: hclog.Warn, Output: os.Stderr}),
	})
	cp, err := pc.Client()
	if err != nil {
		pc.Kill()
		return nil, fmt.Errorf("goplugin: starting %s: %w", cmd.Path, err)
	}
	raw, err := cp.Dispense(pluginName)
	if err != nil {
		pc.Kill()
		return nil, fmt.Errorf("goplugin: %s: %w", cmd.Path, err)
	}
	return &Client{pc: pc, conn: raw.(*Conn)}, nil
}

// Conn is the connection, an rpc.Caller.
func (c *Client) Conn() *Conn { return c.conn }

// Close stops the plugin process.
func (c *Client) Close() { c.pc.Kill() }

// Exited reports whether the plugin process has exited.
func (c *Client) Exited() bool { return c.pc.Exited() }

func (c *Client) check(ctx context.Context, want spi.InterfaceSpec) error {
	h, err := c.conn.Hello(ctx)
	if err != nil {
		return err
	}
	return rpc.CheckInterface(h, want)
}

// Instance returns the plugin's Instance object of subtype ("" the default), after checking
// that the plugin serves Instance/0.6.1.
func (c *Client) Instance(ctx context.Context, subtype string) (spi.Instance, error) {
	if err := c.check(ctx, spi.InstanceInterface); err != nil {
		return nil, err
	}
	return rpc.NewInstanceClientFrom(c.conn, subtype), nil
}

// Flavor returns the plugin's Flavor object of subtype.
func (c *Client) Flavor(ctx context.Context, subtype string) (spi.Flavor, error) {
	if err := c.check(ctx, spi.FlavorInterface); err != nil {
		return nil, err
	}
	return rpc.NewFlavorClientFrom(c.conn, subtype), nil
}

// Group returns the plugin's Group (with the rollout extension); name is sent as "Name".
func (c *Client) Group(ctx context.Context, name string) (*rpc.GroupClient, error) {
	if err := c.check(ctx, spi.GroupInterface); err != nil {
		return nil, err
	}
	return rpc.NewGroupClientFrom(c.conn, name), nil
}

// Plugins returns everything the executable serves (Instance and Flavor objects with their
// subtypes, Group) as rpc Plugins proxying to it, ready for rpc.Serve or a launcher Factory:
// this is how a go-plugin executable joins the unix-socket world.
func (c *Client) Plugins(ctx context.Context) ([]rpc.Plugin, error) {
	h, err := c.conn.Hello(ctx)
	if err != nil {
		return nil, err
	}
	var out []rpc.Plugin
	for key, objs := range h.Objects {
		switch key {
		case spi.InstanceInterface.String():
			m := map[string]spi.Instance{}
			for _, o := range objs {
				t := o.Name
				if t == "." {
					t = ""
				}
				m[o.Name] = rpc.NewInstanceClientFrom(c.conn, t)
			}
			out = append(out, rpc.InstanceTypes(m))
		case spi.FlavorInterface.String():
			m := map[string]spi.Flavor{}
			for _, o := range objs {
				t := o.Name
				if t == "." {
					t = ""
				}
				m[o.Name] = rpc.NewFlavorClientFrom(c.conn, t)
			}
			out = append(out, rpc.FlavorTypes(m))
		case spi.GroupInterface.String():
			out = append(out, rpc.Group(rpc.NewGroupClientFrom(c.conn, "")))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("goplugin: the plugin serves no interface mobykit knows (%v)", keys(h.Objects))
	}
	return out, nil
}

func keys(m map[string][]rpc.Object) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
