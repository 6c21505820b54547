package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// maxSocketPath is the size of sun_path on Linux, terminating NUL included.
const maxSocketPath = 108

// ErrInUse is returned by Listen when a live server already answers on the socket.
var ErrInUse = errors.New("socket is in use by a live server")

// Listen creates the unix socket at path with owner-only permissions (0600). The socket is
// made under a temporary name, chmod-ed, then renamed into place, so it is never reachable
// with wider permissions and no process-wide umask is touched. An existing socket that nobody
// answers on (left by a dead process) is replaced; one that answers is never stolen (ErrInUse).
// The returned listener removes the socket when closed.
func Listen(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("rpc: listen on %s: exists and is not a socket", path)
		}
		if Alive(path) {
			return nil, fmt.Errorf("rpc: listen on %s: %w", path, ErrInUse)
		}
		slog.Info("removing stale plugin socket", "socket", path)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp"+strconv.Itoa(os.Getpid()))
	_ = os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil && len(tmp) >= maxSocketPath && len(path) < maxSocketPath {
		// The temporary name is too long for sun_path: bind in place and chmod right away.
		if ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"}); err == nil {
			tmp = path
		}
	}
	if err != nil {
		return nil, fmt.Errorf("rpc: listen on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("rpc: chmod socket %s: %w", tmp, err)
	}
	if tmp == path {
		return &unixListener{UnixListener: ln, path: path}, nil
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("rpc: placing socket %s: %w", path, err)
	}
	return &unixListener{UnixListener: ln, path: path}, nil
}

type unixListener struct {
	*net.UnixListener
	path string
	once sync.Once
	err  error
}

// Addr is the socket's path, not the temporary name it was bound under.
func (l *unixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// Close closes the listener and removes its socket, once: a second Close must not remove a
// socket that a new server has created at the same path since.
func (l *unixListener) Close() error {
	l.once.Do(func() {
		l.err = l.UnixListener.Close()
		if rerr := os.Remove(l.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && l.err == nil {
			l.err = rerr
		}
	})
	return l.err
}

// Alive reports whether something accepts connections on the unix socket at path.
func Alive(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		// ECONNREFUSED or ENOENT: nobody listens. Anything else (EACCES, timeout): assume
		// alive, never steal.
		return !(errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT))
	}
	c.Close()
	return true
}

// Server is a running plugin server.
type Server struct {
	srv      *http.Server
	ln       net.Listener
	done     chan error
	once     sync.Once
	closeErr error
	// Handler is the JSON-RPC handler being served.
	Handler *Handler
}

// Start serves plugins on the unix socket at path (see Listen) until Close.
func Start(path string, plugins ...Plugin) (*Server, error) {
	h, err := NewHandler(plugins...)
	if err != nil {
		return nil, err
	}
	ln, err := Listen(path)
	if err != nil {
		return nil, err
	}
	return StartListener(ln, h), nil
}

// ReadHeaderTimeout bounds reading a request's headers; the body is bounded by the handler's
// Limits.ReadTimeout, the reply by its Limits.WriteTimeout.
const ReadHeaderTimeout = 10 * time.Second

// maxHeaderBytes bounds a request's headers; the Go client sends about 200 bytes.
const maxHeaderBytes = 64 << 10

// StartListener serves h on ln (a unix or TCP listener) until Close. The server bounds the
// time to read headers (ReadHeaderTimeout) and their size; h bounds bodies and replies (see
// Limits). No server-wide read or write timeout is set: it would cut calls that run long.
func StartListener(ln net.Listener, h *Handler) *Server {
	s := &Server{
		srv: &http.Server{Handler: h, ReadHeaderTimeout: ReadHeaderTimeout, IdleTimeout: 2 * time.Minute,
			MaxHeaderBytes: maxHeaderBytes},
		ln:      ln,
		done:    make(chan error, 1),
		Handler: h,
	}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s
}

// Addr is the listening address (the socket path for unix sockets).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops accepting, waits up to 5s for calls in flight, and removes the socket.
func (s *Server) Close() error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := s.srv.Shutdown(ctx)
		if err != nil {
			_ = s.srv.Close()
		}
		if serr := <-s.done; err == nil {
			err = serr
		}
		_ = s.ln.Close()
		s.closeErr = err
	})
	return s.closeErr
}

// Serve serves plugins on the unix socket at path until ctx is done, then shuts down and
// removes the socket. It is the one call a plugin's main needs:
//
//	rpc.Serve(ctx, socket, rpc.Instance(myPlugin))
func Serve(ctx context.Context, path string, plugins ...Plugin) error {
	s, err := Start(path, plugins...)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return s.Close()
	case err := <-s.done:
		s.done <- err
		cerr := s.Close()
		if err == nil {
			err = cerr
		}
		return err
	}
}
