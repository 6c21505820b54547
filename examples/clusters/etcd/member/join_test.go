package main

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// refusing is a cluster that must not be asked.
type refusing struct{ t *testing.T }

func (r refusing) Members(context.Context) ([]Member, error) {
	r.t.Error("cluster asked for its members")
	return nil, errors.New("refused")
}
func (r refusing) Add(context.Context, string) (uint64, []Member, error) {
	r.t.Error("member add called")
	return 0, nil, errors.New("refused")
}
func (r refusing) Remove(context.Context, uint64) error {
	r.t.Error("member remove called")
	return errors.New("refused")
}

func TestDecideRestartsFromData(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "member", "wal"), 0o700)
	c := Config{Name: "10.99.1.11", Peers: []string{"10.99.1.11", "10.99.1.12", "10.99.1.13"}, DataDir: dir}
	p, err := Decide(context.Background(), c, refusing{t})
	if err != nil {
		t.Fatal(err)
	}
	if p.State != "existing" {
		t.Fatalf("state %q, want existing: %s", p.State, p.Why)
	}
}

func TestDecideCreatesWhenNoPeerAnswers(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	c := Config{Name: "127.0.0.1", Peers: []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}, DataDir: t.TempDir(), ClientPort: port, Timeout: time.Second}
	p, err := Decide(context.Background(), c, c.cluster())
	if err != nil {
		t.Fatal(err)
	}
	want := "127.0.0.1=http://127.0.0.1:2380,127.0.0.2=http://127.0.0.2:2380,127.0.0.3=http://127.0.0.3:2380"
	if p.State != "new" || p.InitialCluster != want {
		t.Fatalf("plan %+v, want new with %s", p, want)
	}
	if env := c.Env(p); !strings.Contains(env, "ETCD_INITIAL_CLUSTER_STATE=new\n") || !strings.Contains(env, "ETCD_LISTEN_PEER_URLS=http://127.0.0.1:2380\n") {
		t.Fatalf("env:\n%s", env)
	}
}

func freePort(t *testing.T, host string) int {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s: %v", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs etcd with the member's configuration and plan, as the image's etcd service does
// with /run/etcd/env.
func start(t *testing.T, c Config, p Plan) (*embed.Etcd, func()) {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = c.Name, c.DataDir
	pu, _ := url.Parse(c.peerURL(c.Name))
	cu, _ := url.Parse(c.clientURL(c.Name))
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.InitialCluster, cfg.ClusterState = p.InitialCluster, p.State
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("start etcd %s: %v", c.Name, err)
	}
	var once sync.Once
	stop := func() { once.Do(e.Close) }
	t.Cleanup(stop)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		t.Fatalf("etcd %s not ready in 60s", c.Name)
	}
	return e, stop
}

// TestDecideJoinsAndRestarts runs real etcd members on 127.0.0.1 and 127.0.0.2 (same ports,
// as the cluster's members share theirs on different addresses): a one-member cluster is
// created; a brand-new member with an empty data folder is added by Decide (member add) and
// joins; stopped and started again on its data folder, it comes back with its member ID.
func TestDecideJoinsAndRestarts(t *testing.T) {
	pp, cp := freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1")
	if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(pp))); err != nil {
		t.Skipf("127.0.0.2 unusable here: %v", err)
	} else {
		l.Close()
	}
	a := Config{Name: "127.0.0.1", Peers: []string{"127.0.0.1"}, DataDir: filepath.Join(t.TempDir(), "a"), PeerPort: pp, ClientPort: cp, Timeout: time.Second}
	pa, err := Decide(context.Background(), a, a.cluster())
	if err != nil || pa.State != "new" {
		t.Fatalf("first member: %+v %v", pa, err)
	}
	start(t, a, pa)

	b := Config{Name: "127.0.0.2", Peers: []string{"127.0.0.1", "127.0.0.2"}, DataDir: filepath.Join(t.TempDir(), "b"), PeerPort: pp, ClientPort: cp, Timeout: 5 * time.Second}
	pb, err := Decide(context.Background(), b, b.cluster())
	if err != nil {
		t.Fatal(err)
	}
	want := "127.0.0.1=" + a.peerURL("127.0.0.1") + ",127.0.0.2=" + b.peerURL("127.0.0.2")
	if pb.State != "existing" || pb.InitialCluster != want || !strings.HasPrefix(pb.Why, "added as") {
		t.Fatalf("new member's plan %+v, want existing, added, with %s", pb, want)
	}
	eb, stopB := start(t, b, pb)
	id := uint64(eb.Server.MemberID())
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{a.clientURL("127.0.0.1")}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ms, err := cli.MemberList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	started := 0
	for _, m := range ms.Members {
		if m.Name != "" {
			started++
		}
	}
	if len(ms.Members) != 2 || started != 2 {
		t.Fatalf("members %v, want 2 started", ms.Members)
	}
	if _, err := cli.Put(context.Background(), "k", "v"); err != nil {
		t.Fatal(err)
	}

	// Restart b on its data: the same member, whatever the cluster says.
	stopB()
	pb2, err := Decide(context.Background(), b, refusing{t})
	if err != nil || pb2.State != "existing" {
		t.Fatalf("restart plan %+v %v", pb2, err)
	}
	eb2, _ := start(t, b, pb2)
	if got := uint64(eb2.Server.MemberID()); got != id {
		t.Fatalf("restarted member ID %x, want %x", got, id)
	}
}

// TestUserdataShellInjectionRefused: the name and peers come from userdata and end up in
// /run/etcd/env, which the etcd service's shell sources; anything but an address or a DNS name
// (a command substitution, a newline adding a variable, a quote) is refused before it is
// written, as are an empty or oversized peer list and a name that is not a peer.
func TestUserdataShellInjectionRefused(t *testing.T) {
	peers := []string{"10.99.1.11", "10.99.1.12", "etcd-3.example.com"}
	if err := (Config{Name: "10.99.1.11", Peers: peers}).Validate(); err != nil {
		t.Fatalf("good userdata refused: %v", err)
	}
	if err := (Config{Name: "etcd-3.example.com", Peers: peers}).Validate(); err != nil {
		t.Fatalf("a DNS name refused: %v", err)
	}
	many := make([]string, maxPeers+1)
	for i := range many {
		many[i] = "10.0.0." + strconv.Itoa(i%250+1)
	}
	for _, c := range []Config{
		{Name: "$(reboot)", Peers: append(peers, "$(reboot)")},
		{Name: "10.99.1.11\nETCD_UNSAFE_NO_FSYNC=true", Peers: peers},
		{Name: "10.99.1.11", Peers: []string{"10.99.1.11", "x'; rm -rf /var/lib/etcd; '"}},
		{Name: "10.99.1.11", Peers: []string{"10.99.1.11", "`id`"}},
		{Name: "", Peers: peers},
		{Name: "10.99.1.11", Peers: nil},
		{Name: "10.99.1.11", Peers: many},
		{Name: "10.99.1.14", Peers: peers},
		{Name: strings.Repeat("a", 64), Peers: []string{strings.Repeat("a", 64)}},
	} {
		err := c.Validate()
		if err == nil {
			t.Errorf("Validate(%q, %d peers) accepted", c.Name, len(c.Peers))
			continue
		}
		if !strings.Contains(err.Error(), "userdata") {
			t.Errorf("error does not name the userdata: %v", err)
		}
	}
}
