package rpc

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mobykit/mobykit/spi"
)

// startLimited serves plugins on a fresh socket with the given limits.
func startLimited(t *testing.T, l Limits, plugins ...Plugin) (string, *Handler) {
	t.Helper()
	h, err := NewHandler(plugins...)
	if err != nil {
		t.Fatal(err)
	}
	h.SetLimits(l)
	sock := shortSocket(t, "lim")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	s := StartListener(ln, h)
	t.Cleanup(func() { s.Close() })
	return sock, h
}

// rawPost opens a connection and sends the headers of a POST / with the given framing header
// ("Content-Length: N" or "Transfer-Encoding: chunked"), and no body yet.
func rawPost(t *testing.T, sock, framing string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n%s\r\n\r\n", framing); err != nil {
		t.Fatal(err)
	}
	return c
}

// readReply reads one HTTP response; the deadline only guards against a hang.
func readReply(t *testing.T, c net.Conn) (int, string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// validateBody is a valid Instance.Validate request of exactly n bytes (n >= 80).
func validateBody(n int) []byte {
	head := `{"jsonrpc":"2.0","method":"Instance.Validate","params":{"Properties":"`
	tail := `"},"id":1}`
	b := make([]byte, n)
	copy(b, head)
	for i := len(head); i < n-len(tail); i++ {
		b[i] = 'a'
	}
	copy(b[n-len(tail):], tail)
	return b
}

// TestSlowBodyTimesOut: a client trickling its body, a byte at a time, is cut off with 408
// once the read timeout passes, and the server goes on serving others.
func TestSlowBodyTimesOut(t *testing.T) {
	sock, _ := startLimited(t, Limits{ReadTimeout: 300 * time.Millisecond}, Instance(newMem()))
	c := rawPost(t, sock, "Content-Length: 100000")
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := c.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	status, body := readReply(t, c)
	if status != http.StatusRequestTimeout || body != "rpc: request body not received within 300ms" {
		t.Fatalf("trickled body: %d %q", status, body)
	}
	if err := NewInstanceClient(sock, "").Validate(context.Background(), nil); err != nil {
		t.Fatalf("server stopped serving: %v", err)
	}
}

// blockingInstance's Validate runs for a while and fails if its context ends first.
type blockingInstance struct {
	*memInstance
	d time.Duration
}

func (b blockingInstance) Validate(ctx context.Context, _ spi.Any) error {
	select {
	case <-time.After(b.d):
		return nil
	case <-ctx.Done():
		return fmt.Errorf("call cut short: %w", ctx.Err())
	}
}

// TestLongCallOutlivesReadTimeout: the read timeout bounds reading the request, not the call,
// so a call that runs longer (group commit --wait) still completes.
func TestLongCallOutlivesReadTimeout(t *testing.T) {
	t.Setenv("INFRAKIT_CLIENT_TIMEOUT", "30s")
	sock, _ := startLimited(t, Limits{ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond},
		Instance(blockingInstance{newMem(), time.Second}))
	if err := NewInstanceClient(sock, "").Validate(context.Background(), nil); err != nil {
		t.Fatalf("long call: %v", err)
	}
}

// TestOversizeBodyRefused: a body over the limit is refused with 413, before it is read when
// its Content-Length says so, and once the limit is crossed when it is chunked.
func TestOversizeBodyRefused(t *testing.T) {
	sock, _ := startLimited(t, Limits{}, Instance(newMem()))
	size := MaxRequestBytes + 1<<20

	// Declared: answered right after the headers, no body sent at all.
	c := rawPost(t, sock, fmt.Sprintf("Content-Length: %d", size))
	status, body := readReply(t, c)
	want := fmt.Sprintf("rpc: request body of %d bytes is larger than the limit of %d bytes", size, MaxRequestBytes)
	if status != http.StatusRequestEntityTooLarge || body != want {
		t.Fatalf("declared oversize body: %d %q", status, body)
	}

	// Chunked: a valid request, refused once MaxRequestBytes have been read.
	chunked := rawPost(t, sock, "Transfer-Encoding: chunked")
	go func(c net.Conn) {
		b := validateBody(size)
		for len(b) > 0 {
			n := min(len(b), 64<<10)
			if _, err := fmt.Fprintf(c, "%x\r\n%s\r\n", n, b[:n]); err != nil {
				return
			}
			b = b[n:]
		}
		io.WriteString(c, "0\r\n\r\n")
	}(chunked)
	status, body = readReply(t, chunked)
	if status != http.StatusRequestEntityTooLarge || body != fmt.Sprintf("rpc: request body larger than the limit of %d bytes", MaxRequestBytes) {
		t.Fatalf("chunked oversize body: %d %q", status, body)
	}

	// A body just under the limit is served.
	atLimit := rawPost(t, sock, fmt.Sprintf("Content-Length: %d", MaxRequestBytes))
	go atLimit.Write(validateBody(MaxRequestBytes))
	if status, body = readReply(t, atLimit); status != http.StatusOK || !strings.Contains(body, `"OK":true`) {
		t.Fatalf("body at the limit: %d %q", status, body)
	}
}

// TestManyLargeBodiesBounded: twelve clients sending 64 MiB bodies at once (which used to take
// 1.7 GB) are refused without the server buffering them: the whole process allocates far less
// than one of them.
func TestManyLargeBodiesBounded(t *testing.T) {
	sock, _ := startLimited(t, Limits{}, Instance(newMem()))
	const clients, size = 12, 64 << 20
	// A valid request: head, then 'a's from one buffer sent over and over, then tail.
	full := validateBody(1 << 20)
	head, pad, tail := full[:100], full[100:len(full)-100], full[len(full)-100:]
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	statuses := make([]int, clients)
	for i := 0; i < clients; i++ {
		c := rawPost(t, sock, fmt.Sprintf("Content-Length: %d", size))
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := c.Write(head); err != nil {
				return
			}
			for left := size - len(head) - len(tail); left > 0; left -= len(pad) {
				if _, err := c.Write(pad[:min(left, len(pad))]); err != nil {
					return
				}
			}
			c.Write(tail)
		}()
		go func(i int) {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(2 * time.Minute))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil {
				statuses[i] = resp.StatusCode
				resp.Body.Close()
			}
			c.Close()
		}(i)
	}
	wg.Wait()
	runtime.ReadMemStats(&after)
	for i, s := range statuses {
		if s != http.StatusRequestEntityTooLarge {
			t.Errorf("client %d: status %d, want 413", i, s)
		}
	}
	d := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d bodies of %d MiB: %d MiB allocated", clients, size>>20, d>>20)
	if d > 32<<20 {
		t.Errorf("serving %d bodies of %d MiB allocated %d MiB", clients, size>>20, d>>20)
	}
}

