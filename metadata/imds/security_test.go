package imds

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// handlerClient drives a VM's handler in memory: no sockets, so a flood is quick.
type handlerClient struct {
	t testing.TB
	h http.Handler
}

func (c handlerClient) do(method, path string, hdr map[string]string) (int, string) {
	req := httptest.NewRequest(method, "http://169.254.169.254"+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	c.h.ServeHTTP(w, req)
	return w.Code, w.Body.String()
}

func (c handlerClient) token(ttl string) string {
	code, tok := c.do(http.MethodPut, "/latest/api/token", map[string]string{headerTokenTTL: ttl})
	if code != 200 || tok == "" {
		c.t.Fatalf("PUT token: %d %q", code, tok)
	}
	return tok
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestIMDSTokenFloodIsBounded: a guest that PUTs 100,000 tokens (each PUT used to add to one
// table, scanned whole under one lock by every later PUT) costs the server no memory that
// stays, and the tokens of its neighbour, and its own first one, keep working.
func TestIMDSTokenFloodIsBounded(t *testing.T) {
	s := New(WithTokenRequired())
	defer s.Close()
	s.Register(rec("i-a"))
	s.Register(rec("i-b"))
	a := handlerClient{t, s.InstanceHandler("i-a")}
	b := handlerClient{t, s.InstanceHandler("i-b")}
	tokB := b.token("21600")
	firstA := a.token("21600")

	before := heapInUse()
	const flood = 100_000
	for range flood {
		a.token("21600")
	}
	after := heapInUse()
	grown := int64(after) - int64(before)
	t.Logf("heap after %d token PUTs: %+d bytes", flood, grown)
	// A stored token costs well over 100 bytes: a table of them would hold > 10 MB here.
	if grown > 1<<20 {
		t.Errorf("%d token PUTs left the heap %d bytes larger: tokens are being kept", flood, grown)
	}
	for _, tc := range []struct {
		c    handlerClient
		tok  string
		want string
	}{{b, tokB, "i-b"}, {a, firstA, "i-a"}} {
		if code, body := tc.c.do(http.MethodGet, "/latest/meta-data/instance-id", map[string]string{headerToken: tc.tok}); code != 200 || body != tc.want {
			t.Errorf("%s's token after the flood: %d %q", tc.want, code, body)
		}
	}
	if code, _ := b.do(http.MethodGet, "/latest/meta-data/instance-id", map[string]string{headerToken: firstA}); code != 401 {
		t.Errorf("i-a's token on i-b: %d, want 401", code)
	}
}

// TestIMDSTokenExpires: a token works until its TTL is over and never after; a token whose
// expiry was pushed forward, or that was cut, is refused.
func TestIMDSTokenExpires(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	s := New(WithTokenRequired(), WithClock(clock))
	s.Register(rec("i-1"))
	c := handlerClient{t, s.InstanceHandler("i-1")}
	get := func(tok string) int {
		code, _ := c.do(http.MethodGet, "/latest/meta-data/instance-id", map[string]string{headerToken: tok})
		return code
	}
	tok := c.token("2")
	if get(tok) != 200 {
		t.Fatal("fresh token refused")
	}
	advance(1999 * time.Millisecond)
	if get(tok) != 200 {
		t.Error("token refused before its TTL was over")
	}
	advance(time.Millisecond)
	if code := get(tok); code != 401 {
		t.Errorf("token after its TTL: %d, want 401", code)
	}
	// Push the expiry forward by hand: the signature no longer matches.
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint64(raw[1:9], uint64(now.Add(time.Hour).Unix()))
	if code := get(base64.RawURLEncoding.EncodeToString(raw)); code != 401 {
		t.Errorf("token with a forged expiry: %d, want 401", code)
	}
	fresh := c.token("60")
	for _, bad := range []string{fresh[:len(fresh)-1], fresh + "A", strings.Repeat("A", tokenLen), strings.Repeat("!", tokenLen)} {
		if code := get(bad); code != 401 {
			t.Errorf("malformed token %q: %d, want 401", bad, code)
		}
	}
}

// capture records the connections a listener accepts, so a test can look at the server's side.
type capture struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (c *capture) Accept() (net.Conn, error) {
	conn, err := c.Listener.Accept()
	if err == nil {
		c.mu.Lock()
		c.conns = append(c.conns, conn)
		c.mu.Unlock()
	}
	return conn, err
}

func (c *capture) last() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conns[len(c.conns)-1]
}

func sockoptInt(t *testing.T, c net.Conn, level, opt int) int {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) { v, serr = syscall.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return v
}

// TestIMDSTokenPutHopLimit: served over TCP, the connection that answers a token PUT sends with
// IP TTL 1 (IPv6 hop limit 1), as EC2 does, so the token cannot be routed past the first hop
// (into a container behind a NAT bridge); a connection that only GETs keeps the default.
func TestIMDSTokenPutHopLimit(t *testing.T) {
	for _, tc := range []struct {
		network, addr string
		level, opt    int
	}{
		{"tcp4", "127.0.0.1:0", syscall.IPPROTO_IP, syscall.IP_TTL},
		{"tcp6", "[::1]:0", syscall.IPPROTO_IPV6, syscall.IPV6_UNICAST_HOPS},
	} {
		t.Run(tc.network, func(t *testing.T) {
			l, err := net.Listen(tc.network, tc.addr)
			if err != nil {
				if tc.network == "tcp6" {
					t.Skipf("no IPv6 loopback: %v", err)
				}
				t.Fatal(err)
			}
			s := New()
			defer s.Close()
			s.Register(rec("i-1"))
			cl := &capture{Listener: l}
			if err := s.ServeVM("i-1", cl); err != nil {
				t.Fatal(err)
			}
			base := "http://" + l.Addr().String()
			// A client (and connection, kept alive) per request, so each request's server
			// side is the last one accepted and still open.
			newClient := func() client {
				tr := &http.Transport{}
				t.Cleanup(tr.CloseIdleConnections)
				return client{t: t, base: base, hc: &http.Client{Transport: tr}}
			}
			newClient().do(http.MethodGet, "/latest/meta-data/instance-id", nil)
			if ttl := sockoptInt(t, cl.last(), tc.level, tc.opt); ttl == 1 {
				t.Errorf("a GET-only connection sends with hop limit 1")
			}
			newClient().token("60")
			if ttl := sockoptInt(t, cl.last(), tc.level, tc.opt); ttl != 1 {
				t.Errorf("token PUT answered with hop limit %d, want 1", ttl)
			}
		})
	}
}

// TestIMDSUnixSocketIsPrivate: a VM's unix socket is mode 0600 and only made in a folder closed
// to other users; a symbolic link or another file in its place is refused, a stale socket is
// replaced; Unregister removes it.
func TestIMDSUnixSocketIsPrivate(t *testing.T) {
	s := New()
	defer s.Close()
	s.Register(rec("i-1"))
	dir := t.TempDir()
	os.Chmod(dir, 0o700)
	sock := filepath.Join(dir, "imds.sock")
	if err := s.ListenVMUnix("i-1", sock); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	var out bytes.Buffer
	if err := Relay(context.Background(), "unix:"+sock, strings.NewReader("GET /latest/user-data HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), &out); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.ReadResponse(bufio.NewReader(&out), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("relay over the socket: %v %v", resp, err)
	} else if b, _ := io.ReadAll(resp.Body); !strings.Contains(string(b), "i-1") {
		t.Errorf("relay over the socket answered %q", b)
	}
	if err := s.Unregister("i-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left after Unregister: %v", err)
	}

	s.Register(rec("i-1"))
	// A stale socket (a server that died) is replaced.
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	if err := s.ListenVMUnix("i-1", sock); err != nil {
		t.Errorf("stale socket not replaced: %v", err)
	}
	s.Unregister("i-1")
	s.Register(rec("i-1"))

	open := filepath.Join(t.TempDir(), "open")
	os.Mkdir(open, 0o700)
	os.Chmod(open, 0o755)
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(dir, link)
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o600)
	for name, path := range map[string]string{
		"folder open to others": filepath.Join(open, "imds.sock"),
		"folder is a symlink":   filepath.Join(link, "imds.sock"),
		"a file in the way":     file,
		"missing folder":        filepath.Join(dir, "nope", "imds.sock"),
	} {
		if err := s.ListenVMUnix("i-1", path); err == nil {
			t.Errorf("%s: listening on %s accepted", name, path)
		} else if !strings.Contains(err.Error(), "i-1") {
			t.Errorf("%s: error does not name the instance: %v", name, err)
		}
	}
	if b, _ := os.ReadFile(file); string(b) != "x" {
		t.Error("the file in the way was touched")
	}
}

// TestIMDSGuestConnectionFloodIsBounded: a guest that opens connection after connection (each
// one a relay process on the host) gets at most the per-VM limit served at once; the rest are
// closed at once, and a slot frees when a connection ends.
func TestIMDSGuestConnectionFloodIsBounded(t *testing.T) {
	s := New(WithMaxConnsPerVM(2))
	defer s.Close()
	s.Register(rec("i-1"))
	addr, err := s.ListenVM("i-1", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// served reports whether c gets an answer to a request.
	served := func(c net.Conn) bool {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		return err == nil && resp.StatusCode == 200
	}
	held := []net.Conn{dial(), dial()}
	for _, c := range held {
		if !served(c) {
			t.Fatal("a connection within the limit was not served")
		}
	}
	extra := dial()
	if served(extra) {
		t.Error("a third connection was served with a limit of 2")
	}
	extra.Close()
	held[0].Close()
	// The server notices the close and frees the slot: poll until it has.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := dial()
		ok := served(c)
		c.Close()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no slot freed after a connection closed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	held[1].Close()
}

// BenchmarkIMDSTokens reports what a token PUT costs and what a GET with a token costs once a
// guest has issued many tokens (100,000 here): with signed tokens, both stay flat.
func BenchmarkIMDSTokens(b *testing.B) {
	s := New(WithTokenRequired())
	s.Register(rec("i-a"))
	s.Register(rec("i-b"))
	a := handlerClient{b, s.InstanceHandler("i-a")}
	other := handlerClient{b, s.InstanceHandler("i-b")}
	b.Run("issue", func(b *testing.B) {
		for b.Loop() {
			a.token("21600")
		}
	})
	for range 100_000 {
		a.token("21600")
	}
	tok := other.token("21600")
	hdr := map[string]string{headerToken: tok}
	b.Run("issue-after-100000", func(b *testing.B) {
		for b.Loop() {
			a.token("21600")
		}
	})
	b.Run("get-after-100000", func(b *testing.B) {
		for b.Loop() {
			if code, _ := other.do(http.MethodGet, "/latest/meta-data/instance-id", hdr); code != 200 {
				b.Fatal(code)
			}
		}
	})
}
