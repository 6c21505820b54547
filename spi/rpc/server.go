package rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"

	"github.com/mobykit/mobykit/spi"
)

// Plugin is one or more interfaces served on a socket, built by Instance, InstanceTypes,
// Flavor, FlavorTypes or Group. Several Plugins may share a socket as long as they serve
// different interfaces.
type Plugin struct {
	ifaces []*iface
}

// VendorInfo is reported as "Vendor" by GET /info/api.json.
type VendorInfo struct {
	Name    string
	Version string
	Sub     string
	URL     string
}

// Vendor is implemented by plugins that want to name themselves in /info/api.json.
type Vendor interface {
	VendorInfo() VendorInfo
}

// ExampleProperties is implemented by plugins that give an example of their Properties; it is
// used in /info/api.json's example requests.
type ExampleProperties interface {
	ExampleProperties() spi.Any
}

// iface is one interface (a JSON-RPC service) and the objects served under it.
type iface struct {
	spec    spi.InterfaceSpec
	objects []string // sorted; "." is the default object
	methods map[string]*method
	vendor  *VendorInfo
	example spi.Any
}

// method is one JSON-RPC method: how to make its params, and how to call it.
type method struct {
	newReq  func() any
	newResp func() any
	call    func(ctx context.Context, req any) (any, error)
	// example fills example Properties into a zero request, for /info/api.json.
	example func(req any, props spi.Any)
}

func handle[Req, Resp any](f func(ctx context.Context, req *Req) (*Resp, error)) *method {
	return &method{
		newReq:  func() any { return new(Req) },
		newResp: func() any { return new(Resp) },
		call: func(ctx context.Context, req any) (any, error) {
			resp, err := f(ctx, req.(*Req))
			if err != nil {
				return nil, err
			}
			if resp == nil { // never send "result":null (docs/infrakit/PROTOCOL.md §13.5)
				return nil, fmt.Errorf("rpc: implementation returned no result")
			}
			return resp, nil
		},
	}
}

// objectNames turns the keys of a subtype map into Hello object names ("" and "." are the
// default object ".") sorted as InfraKit's servers sort them.
func objectNames[T any](m map[string]T) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		if k == "" {
			k = "."
		}
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// normalizeTypes maps the default-object keys "." and "" to "".
func normalizeTypes[T any](m map[string]T) map[string]T {
	out := make(map[string]T, len(m))
	for k, v := range m {
		if k == "." {
			k = ""
		}
		out[k] = v
	}
	return out
}

func noPlugin(t string) error { return fmt.Errorf("no-plugin:%s", t) }

func vendorOf(v any) *VendorInfo {
	if x, ok := v.(Vendor); ok {
		vi := x.VendorInfo()
		return &vi
	}
	return nil
}

func exampleOf(v any) spi.Any {
	if x, ok := v.(ExampleProperties); ok {
		return x.ExampleProperties()
	}
	return nil
}

// MaxRequestBytes bounds a request body; a larger one is treated like an unparseable body.
const MaxRequestBytes = 64 << 20

// Handler serves JSON-RPC on POST / and the info document on GET /info/api.json.
type Handler struct {
	ifaces  []*iface
	methods map[string]*method // "Service.Method"
	hello   HelloResponse
	log     *slog.Logger
}

// NewHandler builds the HTTP handler serving plugins. Two plugins serving the same interface
// name is an error.
func NewHandler(plugins ...Plugin) (*Handler, error) {
	h := &Handler{methods: map[string]*method{}, hello: HelloResponse{Objects: map[string][]Object{}}, log: slog.Default()}
	h.methods["Handshake.Hello"] = handle(func(ctx context.Context, _ *HelloRequest) (*HelloResponse, error) {
		return &h.hello, nil
	})
	seen := map[string]bool{}
	for _, p := range plugins {
		for _, f := range p.ifaces {
			if seen[f.spec.Name] {
				return nil, fmt.Errorf("rpc: interface %s served twice on one socket", f.spec.Name)
			}
			seen[f.spec.Name] = true
			h.ifaces = append(h.ifaces, f)
			objs := make([]Object, 0, len(f.objects))
			for _, n := range f.objects {
				objs = append(objs, Object{Name: n})
			}
			h.hello.Objects[f.spec.String()] = objs
			for name, m := range f.methods {
				h.methods[f.spec.Name+"."+name] = m
			}
		}
	}
	if len(h.ifaces) == 0 {
		return nil, fmt.Errorf("rpc: no plugin to serve")
	}
	return h, nil
}

