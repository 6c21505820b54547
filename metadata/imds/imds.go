// Package imds is an EC2-compatible instance metadata service for local VMs, so that an image
// using the AWS metadata provider behaves on a laptop as it does on EC2. One Server serves
// many VMs, each its own Record (instance-id, addresses, hostname, keys, tags, userdata):
//
//   - by the client's source address (Record.Addr), for VMs on a bridge or tap network that
//     reach the server directly, through Server.Handler; or
//   - by a dedicated per-VM listener, for QEMU user-mode networking: a unix socket
//     (Server.ListenVMUnix, mode 0600 in a folder only its owner can enter) that only the
//     VM's own guestfwd relay connects to, or a TCP listener (Server.ListenVM), which any
//     local user can connect to. QEMUUserNetdev gives the -netdev value that makes
//     169.254.169.254:80 inside the guest reach such a listener, and AttachQEMU does it all.
//
// IMDSv2 is implemented: PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds
// (1-21600) returns a session token bound to the VM; GETs that carry a token must carry a
// valid, unexpired one; with WithTokenRequired (EC2's HttpTokens=required) GETs without one are
// refused with 401, otherwise IMDSv1 GETs are answered. Tokens are not stored: each is its
// expiry signed (HMAC-SHA256) with a key of its VM's registration, so issuing one costs the
// same however many were issued, memory does not grow with them, and Unregister revokes them
// all by dropping the key. On TCP, the connection that carried a token PUT answers with IP TTL
// (hop limit) 1, as EC2's default HttpPutResponseHopLimit.
package imds

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Record is what one VM is told about itself.
type Record struct {
	InstanceID       string            // required, unique
	InstanceType     string            // default "mobykit.local"
	AvailabilityZone string            // default "local-1a"; the region is this minus its last letter
	ImageID          string            // ami-id; default "ami-mobykit"
	Hostname         string            // meta-data/hostname; default LocalHostname, then InstanceID
	LocalHostname    string            // meta-data/local-hostname; default Hostname
	LocalIPv4        string            // meta-data/local-ipv4 (omitted if empty)
	PublicIPv4       string            // meta-data/public-ipv4 (omitted if empty)
	MAC              string            // meta-data/mac (omitted if empty)
	PublicKeys       []PublicKey       // meta-data/public-keys/N/openssh-key
	Tags             map[string]string // meta-data/tags/instance/KEY
	UserData         []byte            // /latest/user-data (404 if nil)

	// Addr, if valid, selects this record for requests whose source address it is.
	Addr netip.Addr
}

// PublicKey is an EC2 key pair's name and OpenSSH public key.
type PublicKey struct{ Name, Key string }

// Option configures a Server.
type Option func(*Server)

// WithTokenRequired refuses IMDSv1 (token-less) GETs with 401, like EC2's HttpTokens=required.
func WithTokenRequired() Option { return func(s *Server) { s.requireToken = true } }

// WithClock replaces time.Now for token expiry (tests).
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// WithPutResponseHopLimit sets the IP TTL (IPv6 hop limit) of the answer to a token PUT on a
// TCP connection: EC2's HttpPutResponseHopLimit, default 1, so that the token does not reach a
// client more than one hop away (a container behind a NAT bridge on the VM). 0 leaves the
// system default.
func WithPutResponseHopLimit(n int) Option { return func(s *Server) { s.putHopLimit = n } }

// WithMaxConnsPerVM bounds the connections a per-VM listener serves at once (default 16): more
// are closed as soon as they are accepted, so a guest cannot keep unbounded relay processes or
// server goroutines alive.
func WithMaxConnsPerVM(n int) Option { return func(s *Server) { s.maxConns = n } }

// Server holds the registered VMs and their token keys. Its methods are safe for concurrent use.
type Server struct {
	requireToken bool
	now          func() time.Time
	putHopLimit  int
	maxConns     int

	mu        sync.RWMutex
	byID      map[string]*vmEntry
	byAddr    map[netip.Addr]string
	listeners map[string][]*http.Server
}

// vmEntry is a registered VM: its record and the key its tokens are signed with, made at its
// first Register and dropped by Unregister.
type vmEntry struct {
	rec Record
	key []byte
}

