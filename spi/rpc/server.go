package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

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

// MaxRequestBytes is the default bound of one request body (Limits.MaxBody). InfraKit's
// requests are a few KiB (the largest, a CommitGroup, carries one group spec).
const MaxRequestBytes = 4 << 20

// Default limits of a Handler (see Limits).
const (
	DefaultInFlightBytes = 32 << 20
	DefaultReadTimeout   = 30 * time.Second
	DefaultWriteTimeout  = 30 * time.Second
)

// Limits bound what requests may cost a server, whatever the client sends. They bound reading
// a request and writing its reply, never the method call in between: a call such as a
// CommitGroup that waits for a rollout runs as long as it needs (its client's timeout ends it).
type Limits struct {
	// MaxBody is the largest request body accepted (default MaxRequestBytes). A larger one is
	// refused with HTTP 413 before it is read.
	MaxBody int64
	// InFlight is how many body bytes all requests being read and decoded may hold at once
	// (default DefaultInFlightBytes). A request reserves its Content-Length (MaxBody when the
	// length is not given) before reading, and waits for room up to ReadTimeout; then HTTP 503.
	InFlight int64
	// ReadTimeout bounds waiting for room and reading one request body (default
	// DefaultReadTimeout); a body not received in time gets HTTP 408. Headers are bounded by the
	// server's ReadHeaderTimeout.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a reply once the call has returned (default
	// DefaultWriteTimeout), so a client that stops reading cannot hold the connection.
	WriteTimeout time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxBody <= 0 {
		l.MaxBody = MaxRequestBytes
	}
	if l.InFlight <= 0 {
		l.InFlight = DefaultInFlightBytes
	}
	if l.InFlight < l.MaxBody {
		l.InFlight = l.MaxBody
	}
	if l.ReadTimeout <= 0 {
		l.ReadTimeout = DefaultReadTimeout
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = DefaultWriteTimeout
	}
	return l
}

// Handler serves JSON-RPC on POST / and the info document on GET /info/api.json.
type Handler struct {
	ifaces  []*iface
	methods map[string]*method // "Service.Method"
	hello   HelloResponse
	log     *slog.Logger

	limits   Limits
	budget   *semaphore.Weighted
	inFlight atomic.Int64 // body bytes reserved, for tests
	waiting  atomic.Int64 // requests waiting for room in the budget, for tests
}

// SetLimits replaces the handler's limits (zero fields take their defaults). Call it before
// serving.
func (h *Handler) SetLimits(l Limits) {
	h.limits = l.withDefaults()
	h.budget = semaphore.NewWeighted(h.limits.InFlight)
}

// Limits returns the limits in force.
func (h *Handler) Limits() Limits { return h.limits }

// NewHandler builds the HTTP handler serving plugins. Two plugins serving the same interface
// name is an error.
func NewHandler(plugins ...Plugin) (*Handler, error) {
	h := &Handler{methods: map[string]*method{}, hello: HelloResponse{Objects: map[string][]Object{}}, log: slog.Default()}
	h.SetLimits(Limits{})
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
		h.writeDeadline(w)
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

	body, release, ok := h.readBody(w, r)
	if !ok {
		return
	}
	req, m, args, ok := h.decode(w, body)
	body = nil
	release()
	if !ok {
		return
	}
	result, err := m.call(r.Context(), args)
	if err != nil {
		h.log.Debug("rpc call failed", "method", req.Method, "err", err)
		h.writeResponse(w, req, nil, errorFor(err))
		return
	}
	h.writeResponse(w, req, result, nil)
}

