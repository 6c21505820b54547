package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mobykit/mobykit/spi"
)

// Caller makes one call: method is "Service.Method", params the request struct, result a
// pointer to the response struct. Errors from the remote implementation are *Error.
type Caller interface {
	Call(ctx context.Context, method string, params, result any) error
}

// MaxResponseBytes bounds a reply the client reads (after any gzip decoding), so a plugin
// cannot make its caller hold an unbounded body. A DescribeInstances of a thousand members is
// a few MiB.
const MaxResponseBytes = 16 << 20

// DefaultTimeout is the per-call timeout when INFRAKIT_CLIENT_TIMEOUT is not set.
const DefaultTimeout = 15 * time.Second

// ClientTimeout returns the per-call timeout: INFRAKIT_CLIENT_TIMEOUT as a Go duration ("30s")
// or a number of seconds, else 15s.
func ClientTimeout() time.Duration {
	v := strings.TrimSpace(os.Getenv("INFRAKIT_CLIENT_TIMEOUT"))
	if v == "" {
		return DefaultTimeout
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return d
	}
	if n, err := strconv.ParseFloat(v, 64); err == nil && n > 0 {
		return time.Duration(n * float64(time.Second))
	}
	slog.Warn("ignoring invalid INFRAKIT_CLIENT_TIMEOUT", "value", v, "default", DefaultTimeout)
	return DefaultTimeout
}

// Client is a JSON-RPC client of one plugin socket. It does Handshake.Hello before its first
// call and checks that the plugin serves the expected interface and version, once per Client.
type Client struct {
	address string
	expect  spi.InterfaceSpec
	url     string
	hc      *http.Client

	mu    sync.Mutex
	hello bool // the handshake succeeded
}

// NewClient returns a client of the plugin at address: a unix socket path, or "tcp://host:port"
// (the .listen variant of discovery). expect is the interface checked by the handshake; the
// zero InterfaceSpec skips it.
func NewClient(address string, expect spi.InterfaceSpec) *Client {
	url := "http://h/"
	if hostport, ok := tcpAddress(address); ok {
		url = "http://" + hostport + "/"
	}
	return &Client{address: address, expect: expect, url: url, hc: httpClient(address)}
}

func (c *Client) String() string { return c.address }

// tcpAddress reports whether address names a TCP endpoint, and its host:port.
func tcpAddress(address string) (string, bool) {
	for _, p := range []string{"tcp://", "http://"} {
		if strings.HasPrefix(address, p) {
			return strings.TrimSuffix(strings.TrimPrefix(address, p), "/"), true
		}
	}
	return "", false
}

var (
	clientsMu sync.Mutex
	clients   = map[string]*http.Client{}
)

// httpClient returns the shared HTTP client of an address, so that client objects created for
// each group commit still reuse keep-alive connections (10 idle, 10s idle timeout, as InfraKit).
func httpClient(address string) *http.Client {
	timeout := ClientTimeout()
	key := address + "\x00" + timeout.String()
	clientsMu.Lock()
	defer clientsMu.Unlock()
	if hc, ok := clients[key]; ok {
		return hc
	}
	tr := &http.Transport{
		MaxIdleConns:        10,
		MaxIdleConnsPerHost: 10,
		IdleConnTimeout:     10 * time.Second,
	}
	if _, ok := tcpAddress(address); !ok {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", address)
		}
	}
	hc := &http.Client{Transport: tr, Timeout: timeout}
	clients[key] = hc
	return hc
}

// Hello calls Handshake.Hello.
func (c *Client) Hello(ctx context.Context) (HelloResponse, error) {
	var resp HelloResponse
	err := c.do(ctx, "Handshake.Hello", HelloRequest{}, &resp)
	return resp, err
}

// CheckInterface applies InfraKit's client check of a Hello reply (docs/infrakit/PROTOCOL.md §5).
func CheckInterface(hello HelloResponse, expect spi.InterfaceSpec) error {
	var other string
	for key := range hello.Objects {
		parts := strings.SplitN(key, "/", 3)
		if parts[0] != expect.Name {
			continue
		}
		v := ""
		if len(parts) > 1 {
			v = parts[1]
		}
		if v == expect.Version {
			return nil
		}
		if other == "" || v < other {
			other = v
		}
	}
	if other != "" {
		return fmt.Errorf("Plugin supports %s interface version %s, client requires %s", expect.Name, other, expect.Version)
	}
	return fmt.Errorf("Plugin does not support interface %s", expect)
}

func (c *Client) handshake(ctx context.Context) error {
	if c.expect == (spi.InterfaceSpec{}) {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hello {
		return nil
	}
	hello, err := c.Hello(ctx)
	if err != nil {
		return err
	}
	if err := CheckInterface(hello, c.expect); err != nil {
		return err
	}
	c.hello = true
	return nil
}

// Call does the handshake if it has not succeeded yet, then the call.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	if err := c.handshake(ctx); err != nil {
		return err
	}
	return c.do(ctx, method, params, result)
}

func (c *Client) do(ctx context.Context, method string, params, result any) error {
	body, err := json.Marshal(clientRequest{Version: "2.0", Method: method, Params: params, Id: uint64(rand.Int64())})
	if err != nil {
		return fmt.Errorf("rpc: encoding %s request for %s: %w", method, c.address, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("rpc: %s on %s: %w", method, c.address, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("rpc: %s on %s: %w", method, c.address, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("rpc: %s on %s: reading reply: %w", method, c.address, err)
	}
	if len(data) > MaxResponseBytes {
		return fmt.Errorf("rpc: %s on %s: reply larger than %d bytes; refusing it", method, c.address, MaxResponseBytes)
	}
	if err := decodeClientResponse(data, result); err != nil {
		if _, ok := err.(*Error); ok || err == errNullResult {
			return err
		}
		return fmt.Errorf("rpc: %s on %s: decoding reply (HTTP %d %q): %w", method, c.address, resp.StatusCode, truncate(data, 200), err)
	}
	return nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