// New returns an empty Server.
func New(opts ...Option) *Server {
	s := &Server{
		now:         time.Now,
		putHopLimit: 1,
		maxConns:    16,
		byID:        map[string]*vmEntry{},
		byAddr:      map[netip.Addr]string{},
		listeners:   map[string][]*http.Server{},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Register adds or replaces a VM's record. Replacing keeps the VM's listeners and tokens.
func (s *Server) Register(r Record) error {
	if r.InstanceID == "" {
		return errors.New("imds: register: empty instance id")
	}
	r.UserData = slices.Clone(r.UserData)
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Addr.IsValid() {
		if other, ok := s.byAddr[r.Addr]; ok && other != r.InstanceID {
			return fmt.Errorf("imds: register %s: address %s already belongs to %s", r.InstanceID, r.Addr, other)
		}
	}
	e, ok := s.byID[r.InstanceID]
	if ok && e.rec.Addr.IsValid() {
		delete(s.byAddr, e.rec.Addr)
	}
	if !ok {
		e = &vmEntry{key: make([]byte, 32)}
		if _, err := rand.Read(e.key); err != nil {
			return fmt.Errorf("imds: register %s: token key: %w", r.InstanceID, err)
		}
		s.byID[r.InstanceID] = e
	}
	e.rec = r
	if r.Addr.IsValid() {
		s.byAddr[r.Addr] = r.InstanceID
	}
	return nil
}

// Unregister removes a VM's record, revokes its tokens and closes its listeners.
func (s *Server) Unregister(instanceID string) error {
	s.mu.Lock()
	e, ok := s.byID[instanceID]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("imds: unregister %s: not registered", instanceID)
	}
	delete(s.byID, instanceID) // and with it the key: every token it signed is refused from now on
	if e.rec.Addr.IsValid() {
		delete(s.byAddr, e.rec.Addr)
	}
	ls := s.listeners[instanceID]
	delete(s.listeners, instanceID)
	s.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
	return nil
}

// Lookup returns a copy of a registered record.
func (s *Server) Lookup(instanceID string) (Record, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.byID[instanceID]
	if !ok {
		return Record{}, false
	}
	return e.rec, true
}

// Handler serves each request the record whose Addr is the request's source address.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			http.Error(w, "bad remote address", http.StatusBadRequest)
			return
		}
		s.mu.RLock()
		id, ok := s.byAddr[ap.Addr().Unmap()]
		s.mu.RUnlock()
		if !ok {
			http.Error(w, "no instance registered for "+ap.Addr().String(), http.StatusNotFound)
			return
		}
		s.serve(w, r, id)
	})
}

// InstanceHandler serves every request the record of instanceID (as a per-VM listener does).
func (s *Server) InstanceHandler(instanceID string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, instanceID) })
}

// ListenVM starts a TCP listener on addr (e.g. "127.0.0.1:0") that serves only instanceID, and
// returns its address. It is closed by Unregister or Close. Any local user, and any guest whose
// network reaches the host's loopback, can connect to it: where that matters, use ListenVMUnix.
func (s *Server) ListenVM(instanceID, addr string) (net.Addr, error) {
	if _, ok := s.Lookup(instanceID); !ok {
		return nil, fmt.Errorf("imds: listen for %s: not registered", instanceID)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("imds: listen for %s on %s: %w", instanceID, addr, err)
	}
	s.serveVM(instanceID, l)
	return l.Addr(), nil
}

// ServeVM serves only instanceID on l (which it closes on Unregister or Close): ListenVM and
// ListenVMUnix with a listener made elsewhere.
func (s *Server) ServeVM(instanceID string, l net.Listener) error {
	if _, ok := s.Lookup(instanceID); !ok {
		return fmt.Errorf("imds: serve %s: not registered", instanceID)
	}
	s.serveVM(instanceID, l)
	return nil
}

func (s *Server) serveVM(instanceID string, l net.Listener) {
	hs := s.HTTPServer(s.InstanceHandler(instanceID))
	s.mu.Lock()
	s.listeners[instanceID] = append(s.listeners[instanceID], hs)
	s.mu.Unlock()
	if s.maxConns > 0 {
		l = limitListener(l, s.maxConns)
	}
	go func() {
		if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Warn("imds: listener stopped", "instance", instanceID, "addr", l.Addr(), "err", err)
		}
	}()
}

// Close closes every per-VM listener.
func (s *Server) Close() error {
	s.mu.Lock()
	var all []*http.Server
	for _, ls := range s.listeners {
		all = append(all, ls...)
	}
	s.listeners = map[string][]*http.Server{}
	s.mu.Unlock()
	for _, l := range all {
		l.Close()
	}
	return nil
}

const (
	headerToken    = "X-aws-ec2-metadata-token"
	headerTokenTTL = "X-aws-ec2-metadata-token-ttl-seconds"
	maxTokenTTL    = 21600
)