// readBody reads the request body within the limits: at most MaxBody bytes, within
// ReadTimeout, after reserving its size in the in-flight budget. release gives the reservation
// back. When ok is false, the error reply has been written.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) (body []byte, release func(), ok bool) {
	lim := h.limits
	if r.ContentLength > lim.MaxBody {
		h.refuse(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("rpc: request body of %d bytes is larger than the limit of %d bytes", r.ContentLength, lim.MaxBody))
		return nil, nil, false
	}
	weight := r.ContentLength
	if weight < 0 {
		weight = lim.MaxBody
	}
	deadline := time.Now().Add(lim.ReadTimeout)
	rc := http.NewResponseController(w)
	// The deadline covers this body only; it is lifted before the call runs. A writer that
	// cannot set one (a test recorder, another transport) reads from memory anyway.
	_ = rc.SetReadDeadline(deadline)
	ctx, cancel := context.WithDeadline(r.Context(), deadline)
	h.waiting.Add(1)
	err := h.budget.Acquire(ctx, weight)
	h.waiting.Add(-1)
	cancel()
	if err != nil {
		h.refuse(w, http.StatusServiceUnavailable, fmt.Sprintf("rpc: server busy: requests in flight hold the %d-byte budget; %d more bytes did not fit within %s", lim.InFlight, weight, lim.ReadTimeout))
		return nil, nil, false
	}
	h.inFlight.Add(weight)
	release = func() {
		h.inFlight.Add(-weight)
		h.budget.Release(weight)
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err = buf.ReadFrom(http.MaxBytesReader(w, r.Body, lim.MaxBody))
	if err != nil {
		release()
		var tooBig *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &tooBig):
			h.refuse(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("rpc: request body larger than the limit of %d bytes", lim.MaxBody))
		case errors.As(err, &ne) && ne.Timeout():
			h.refuse(w, http.StatusRequestTimeout, fmt.Sprintf("rpc: request body not received within %s", lim.ReadTimeout))
		default:
			h.refuse(w, http.StatusBadRequest, "rpc: reading request body: "+err.Error())
		}
		return nil, nil, false
	}
	_ = rc.SetReadDeadline(time.Time{})
	return buf.Bytes(), release, true
}

// refuse answers a request whose body was not (completely) read, and closes the connection:
// what is left of the body must not be read as the next request.
func (h *Handler) refuse(w http.ResponseWriter, status int, msg string) {
	h.log.Warn("rpc: request refused", "status", status, "reason", msg)
	w.Header().Set("Connection", "close")
	h.writeDeadline(w)
	writeText(w, status, msg)
}

// writeDeadline bounds writing the reply from now on.
func (h *Handler) writeDeadline(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(h.limits.WriteTimeout))
}

// decode parses the JSON-RPC envelope and the params as gorilla's json2 codec does. When ok
// is false, the reply has been written.
func (h *Handler) decode(w http.ResponseWriter, body []byte) (req *serverRequest, m *method, args any, ok bool) {
	req = new(serverRequest)
	var rerr *Error
	// A decoder, not json.Unmarshal: gorilla reads the first value and ignores what follows.
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(req); err != nil {
		rerr = &Error{Code: CodeParse, Message: err.Error(), Data: mustMarshal(req)}
	}
	if req.Version != "2.0" {
		rerr = &Error{Code: CodeInvalidRequest, Message: "jsonrpc must be 2.0", Data: mustMarshal(req)}
	}
	if rerr != nil {
		h.writeResponse(w, req, nil, rerr)
		return nil, nil, nil, false
	}
	m, err := h.lookup(req.Method)
	if err != nil {
		h.writeResponse(w, req, nil, errorFor(err))
		return nil, nil, nil, false
	}
	args = m.newReq()
	if req.Params != nil {
		if err := json.Unmarshal(*req.Params, args); err != nil {
			// Not an object: try a one-element array wrapping the object.
			wrapped := [1]any{args}
			if err := json.Unmarshal(*req.Params, &wrapped); err != nil {
				h.writeResponse(w, req, nil, &Error{Code: CodeInvalidRequest, Message: err.Error(), Data: *req.Params})
				return nil, nil, nil, false
			}
		}
		req.Params = nil
	}
	return req, m, args, true
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
	h.writeDeadline(w)
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
