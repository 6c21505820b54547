package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Config is what a member knows before etcd starts: its own name (the group's logical ID, an
// address), every member's address (userdata), its data folder and etcd's ports.
type Config struct {
	Name    string   // this member's name and address
	Peers   []string // every member's address, this one included
	DataDir string
	// PeerPort and ClientPort default to 2380 and 2379.
	PeerPort, ClientPort int
	// Timeout bounds the attempt to reach a running cluster; default 5s.
	Timeout time.Duration
}

// hostname is what a member's name and its peers may be: an IP address or a DNS name.
var hostname = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

// maxPeers bounds the peer list read from userdata (etcd itself advises at most 7 members).
const maxPeers = 64

// Validate checks what came from userdata before any of it reaches etcd's environment file,
// which a shell sources: the name and every peer must be an IP address or a DNS name (no
// spaces, quotes, `$` or newlines), the peers at most 64 and the name one of them.
func (c Config) Validate() error {
	ok := func(h string) bool { return len(h) <= 253 && (net.ParseIP(h) != nil || hostname.MatchString(h)) }
	if !ok(c.Name) {
		return fmt.Errorf("etcd-member: userdata name %q is not an IP address or a DNS name", c.Name)
	}
	if len(c.Peers) == 0 || len(c.Peers) > maxPeers {
		return fmt.Errorf("etcd-member: userdata peers: %d peers, want 1 to %d", len(c.Peers), maxPeers)
	}
	self := false
	for _, p := range c.Peers {
		if !ok(p) {
			return fmt.Errorf("etcd-member: userdata peer %q is not an IP address or a DNS name", p)
		}
		self = self || p == c.Name
	}
	if !self {
		return fmt.Errorf("etcd-member: userdata name %q is not among the peers %q", c.Name, c.Peers)
	}
	return nil
}

func (c Config) peerURL(host string) string {
	p := c.PeerPort
	if p == 0 {
		p = 2380
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(p))
}

func (c Config) clientURL(host string) string {
	p := c.ClientPort
	if p == 0 {
		p = 2379
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(p))
}

// Member is one entry of etcd's member list.
type Member struct {
	ID       uint64
	Name     string // "" while the member was added but never started
	PeerURLs []string
}

// Cluster is the running cluster as the member sees it through its peers.
type Cluster interface {
	Members(ctx context.Context) ([]Member, error)
	Add(ctx context.Context, peerURL string) (id uint64, members []Member, err error)
	Remove(ctx context.Context, id uint64) error
}

// Plan is how etcd starts: ETCD_INITIAL_CLUSTER_STATE and ETCD_INITIAL_CLUSTER, and why.
type Plan struct {
	State          string // "new" or "existing"
	InitialCluster string // name=peerURL,...
	Why            string
}

// hasData says whether dir holds an etcd member (its member/ folder): etcd then starts
// from it, with its member ID, and ignores the initial cluster settings.
func hasData(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, "member"))
	return err == nil && st.IsDir()
}

// static is the initial cluster from the userdata: every peer named by its address.
func (c Config) static() string {
	var parts []string
	for _, p := range c.Peers {
		parts = append(parts, p+"="+c.peerURL(p))
	}
	return strings.Join(parts, ",")
}