// TestInFlightBudget: bodies under the per-request limit share one budget: while two 1 MiB
// bodies are being read on a 2 MiB budget, a third waits, and proceeds once one is done.
func TestInFlightBudget(t *testing.T) {
	const mib = 1 << 20
	sock, h := startLimited(t, Limits{MaxBody: mib, InFlight: 2 * mib, ReadTimeout: time.Minute}, Instance(newMem()))
	body := validateBody(mib)
	release := make(chan struct{})
	replies := make(chan int, 3)
	for range 3 {
		c := rawPost(t, sock, fmt.Sprintf("Content-Length: %d", mib))
		go func() {
			// Half the body, then the rest once released. The waiting request's handler does
			// not read, so these writes may block: hence one goroutine per connection.
			if _, err := c.Write(body[:mib/2]); err != nil {
				return
			}
			<-release
			c.Write(body[mib/2:])
		}()
		go func() {
			c.SetReadDeadline(time.Now().Add(time.Minute))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				replies <- 0
				return
			}
			resp.Body.Close()
			replies <- resp.StatusCode
		}()
	}
	waitFor(t, "two bodies reserved and one waiting", func() bool {
		return h.inFlight.Load() == 2*mib && h.waiting.Load() == 1
	})
	close(release)
	for range 3 {
		if s := <-replies; s != http.StatusOK {
			t.Fatalf("status %d", s)
		}
	}
	if n := h.inFlight.Load(); n != 0 {
		t.Fatalf("%d bytes still reserved", n)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestClientRefusesHugeReply: a hostile plugin answering with a reply larger than
// MaxResponseBytes gets an error naming the method and socket, not a caller holding it all.
func TestClientRefusesHugeReply(t *testing.T) {
	t.Setenv("INFRAKIT_CLIENT_TIMEOUT", "2m")
	sock := shortSocket(t, "hostile")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"jsonrpc":"2.0","result":{"Type":"","OK":true,"Pad":"`)
		pad := []byte(strings.Repeat("a", 1<<20))
		for i := 0; i < 2*MaxResponseBytes>>20; i++ {
			if _, err := w.Write(pad); err != nil {
				return
			}
		}
		io.WriteString(w, `"},"id":1}`)
	}), ReadHeaderTimeout: time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	err = NewClient(sock, spi.InterfaceSpec{}).Call(context.Background(), "Instance.Validate", struct{}{}, new(map[string]any))
	want := fmt.Sprintf("rpc: Instance.Validate on %s: reply larger than %d bytes; refusing it", sock, MaxResponseBytes)
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}
