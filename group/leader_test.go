package group

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mobykit/mobykit/group/fake"
	"github.com/mobykit/mobykit/group/store/etcdstore"
	"github.com/mobykit/mobykit/internal/etcdtest"
	"github.com/mobykit/mobykit/spi"
)

// calls records which member made each call that changes the world.
type calls struct {
	mu  sync.Mutex
	log []string
}

func (c *calls) add(s string) {
	c.mu.Lock()
	c.log = append(c.log, s)
	c.mu.Unlock()
}

func (c *calls) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprint(c.log)
}

func (c *calls) by(member string) (n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.log {
		if len(s) > len(member) && s[:len(member)+1] == member+" " {
			n++
		}
	}
	return n
}

// memberPlugins is one member's view of the shared fake cloud: it records its Provision and
// Destroy calls and, when paused is armed, blocks once in Flavor.Prepare (a process stopped
// mid-pass, between planning its creates and making them).
type memberPlugins struct {
	name   string
	cloud  *fake.Cloud
	calls  *calls
	paused *pauseOnce
}

type pauseOnce struct {
	mu     sync.Mutex
	armed  bool
	hit    chan struct{}
	resume chan struct{}
}

func (p memberPlugins) Instance(spi.PluginName) (spi.Instance, error) { return memberInstance{p}, nil }
func (p memberPlugins) Flavor(spi.PluginName) (spi.Flavor, error) {
	return memberFlavor{Flavor: p.cloud.Flavor(), po: p.paused}, nil
}

type memberInstance struct{ p memberPlugins }

func (i memberInstance) Validate(ctx context.Context, props spi.Any) error {
	return i.p.cloud.Validate(ctx, props)
}

func (i memberInstance) Provision(ctx context.Context, s spi.Spec) (*spi.ID, error) {
	id, err := i.p.cloud.Provision(ctx, s)
	if err == nil {
		i.p.calls.add(i.p.name + " provision " + string(*id))
	}
	return id, err
}

func (i memberInstance) Label(ctx context.Context, id spi.ID, l map[string]string) error {
	return i.p.cloud.Label(ctx, id, l)
}

func (i memberInstance) Destroy(ctx context.Context, id spi.ID, c spi.Context) error {
	i.p.calls.add(i.p.name + " destroy " + string(id))
	return i.p.cloud.Destroy(ctx, id, c)
}

func (i memberInstance) DescribeInstances(ctx context.Context, tags map[string]string, props bool) ([]spi.Description, error) {
	return i.p.cloud.DescribeInstances(ctx, tags, props)
}

// memberFlavor pauses in Prepare: the pass has planned its creates from what it observed and
// is about to provision the first.
type memberFlavor struct {
	spi.Flavor
	po *pauseOnce
}

func (f memberFlavor) Prepare(ctx context.Context, props spi.Any, s spi.Spec, a spi.Allocation, ix spi.Index) (spi.Spec, error) {
	if po := f.po; po != nil {
		po.mu.Lock()
		armed := po.armed
		po.armed = false
		po.mu.Unlock()
		if armed {
			close(po.hit)
			<-po.resume
		}
	}
	return f.Flavor.Prepare(ctx, props, s, a, ix)
}

type cluster struct {
	t       *testing.T
	srv     *etcdtest.Server
	cloud   *fake.Cloud
	calls   *calls
	members map[string]*Member
	mu      sync.Mutex
}

func newCluster(t *testing.T) *cluster {
	cl := &cluster{t: t, srv: etcdtest.Start(t), cloud: fake.New(nil), calls: &calls{}, members: map[string]*Member{}}
	return cl
}

func (cl *cluster) add(name string, po *pauseOnce, deaf bool) *Member {
	cli := cl.srv.Client(cl.t)
	st, err := etcdstore.New(cli, "")
	if err != nil {
		cl.t.Fatal(err)
	}
	m, err := newMember(memberPlugins{name: name, cloud: cl.cloud, calls: cl.calls, paused: po},
		Options{PollInterval: 20 * time.Millisecond, Logger: quiet()},
		ElectionOptions{Client: cli, Store: st, LeaseTTL: 2 * time.Second, Address: name,
			Forward: func(addr string) Forwarder {
				cl.mu.Lock()
				defer cl.mu.Unlock()
				return cl.members[addr]
			}})
	if err != nil {
		cl.t.Fatal(err)
	}
	m.deaf = deaf
	cl.mu.Lock()
	cl.members[name] = m
	cl.mu.Unlock()
	m.start()
	cl.t.Cleanup(m.Stop)
	return m
}