// Decide chooses how etcd starts:
//
//   - the data folder holds a member (a replaced machine whose disk came back): it restarts
//     as that member, with its ID and data ("existing"; etcd ignores the initial cluster);
//   - no data and no peer answers: the cluster is being created, every member at once, from
//     the peers in the userdata ("new");
//   - no data and the cluster answers: the member joins it. Listed but never started (a
//     member of the initial cluster that booted late, or one added before a crash): it
//     starts with the current membership. Not listed (a brand-new logical ID): it is added
//     (`member add`). Listed and started although the data is gone (a lost disk): its old
//     identity is removed and it is added again.
func Decide(ctx context.Context, c Config, cl Cluster) (Plan, error) {
	if c.Name == "" || len(c.Peers) == 0 {
		return Plan{}, errors.New("etcd-member: no name or no peers in the userdata")
	}
	if hasData(c.DataDir) {
		return Plan{State: "existing", InitialCluster: c.static(), Why: "data folder holds a member: restart as it"}, nil
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	lctx, cancel := context.WithTimeout(ctx, timeout)
	ms, err := cl.Members(lctx)
	cancel()
	if err != nil {
		return Plan{State: "new", InitialCluster: c.static(), Why: fmt.Sprintf("no running cluster reached (%v): create it", err)}, nil
	}
	self := c.peerURL(c.Name)
	var mine *Member
	for i, m := range ms {
		for _, u := range m.PeerURLs {
			if u == self {
				mine = &ms[i]
			}
		}
	}
	why := ""
	switch {
	case mine != nil && mine.Name == "":
		why = fmt.Sprintf("listed as %x, never started: join", mine.ID)
	case mine != nil:
		if err := cl.Remove(ctx, mine.ID); err != nil {
			return Plan{}, fmt.Errorf("etcd-member: remove %x (started, but this member has no data): %w", mine.ID, err)
		}
		fallthrough
	default:
		id, added, err := cl.Add(ctx, self)
		if err != nil {
			return Plan{}, fmt.Errorf("etcd-member: member add %s: %w", self, err)
		}
		ms = added
		why = fmt.Sprintf("added as %x: join", id)
		if mine != nil {
			why = fmt.Sprintf("data lost: old member %x removed, added as %x: join", mine.ID, id)
		}
	}
	return Plan{State: "existing", InitialCluster: c.membership(ms), Why: why}, nil
}

// membership is the initial cluster of a joining member: every member's peer URLs under its
// name, an unstarted one (no name yet) under the name it will take (its address; this member's
// own name for itself).
func (c Config) membership(ms []Member) string {
	self := c.peerURL(c.Name)
	var parts []string
	for _, m := range ms {
		for _, u := range m.PeerURLs {
			name := m.Name
			if u == self {
				name = c.Name
			} else if name == "" {
				if pu, err := url.Parse(u); err == nil {
					name = pu.Hostname()
				}
			}
			parts = append(parts, name+"="+u)
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// Env is the environment etcd starts with, as KEY=value lines.
func (c Config) Env(p Plan) string {
	lines := []string{
		"ETCD_NAME=" + c.Name,
		"ETCD_DATA_DIR=" + c.DataDir,
		"ETCD_INITIAL_CLUSTER=" + p.InitialCluster,
		"ETCD_INITIAL_CLUSTER_STATE=" + p.State,
		"ETCD_INITIAL_ADVERTISE_PEER_URLS=" + c.peerURL(c.Name),
		"ETCD_LISTEN_PEER_URLS=" + c.peerURL(c.Name),
		"ETCD_ADVERTISE_CLIENT_URLS=" + c.clientURL(c.Name),
		"ETCD_LISTEN_CLIENT_URLS=" + c.clientURL("0.0.0.0"),
	}
	return strings.Join(lines, "\n") + "\n"
}

// etcdCluster reaches the cluster through the other members' client URLs.
type etcdCluster struct {
	endpoints []string
}

func (c Config) cluster() *etcdCluster {
	var eps []string
	for _, p := range c.Peers {
		if p != c.Name {
			eps = append(eps, c.clientURL(p))
		}
	}
	return &etcdCluster{endpoints: eps}
}

func (e *etcdCluster) client(ctx context.Context) (*clientv3.Client, error) {
	if len(e.endpoints) == 0 {
		return nil, errors.New("no other member")
	}
	return clientv3.New(clientv3.Config{Endpoints: e.endpoints, DialTimeout: 2 * time.Second, Context: ctx, Logger: zap.NewNop()})
}

func members(r *clientv3.MemberListResponse) []Member {
	var out []Member
	for _, m := range r.Members {
		out = append(out, Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs})
	}
	return out
}

func (e *etcdCluster) Members(ctx context.Context) ([]Member, error) {
	c, err := e.client(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	r, err := c.MemberList(ctx)
	if err != nil {
		return nil, err
	}
	return members(r), nil
}

func (e *etcdCluster) Add(ctx context.Context, peerURL string) (uint64, []Member, error) {
	c, err := e.client(ctx)
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r, err := c.MemberAdd(ctx, []string{peerURL})
	if err != nil {
		return 0, nil, err
	}
	return r.Member.ID, members(&clientv3.MemberListResponse{Members: r.Members}), nil
}

func (e *etcdCluster) Remove(ctx context.Context, id uint64) error {
	c, err := e.client(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = c.MemberRemove(ctx, id)
	return err
}