// Interfaces returns the interface specs served, in registration order.
func (h *Handler) Interfaces() []spi.InterfaceSpec {
	out := make([]spi.InterfaceSpec, len(h.ifaces))
	for i, f := range h.ifaces {
		out[i] = f.spec
	}
	return out
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/":
		h.serveRPC(w, r)
	case "/info/api.json":
		if r.Method != http.MethodGet {
			writeText(w, http.StatusMethodNotAllowed, "rpc: GET method required, received "+r.Method)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(h.info())
	default:
		http.NotFound(w, r)
	}
}

func writeText(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprint(w, msg)
}

// serveRPC follows gorilla/rpc v2's Server.ServeHTTP with the json2 codec step by step, since
// InfraKit's observable behaviour (status codes, messages, which error wins) comes from it.
func (h *Handler) serveRPC(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeText(w, http.StatusMethodNotAllowed, "rpc: POST method required, received "+r.Method)
		return
	}
	ct := r.Header.Get("Content-Type")
	if i := strings.Index(ct, ";"); i != -1 {
		ct = ct[:i]
	}
	if ct != "" && strings.ToLower(ct) != "application/json" {
		writeText(w, http.StatusUnsupportedMediaType, "rpc: unrecognized Content-Type: "+ct)
		return
	}

	req := new(serverRequest)
	var rerr *Error
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxRequestBytes)).Decode(req); err != nil {
		rerr = &Error{Code: CodeParse, Message: err.Error(), Data: mustMarshal(req)}
	}
	if req.Version != "2.0" {
		rerr = &Error{Code: CodeInvalidRequest, Message: "jsonrpc must be 2.0", Data: mustMarshal(req)}
	}
	if rerr != nil {
		h.writeResponse(w, req, nil, rerr)
		return
	}
	m, err := h.lookup(req.Method)
	if err != nil {
		h.writeResponse(w, req, nil, errorFor(err))
		return
	}
	args := m.newReq()
	if req.Params != nil {
		if err := json.Unmarshal(*req.Params, args); err != nil {
			// Not an object: try a one-element array wrapping the object.
			wrapped := [1]any{args}
			if err := json.Unmarshal(*req.Params, &wrapped); err != nil {
				h.writeResponse(w, req, nil, &Error{Code: CodeInvalidRequest, Message: err.Error(), Data: *req.Params})
				return
			}
		}
	}
	result, err := m.call(r.Context(), args)
	if err != nil {
		h.log.Debug("rpc call failed", "method", req.Method, "err", err)
		h.writeResponse(w, req, nil, errorFor(err))
		return
	}
	h.writeResponse(w, req, result, nil)
}

func (h *Handler) lookup(name string) (*method, error) {
	parts := strings.Split(name, ".")
	if len(parts) != 2 {
		return nil, fmt.Errorf("rpc: service/method request ill-formed: %q", name)
	}
	if m, ok := h.methods[name]; ok {
		return m, nil
	}
	service := parts[0]
	if service == "Handshake" {
		return nil, fmt.Errorf("rpc: can't find method %q", name)
	}
	for _, f := range h.ifaces {
		if f.spec.Name == service {
			return nil, fmt.Errorf("rpc: can't find method %q", name)
		}
	}
	return nil, fmt.Errorf("rpc: can't find service %q", name)
}

// writeResponse writes a reply; a request without id is a notification and gets an empty 200.
func (h *Handler) writeResponse(w http.ResponseWriter, req *serverRequest, result any, rerr *Error) {
	if req.Id == nil {
		return
	}
	b, err := json.Marshal(&serverResponse{Version: "2.0", Result: result, Error: rerr, Id: req.Id})
	if err != nil {
		h.log.Error("rpc: encoding response", "method", req.Method, "err", err)
		b, _ = json.Marshal(&serverResponse{Version: "2.0", Id: req.Id,
			Error: &Error{Code: CodeServer, Message: fmt.Sprintf("rpc: encoding result of %s: %v", req.Method, err)}})
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write(append(b, '\n'))
}

func mustMarshal(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}

// Methods lists the "Service.Method" names served, sorted (Handshake.Hello included).
func (h *Handler) Methods() []string {
	out := make([]string, 0, len(h.methods))
	for n := range h.methods {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Call dispatches one call without HTTP, for other transports (spi/goplugin): params are
// decoded as the JSON-RPC server decodes them (an object, or a one-element array), and the
// result is the response struct to encode. Errors are those the JSON-RPC server would send.
func (h *Handler) Call(ctx context.Context, name string, params json.RawMessage) (any, error) {
	m, err := h.lookup(name)
	if err != nil {
		return nil, err
	}
	args := m.newReq()
	if len(params) > 0 && string(params) != "null" {
		if err := json.Unmarshal(params, args); err != nil {
			wrapped := [1]any{args}
			if err := json.Unmarshal(params, &wrapped); err != nil {
				return nil, &Error{Code: CodeInvalidRequest, Message: err.Error(), Data: params}
			}
		}
	}
	return m.call(ctx, args)
}
