// Package etcdtest runs a real etcd server in the test process (go.etcd.io/etcd/server/v3/embed)
// on loopback ports, its data in t.TempDir(), stopped when the test ends.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Server is one running etcd member.
type Server struct {
	Etcd     *embed.Etcd
	Endpoint string
}

// freeURL returns http://127.0.0.1:PORT on a port that was free a moment ago.
func freeURL(t testing.TB) url.URL {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return url.URL{Scheme: "http", Host: l.Addr().String()}
}

// Start starts a single-member etcd and returns it; it is closed by t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	cfg.Name = "test"
	cu, pu := freeURL(t), freeURL(t)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Close()
		t.Fatal("etcd did not become ready in 60s")
	}
	return &Server{Etcd: e, Endpoint: cu.String()}
}

// Client returns a client of s, closed by t.Cleanup.
func (s *Server) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint}, DialTimeout: 10 * time.Second,
		Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Node is one member of a Cluster: stopped and restarted on the same data directory and ports.
type Node struct {
	Name     string
	Endpoint string
	cfg      *embed.Config

	mu   sync.Mutex
	etcd *embed.Etcd // nil while stopped
}

// Cluster is a multi-member etcd in this process, each member on its own loopback ports.
type Cluster struct {
	t     testing.TB
	Nodes []*Node
}

// StartCluster starts an n-member etcd cluster and waits until every member is ready; every
// member still running is closed by t.Cleanup. Ports are picked free and then bound, so another
// process may take one in between: the cluster is then started again on new ports (3 tries).
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	var err error
	for range 3 {
		var c *Cluster
		if c, err = startCluster(t, n); err == nil {
			t.Cleanup(func() {
				for _, nd := range c.Nodes {
					nd.Stop()
				}
			})
			return c
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
		t.Logf("etcdtest: %v; again on other ports", err)
	}
	t.Fatal(err)
	return nil
}

func startCluster(t testing.TB, n int) (*Cluster, error) {
	c := &Cluster{t: t}
	var initial []string
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Dir = t.TempDir()
		cfg.Name = fmt.Sprintf("node%d", i)
		cu, pu := freeURL(t), freeURL(t)
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
		cfg.Logger = "zap"
		cfg.LogLevel = "error"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.InitialClusterToken = "etcdtest"
		initial = append(initial, cfg.Name+"="+pu.String())
		c.Nodes = append(c.Nodes, &Node{Name: cfg.Name, Endpoint: cu.String(), cfg: cfg})
	}
	for _, nd := range c.Nodes {
		nd.cfg.InitialCluster = strings.Join(initial, ",")
	}
	// The members must start together: none is ready before a quorum has met.
	errs := make(chan error, n)
	for _, nd := range c.Nodes {
		go func() { errs <- nd.start() }()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		for _, nd := range c.Nodes {
			nd.Stop()
		}
		return nil, first
	}
	return c, nil
}

func (nd *Node) start() error {
	e, err := embed.StartEtcd(nd.cfg)
	if err != nil {
		return fmt.Errorf("start etcd %s: %w", nd.Name, err)
	}
	nd.mu.Lock()
	nd.etcd = e
	nd.mu.Unlock()
	select {
	case <-e.Server.ReadyNotify():
		return nil
	case <-time.After(60 * time.Second):
		return fmt.Errorf("etcd %s did not become ready in 60s", nd.Name)
	}
}

// Stop stops the member (its data stays); stopping a stopped member does nothing.
func (nd *Node) Stop() {
	nd.mu.Lock()
	e := nd.etcd
	nd.etcd = nil
	nd.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

// Restart starts a stopped member again on its data and ports, and waits until it is ready
// (which needs a quorum of the cluster running).
func (nd *Node) Restart() error {
	nd.mu.Lock()
	running := nd.etcd != nil
	nd.mu.Unlock()
	if running {
		return fmt.Errorf("etcd %s is running", nd.Name)
	}
	nd.cfg.ClusterState = embed.ClusterStateFlagExisting
	return nd.start()
}

// Running reports whether the member runs.
func (nd *Node) Running() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.etcd != nil
}

// Endpoints are the client URLs of every member, running or not.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, nd := range c.Nodes {
		out = append(out, nd.Endpoint)
	}
	return out
}

// Client returns a client of every member, closed by t.Cleanup.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 10 * time.Second,
		Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
