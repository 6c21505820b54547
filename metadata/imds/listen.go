package imds

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// HTTPServer returns an http.Server for h with the limits every listener of this package has
// (header, read, write and idle timeouts, 16 KiB of headers) and the connection bookkeeping the
// token PUT's hop limit needs. Use it to serve Handler or InstanceHandler on a listener of your
// own (as `mobykit metadata serve` does).
func (s *Server) HTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
}

type connKey struct{}

// limitHops gives the connection r came on the server's hop limit, when it is a TCP one.
func (s *Server) limitHops(r *http.Request) error {
	if s.putHopLimit <= 0 {
		return nil
	}
	c, _ := r.Context().Value(connKey{}).(net.Conn)
	if c, ok := c.(*limitedConn); ok {
		return s.limitHopsConn(c.Conn)
	}
	return s.limitHopsConn(c)
}

func (s *Server) limitHopsConn(c net.Conn) error {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil // a unix socket (the QEMU relay) or no connection known: no IP hops to limit
	}
	return setHopLimit(tc, s.putHopLimit)
}

// ListenVMUnix serves instanceID on a unix socket at path, mode 0600, and nothing else: a
// local user other than the server's cannot connect, and a guest cannot address it. path's
// folder must be a real folder (not a symbolic link) owned by this process's user and closed
// to everyone else (no group or other permission bits), so that nobody else can reach the
// socket even before its mode is set. A leftover socket at path (from a server that did not
// shut down) is replaced; anything else there is an error. The socket is removed by Unregister
// or Close.
func (s *Server) ListenVMUnix(instanceID, path string) error {
	if _, ok := s.Lookup(instanceID); !ok {
		return fmt.Errorf("imds: listen for %s: not registered", instanceID)
	}
	if err := checkPrivateDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("imds: listen for %s on %s: %w", instanceID, path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return fmt.Errorf("imds: listen for %s: %s exists and is not a socket (%s)", instanceID, path, fi.Mode().Type())
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("imds: listen for %s: remove stale socket: %w", instanceID, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("imds: listen for %s: %w", instanceID, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("imds: listen for %s on %s: %w", instanceID, path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("imds: listen for %s on %s: %w", instanceID, path, err)
	}
	s.serveVM(instanceID, l)
	return nil
}

// checkPrivateDir returns an error unless dir is a folder, not a symbolic link, owned by this
// process's effective user, with no permission bits for group or others.
func checkPrivateDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a folder (%s)", dir, fi.Mode().Type())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("folder %s is open to other users (mode %#o): want 0700", dir, fi.Mode().Perm())
	}
	if uid, ok := fileOwner(fi); ok && uid != os.Geteuid() {
		return fmt.Errorf("folder %s belongs to uid %d, not to this process's uid %d", dir, uid, os.Geteuid())
	}
	return nil
}

// limitListener accepts at most n connections at once; while n are open, a further one is
// closed as soon as it is accepted (its relay process then ends at once) rather than queued.
func limitListener(l net.Listener, n int) net.Listener {
	return &limited{Listener: l, sem: make(chan struct{}, n)}
}

type limited struct {
	net.Listener
	sem chan struct{}
}

func (l *limited) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			return &limitedConn{Conn: c, release: func() { <-l.sem }}, nil
		default:
			c.Close()
		}
	}
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