func (s *Server) serve(w http.ResponseWriter, r *http.Request, instanceID string) {
	w.Header().Set("Server", "EC2ws")
	if r.URL.Path == "/latest/api/token" {
		s.putToken(w, r, instanceID)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if tok := r.Header.Get(headerToken); tok != "" {
		if !s.validToken(instanceID, tok) {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
	} else if s.requireToken {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	rec, ok := s.Lookup(instanceID)
	if !ok {
		http.Error(w, "instance "+instanceID+" is not registered", http.StatusNotFound)
		return
	}
	body, ok := lookupPath(&rec, r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	if strings.HasSuffix(r.URL.Path, "/document") {
		w.Header().Set("Content-Type", "application/json")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

func (s *Server) putToken(w http.ResponseWriter, r *http.Request, instanceID string) {
	if r.Method != http.MethodPut {
		w.Header().Set("Allow", "PUT")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	// EC2 refuses token requests that went through a proxy.
	if r.Header.Get("X-Forwarded-For") != "" {
		http.Error(w, "Forbidden", http.StatusForbidden)
		return
	}
	ttl, err := strconv.Atoi(r.Header.Get(headerTokenTTL))
	if err != nil || ttl < 1 || ttl > maxTokenTTL {
		http.Error(w, "missing or invalid "+headerTokenTTL, http.StatusBadRequest)
		return
	}
	tok, ok := s.issueToken(instanceID, time.Duration(ttl)*time.Second)
	if !ok {
		http.Error(w, "instance "+instanceID+" is not registered", http.StatusNotFound)
		return
	}
	if err := s.limitHops(r); err != nil {
		// Without the hop limit the token could travel further than EC2 lets it: refuse.
		slog.Warn("imds: cannot set the token response's hop limit", "instance", instanceID, "err", err)
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	w.Header().Set(headerTokenTTL, strconv.Itoa(ttl))
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprint(w, tok)
}

// metaTree returns the leaf values under /latest/meta-data/ for r.
func metaTree(r *Record) map[string]string {
	hostname := first(r.Hostname, r.LocalHostname, r.InstanceID)
	az := first(r.AvailabilityZone, "local-1a")
	m := map[string]string{
		"instance-id":                 r.InstanceID,
		"instance-type":               first(r.InstanceType, "mobykit.local"),
		"ami-id":                      first(r.ImageID, "ami-mobykit"),
		"hostname":                    hostname,
		"local-hostname":              first(r.LocalHostname, hostname),
		"placement/availability-zone": az,
		"placement/region":            region(az),
	}
	for k, v := range map[string]string{"local-ipv4": r.LocalIPv4, "public-ipv4": r.PublicIPv4, "mac": r.MAC} {
		if v != "" {
			m[k] = v
		}
	}
	for i, k := range r.PublicKeys {
		m[fmt.Sprintf("public-keys/%d/openssh-key", i)] = k.Key
	}
	for k, v := range r.Tags {
		if k != "" && !strings.Contains(k, "/") {
			m["tags/instance/"+k] = v
		}
	}
	return m
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func region(az string) string {
	if n := len(az); n > 1 && az[n-1] >= 'a' && az[n-1] <= 'z' {
		return az[:n-1]
	}
	return az
}

// lookupPath answers a GET path for r: a leaf value, or a directory listing (children one per
// line, sub-directories with a trailing "/"), as EC2 does.
func lookupPath(r *Record, p string) ([]byte, bool) {
	switch p {
	case "/":
		return []byte("latest"), true
	case "/latest", "/latest/":
		items := []string{"dynamic", "meta-data"}
		if r.UserData != nil {
			items = append(items, "user-data")
		}
		return []byte(strings.Join(items, "\n")), true
	case "/latest/user-data", "/latest/user-data/":
		return r.UserData, r.UserData != nil
	case "/latest/dynamic", "/latest/dynamic/":
		return []byte("instance-identity/"), true
	case "/latest/dynamic/instance-identity", "/latest/dynamic/instance-identity/":
		return []byte("document"), true
	case "/latest/dynamic/instance-identity/document":
		az := first(r.AvailabilityZone, "local-1a")
		doc, _ := json.MarshalIndent(map[string]any{
			"instanceId": r.InstanceID, "instanceType": first(r.InstanceType, "mobykit.local"),
			"imageId": first(r.ImageID, "ami-mobykit"), "availabilityZone": az, "region": region(az),
			"privateIp": r.LocalIPv4, "architecture": "x86_64", "version": "2017-09-30",
		}, "", "  ")
		return doc, true
	}
	rest, ok := strings.CutPrefix(p, "/latest/meta-data")
	if !ok {
		return nil, false
	}
	rest = strings.TrimPrefix(rest, "/")
	tree := metaTree(r)
	if v, ok := tree[rest]; ok {
		return []byte(v), true
	}
	// public-keys/ lists "N=name", as EC2 does.
	if rest == "public-keys" || rest == "public-keys/" {
		if len(r.PublicKeys) == 0 {
			return nil, false
		}
		var lines []string
		for i, k := range r.PublicKeys {
			lines = append(lines, fmt.Sprintf("%d=%s", i, k.Name))
		}
		return []byte(strings.Join(lines, "\n")), true
	}
	prefix := strings.TrimSuffix(rest, "/")
	if prefix != "" {
		prefix += "/"
	}
	seen := map[string]bool{}
	var items []string
	for k := range tree {
		child, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		if i := strings.IndexByte(child, '/'); i >= 0 {
			child = child[:i+1]
		}
		if !seen[child] {
			seen[child] = true
			items = append(items, child)
		}
	}
	if len(items) == 0 {
		return nil, false
	}
	slices.Sort(items)
	return []byte(strings.Join(items, "\n")), true
}