// leader waits for exactly one member to lead and returns its name.
func (cl *cluster) leader(except string) string {
	var name string
	waitFor(cl.t, "one leader", 30*time.Second, func() bool {
		cl.mu.Lock()
		defer cl.mu.Unlock()
		n := 0
		for k, m := range cl.members {
			if k != except && m.Leading() {
				n++
				name = k
			}
		}
		return n == 1
	})
	return name
}

func (cl *cluster) follower(leader string) *Member {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for k, m := range cl.members {
		if k != leader {
			return m
		}
	}
	cl.t.Fatal("no follower")
	return nil
}

// Three controllers on one etcd: exactly one leads; commits through a follower reach it; the
// leader is stopped mid-rollout and another takes over and finishes the rollout with no member
// created twice and MaxSurge/MaxUnavailable holding across the handover (checked after every
// plugin call).
func TestLeaderFailoverMidRollout(t *testing.T) {
	cl := newCluster(t)
	const size = 6
	var mu sync.Mutex
	var violations []string
	healthyAfter := 150 * time.Millisecond
	cl.cloud.Health = func(inst fake.Instance, age time.Duration) spi.Health {
		if age < healthyAfter {
			return spi.Unknown
		}
		return spi.Healthy
	}
	check := func(c *fake.Cloud, op string) {
		ms := c.SnapshotLocked("web")
		healthy := 0
		for _, m := range ms {
			if m.Health == spi.Healthy {
				healthy++
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if len(ms) > size+1 {
			violations = append(violations, fmt.Sprintf("after %s: %d members > size %d + surge 1", op, len(ms), size))
		}
		if op == "destroy" && healthy < size-1 && len(ms) >= size {
			violations = append(violations, fmt.Sprintf("after destroy: %d healthy < size %d - unavailable 1", healthy, size))
		}
	}
	for _, n := range []string{"a", "b", "c"} {
		cl.add(n, nil, false)
	}
	lead := cl.leader("")
	ctx := context.Background()
	v1 := spec("web", size, nil, "v1", false, `{"MaxSurge":1,"MaxUnavailable":1}`)
	if _, err := cl.follower(lead).CommitGroup(ctx, v1, false); err != nil {
		t.Fatalf("commit through a follower: %v", err)
	}
	waitFor(t, "6 healthy v1 members", 30*time.Second, func() bool {
		ms := cl.cloud.Snapshot("web")
		h := 0
		for _, m := range ms {
			if m.Health == spi.Healthy {
				h++
			}
		}
		return len(ms) == size && h == size
	})
	cl.cloud.OnProvision = func(c *fake.Cloud) { check(c, "provision") }
	cl.cloud.OnDestroy = func(c *fake.Cloud) { check(c, "destroy") }
	v2 := spec("web", size, nil, "v2", false, `{"MaxSurge":1,"MaxUnavailable":1}`)
	h2 := hashOf(t, v2)
	if _, err := cl.follower(lead).CommitGroup(ctx, v2, false); err != nil {
		t.Fatalf("commit v2 through a follower: %v", err)
	}
	waitFor(t, "the rollout under way", 30*time.Second, func() bool { _, cur := versions(cl.cloud, "web", h2); return cur >= 2 })
	provisionedBefore := cl.calls.by(lead)
	cl.members[lead].Stop()
	next := cl.leader(lead)
	if next == lead {
		t.Fatal("the stopped leader still leads")
	}
	waitFor(t, "the new leader to finish the rollout", 60*time.Second, func() bool {
		st, err := cl.members[next].UpdateStatus(ctx, "web")
		n, cur := versions(cl.cloud, "web", h2)
		return err == nil && st.Phase == spi.PhaseIdle && n == size && cur == size
	})
	if got := cl.calls.by(lead); got != provisionedBefore {
		t.Errorf("the stopped leader made %d calls after it stopped", got-provisionedBefore)
	}
	cl.calls.mu.Lock()
	provisions := 0
	for _, s := range cl.calls.log {
		var who, what, id string
		fmt.Sscan(s, &who, &what, &id)
		if what == "provision" {
			provisions++
		}
	}
	cl.calls.mu.Unlock()
	// 6 for v1 and exactly one replacement for each of them: nothing created twice.
	if provisions != 2*size {
		t.Errorf("%d provisions, want %d (6 v1 + 6 v2): %v", provisions, 2*size, cl.calls)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(violations) > 0 {
		t.Fatalf("invariants broken across the handover:\n%v", violations)
	}
	for _, n := range []string{"a", "b", "c"} {
		if n != next && cl.members[n].Leading() {
			t.Fatalf("%s leads next to %s", n, next)
		}
	}
}

// A leader paused mid-pass (holding members it observed) whose lease is revoked meanwhile, and
// which has not noticed, wakes after another member took over: its stale plan (create members
// the new leader already created) is refused at the leadership check and its store writes are
// fenced; it stops leading and the group is not over-provisioned.
func TestPausedLeaderCannotActAfterLosingLease(t *testing.T) {
	cl := newCluster(t)
	po := &pauseOnce{hit: make(chan struct{}), resume: make(chan struct{})}
	a := cl.add("a", po, true)
	if cl.leader("") != "a" {
		t.Fatal("a does not lead")
	}
	ctx := context.Background()
	if _, err := a.CommitGroup(ctx, spec("web", 3, nil, "v1", false, ""), false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 members", 30*time.Second, func() bool { n, _ := versions(cl.cloud, "web", ""); return n == 3 })
	oldStore := a.termStore()
	// Pause a's next pass between planning 3 creates and making them, then scale to 6.
	po.mu.Lock()
	po.armed = true
	po.mu.Unlock()
	if _, err := a.CommitGroup(ctx, spec("web", 6, nil, "v1", false, ""), false); err != nil {
		t.Fatal(err)
	}
	<-po.hit
	// While a is paused its lease goes (revoked from another client, as if it expired).
	cli := cl.srv.Client(t)
	resp, err := cli.Get(ctx, DefaultElection+"/", clientv3.WithFirstCreate()...)
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "a" {
		t.Fatalf("election key: %v %v", resp, err)
	}
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	b := cl.add("b", nil, false)
	if cl.leader("a") != "b" {
		t.Fatal("b does not lead")
	}
	waitFor(t, "b to scale to 6", 30*time.Second, func() bool { n, _ := versions(cl.cloud, "web", ""); return n == 6 })
	before := cl.calls.by("a")
	// a wakes up with its stale view (3 members, 6 wanted).
	close(po.resume)
	waitFor(t, "a to stop leading (or over-provision)", 30*time.Second, func() bool {
		n, _ := versions(cl.cloud, "web", "")
		return !a.Leading() || n > 6
	})
	if n, _ := versions(cl.cloud, "web", ""); n > 6 {
		t.Fatalf("the paused leader acted on its stale plan after losing its lease: %d members, want 6: %v", n, cl.calls)
	}
	a.Stop()
	if got := cl.calls.by("a"); got != before {
		t.Fatalf("the paused leader made %d plugin calls after losing its lease: %v", got-before, cl.calls)
	}
	if n, _ := versions(cl.cloud, "web", ""); n != 6 {
		t.Fatalf("%d members after the paused leader woke, want 6", n)
	}
	recs, err := oldStore.List(ctx)
	if err != nil || len(recs) != 1 {
		t.Fatalf("list: %v %v", recs, err)
	}
	if err := oldStore.Put(ctx, recs[0]); !errors.Is(err, etcdstore.ErrFenced) {
		t.Fatalf("write by the old leader: %v, want ErrFenced", err)
	}
	if !b.Leading() {
		t.Fatal("b lost leadership")
	}
}
