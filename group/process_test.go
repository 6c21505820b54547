package group

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mobykit/mobykit/group/fake"
	"github.com/mobykit/mobykit/internal/etcdtest"
	"github.com/mobykit/mobykit/launcher"
	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/discovery"
	"github.com/mobykit/mobykit/spi/rpc"
)

// The failover tests below run each group controller as its own process: this test binary
// re-executed with envProcController set runs the "group" plugin through the launcher (the
// plugin runtime `mobykit plugin start group --store etcd://...` uses) on its own plugin
// directory, where the test serves the fake instance and flavor plugins on unix sockets.
const (
	envProcController = "MOBYKIT_TEST_GROUP_CONTROLLER" // the plugin directory
	envProcStore      = "MOBYKIT_TEST_GROUP_STORE"
	envProcLease      = "MOBYKIT_TEST_GROUP_LEASE"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envProcController); dir != "" {
		os.Exit(runProcController(dir))
	}
	os.Exit(m.Run())
}

func runProcController(dir string) int {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	ttl, err := time.ParseDuration(os.Getenv(envProcLease))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	so := StoreOptions{Store: os.Getenv(envProcStore), LeaseTTL: ttl}
	launcher.Register("test-group-proc", func(ctx context.Context, o launcher.Options) ([]rpc.Plugin, error) {
		c, err := OpenService(ctx, OpenOptions{Store: so, Address: o.Address, Logger: o.Logger,
			Find: func(l string) (string, error) { return discovery.Find(o.Dir, l) }})
		if err != nil {
			return nil, err
		}
		go func() { <-ctx.Done(); c.Stop() }()
		return []rpc.Plugin{rpc.Group(c)}, nil
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := launcher.Run(ctx, dir, []launcher.Spec{{Kind: "test-group-proc", Name: "group"}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// procCtrl is one controller process.
type procCtrl struct {
	name string
	dir  string // its plugin directory: its group socket and its view of the fake plugins
	sock string
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// procCluster is a 3-member etcd, one fake cloud, and controller processes, each calling the
// cloud through its own sockets so that every call is attributed to the process that made it.
type procCluster struct {
	t     *testing.T
	etcd  *etcdtest.Cluster
	cli   *clientv3.Client
	cloud *fake.Cloud
	lease time.Duration

	mu    sync.Mutex
	ctrls map[string]*procCtrl
	// calls that change the world ("a Provision", "b Destroy", ...), in order.
	calls []string
	// delay of every Provision (the cloud is slow: a rollout takes a while).
	delay time.Duration
	// prepares counts Flavor.Prepare calls per controller; onPrepare, when set, is called
	// (unlocked) with the count before one is served.
	prepares  map[string]int
	onPrepare func(ctrl string, n int)
}

func newProcCluster(t *testing.T, lease time.Duration) *procCluster {
	pc := &procCluster{t: t, etcd: etcdtest.StartCluster(t, 3), cloud: fake.New(nil), lease: lease, ctrls: map[string]*procCtrl{},
		prepares: map[string]int{}}
	pc.cli = pc.etcd.Client(t)
	return pc
}

func (pc *procCluster) record(ctrl, method string) {
	pc.mu.Lock()
	pc.calls = append(pc.calls, ctrl+" "+method)
	pc.mu.Unlock()
}

// callsBy counts the world-changing calls ctrl made (method "" for all of them).
func (pc *procCluster) callsBy(ctrl, method string) (n int) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for _, c := range pc.calls {
		who, what, _ := strings.Cut(c, " ")
		if (ctrl == "" || who == ctrl) && (method == "" || what == method) {
			n++
		}
	}
	return n
}

// procInstance is the fake instance plugin as one controller reaches it.
type procInstance struct {
	*fake.Cloud
	pc   *procCluster
	name string
}

func (i procInstance) Provision(ctx context.Context, s spi.Spec) (*spi.ID, error) {
	i.pc.record(i.name, "Provision")
	i.pc.mu.Lock()
	d := i.pc.delay
	i.pc.mu.Unlock()
	time.Sleep(d)
	return i.Cloud.Provision(ctx, s)
}

func (i procInstance) Destroy(ctx context.Context, id spi.ID, c spi.Context) error {
	i.pc.record(i.name, "Destroy")
	return i.Cloud.Destroy(ctx, id, c)
}

func (i procInstance) Label(ctx context.Context, id spi.ID, l map[string]string) error {
	i.pc.record(i.name, "Label")
	return i.Cloud.Label(ctx, id, l)
}

type procFlavor struct {
	spi.Flavor
	pc   *procCluster
	name string
}

func (f procFlavor) Prepare(ctx context.Context, props spi.Any, s spi.Spec, a spi.Allocation, ix spi.Index) (spi.Spec, error) {
	f.pc.mu.Lock()
	f.pc.prepares[f.name]++
	n, hook := f.pc.prepares[f.name], f.pc.onPrepare
	f.pc.mu.Unlock()
	if hook != nil {
		hook(f.name, n)
	}
	return f.Flavor.Prepare(ctx, props, s, a, ix)
}

func (f procFlavor) Drain(ctx context.Context, props spi.Any, d spi.Description) error {
	f.pc.record(f.name, "Drain")
	return f.Flavor.Drain(ctx, props, d)
}

// start starts controller process name.
func (pc *procCluster) start(name string) *procCtrl {
	t := pc.t
	dir, err := os.MkdirTemp("", "grp"+name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for sock, p := range map[string]rpc.Plugin{
		"fi": rpc.Instance(procInstance{Cloud: pc.cloud, pc: pc, name: name}),
		"ff": rpc.Flavor(procFlavor{Flavor: pc.cloud.Flavor(), pc: pc, name: name}),
	} {
		srv, err := rpc.Start(filepath.Join(dir, sock), p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
	}
	var hosts []string
	for _, e := range pc.etcd.Endpoints() {
		hosts = append(hosts, strings.TrimPrefix(e, "http://"))
	}
	c := &procCtrl{name: name, dir: dir, sock: filepath.Join(dir, "group"), log: &lockedBuffer{}, done: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(os.Environ(), envProcController+"="+dir, envProcStore+"=etcd://"+strings.Join(hosts, ","),
		envProcLease+"="+pc.lease.String(), EnvPollInterval+"=50ms", "INFRAKIT_HOME="+dir)
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		c.cmd.Process.Signal(syscall.SIGCONT)
		c.cmd.Process.Kill()
		<-c.done
		if t.Failed() {
			t.Logf("controller %s log:\n%s", name, c.log)
		}
	})
	pc.mu.Lock()
	pc.ctrls[name] = c
	pc.mu.Unlock()
	waitFor(t, "controller "+name+" to serve", 60*time.Second, func() bool { return rpc.Alive(c.sock) })
	return c
}

// leader waits until the election names a running controller other than except, and returns it.
func (pc *procCluster) leader(except string, timeout time.Duration) *procCtrl {
	var lead *procCtrl
	waitFor(pc.t, "a leader other than "+except, timeout, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := pc.cli.Get(ctx, DefaultElection+"/", clientv3.WithFirstCreate()...)
		if err != nil || len(resp.Kvs) == 0 {
			return false
		}
		pc.mu.Lock()
		defer pc.mu.Unlock()
		for _, c := range pc.ctrls {
			if c.sock == string(resp.Kvs[0].Value) && c.name != except {
				lead = c
				return true
			}
		}
		return false
	})
	return lead
}

func (pc *procCluster) client(c *procCtrl) *rpc.GroupClient {
	return rpc.NewGroupClient(c.sock, "group")
}

func procSpec(size int, version string) spi.GroupSpec {
	return spi.GroupSpec{ID: "web", Properties: spi.Any(fmt.Sprintf(`{"Allocation":{"Size":%d},"Instance":{"Plugin":"fi","Properties":{"v":%q}},"Flavor":{"Plugin":"ff","Properties":{}},"Updating":{"MaxSurge":1,"MaxUnavailable":1}}`, size, version))}
}

// invariants checks, after every Provision and Destroy the cloud serves (with it locked), that
// the group never has more than size+MaxSurge members nor fewer than size-MaxUnavailable
// healthy ones once it has been complete.
type invariants struct {
	mu         sync.Mutex
	size       int
	armed      bool
	violations []string
}

func (iv *invariants) install(c *fake.Cloud) {
	check := func(c *fake.Cloud, op string) {
		iv.mu.Lock()
		defer iv.mu.Unlock()
		if !iv.armed {
			return
		}
		ms := c.SnapshotLocked("web")
		healthy := 0
		for _, m := range ms {
			if m.Health == spi.Healthy {
				healthy++
			}
		}
		if len(ms) > iv.size+1 {
			iv.violations = append(iv.violations, fmt.Sprintf("after %s: %d members > size %d + MaxSurge 1", op, len(ms), iv.size))
		}
		if op == "Destroy" && healthy < iv.size-1 {
			iv.violations = append(iv.violations, fmt.Sprintf("after Destroy: %d healthy < size %d - MaxUnavailable 1", healthy, iv.size))
		}
	}
	c.OnProvision = func(c *fake.Cloud) { check(c, "Provision") }
	c.OnDestroy = func(c *fake.Cloud) { check(c, "Destroy") }
}

func (iv *invariants) arm(size int) {
	iv.mu.Lock()
	iv.size, iv.armed = size, true
	iv.mu.Unlock()
}

func (iv *invariants) verify(t *testing.T) {
	t.Helper()
	iv.mu.Lock()
	defer iv.mu.Unlock()
	if len(iv.violations) > 0 {
		t.Fatalf("invariants broken:\n%s", strings.Join(iv.violations, "\n"))
	}
}

func healthyAfter(d time.Duration) fake.HealthFunc {
	return func(inst fake.Instance, age time.Duration) spi.Health {
		if age < d {
			return spi.Unknown
		}
		return spi.Healthy
	}
}

// startConverged starts controllers a, b and c, waits for a leader, has a follower converge the
// group on v1 of size members, and returns the leader.
func (pc *procCluster) startConverged(size int) *procCtrl {
	for _, n := range []string{"a", "b", "c"} {
		pc.start(n)
	}
	lead := pc.leader("", 60*time.Second)
	pc.converge(pc.other(lead.name), size)
	return lead
}

// newRollout readies a rollout under watch: members turn healthy only health after they start
// and every Provision takes delay (so a rollout stays under way a while), three controllers run
// size healthy v1 members, and from now on every Provision and Destroy is checked against
// MaxSurge/MaxUnavailable. It returns the cluster, the checks and the leader.
func newRollout(t *testing.T, size int, health, delay time.Duration) (*procCluster, *invariants, *procCtrl) {
	pc := newProcCluster(t, 2*time.Second)
	pc.cloud.Health = healthyAfter(health)
	pc.delay = delay
	iv := &invariants{}
	iv.install(pc.cloud)
	lead := pc.startConverged(size)
	iv.arm(size)
	return pc, iv, lead
}

// commitV2 commits v2 of size members through a controller other than lead and returns its
// config hash.
func (pc *procCluster) commitV2(lead *procCtrl, size int) string {
	v2 := procSpec(size, "v2")
	h2 := hashOf(pc.t, v2)
	if _, err := pc.client(pc.other(lead.name)).CommitGroup(context.Background(), v2, false); err != nil {
		pc.t.Fatalf("commit v2: %v", err)
	}
	return h2
}

// converge commits v1 of size members through a follower and waits for them to be healthy.
func (pc *procCluster) converge(via *procCtrl, size int) {
	t := pc.t
	if _, err := pc.client(via).CommitGroup(context.Background(), procSpec(size, "v1"), false); err != nil {
		t.Fatalf("commit v1 through %s: %v", via.name, err)
	}
	waitFor(t, "healthy v1 members", 60*time.Second, func() bool {
		h := 0
		ms := pc.cloud.Snapshot("web")
		for _, m := range ms {
			if m.Health == spi.Healthy {
				h++
			}
		}
		return len(ms) == size && h == size
	})
}

func (pc *procCluster) other(names ...string) *procCtrl {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for _, n := range []string{"a", "b", "c"} {
		skip := false
		for _, x := range names {
			skip = skip || x == n
		}
		if c := pc.ctrls[n]; c != nil && !skip {
			return c
		}
	}
	pc.t.Fatal("no other controller")
	return nil
}

// Three controller processes on a 3-member etcd; the leader is killed with SIGKILL in the middle
// of a rollout (new members are slow to provision and to become healthy, so it is really under
// way: checked); another controller takes over and finishes it, no member is created twice and
// MaxSurge/MaxUnavailable hold after every plugin call across the handover.
func TestProcessLeaderKilledMidRollout(t *testing.T) {
	const size = 6
	pc, iv, lead := newRollout(t, size, 400*time.Millisecond, 150*time.Millisecond)
	h2 := pc.commitV2(lead, size)
	waitFor(t, "the rollout under way", 60*time.Second, func() bool { _, cur := versions(pc.cloud, "web", h2); return cur >= 2 })
	if err := lead.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-lead.done
	if _, cur := versions(pc.cloud, "web", h2); cur >= size {
		t.Fatalf("the rollout was done (%d/%d) when the leader was killed: slow the cloud down", cur, size)
	}
	killedCalls := pc.callsBy(lead.name, "")
	next := pc.leader(lead.name, 30*time.Second)
	waitFor(t, "the new leader to finish the rollout", 120*time.Second, func() bool {
		st, err := pc.client(pc.other(lead.name)).UpdateStatus(context.Background(), "web")
		n, cur := versions(pc.cloud, "web", h2)
		return err == nil && st.Phase == spi.PhaseIdle && n == size && cur == size
	})
	if got := pc.callsBy(lead.name, ""); got != killedCalls {
		t.Fatalf("the killed leader made %d calls after it died", got-killedCalls)
	}
	if pc.callsBy(next.name, "") == 0 {
		t.Fatalf("the new leader %s made no call: who finished the rollout? %v", next.name, pc.calls)
	}
	// size v1 members, then one replacement for each: nothing created twice.
	if n := pc.callsBy("", "Provision"); n != 2*size {
		t.Fatalf("%d provisions, want %d (v1 then one v2 replacement each): %v", n, 2*size, pc.calls)
	}
	iv.verify(t)
}

// The leader is stopped with SIGSTOP while the fake flavor serves its Prepare of a rollout's
// member (the call is in flight, a Provision comes next) and stays stopped past its lease; another controller takes over and acts; the old
// leader is continued with SIGCONT: it makes no further world-changing call (its leadership
// check refuses them), says that its leadership ended, and the rollout ends with nothing created
// twice.
func TestProcessPausedLeaderWakesAfterTakeover(t *testing.T) {
	const size = 4
	pc, iv, lead := newRollout(t, size, 300*time.Millisecond, 100*time.Millisecond)
	stopped := make(chan struct{})
	var once sync.Once
	pc.mu.Lock()
	pc.onPrepare = func(ctrl string, n int) {
		// The leader prepares its second new member of the rollout: stop it while that call is
		// in flight, so that the next thing it does when it wakes is a Provision.
		if ctrl == lead.name && n == size+2 {
			once.Do(func() {
				lead.cmd.Process.Signal(syscall.SIGSTOP)
				close(stopped)
			})
		}
	}
	pc.mu.Unlock()
	h2 := pc.commitV2(lead, size)
	select {
	case <-stopped:
	case <-time.After(60 * time.Second):
		t.Fatal("the leader prepared no second member in the rollout")
	}
	next := pc.leader(lead.name, 30*time.Second)
	waitFor(t, "the new leader to act", 60*time.Second, func() bool { return pc.callsBy(next.name, "") > 0 })
	before := pc.callsBy(lead.name, "")
	logBefore := len(lead.log.String())
	if err := lead.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the old leader to say its leadership ended", 60*time.Second, func() bool {
		return strings.Contains(lead.log.String()[logBefore:], "leadership ended")
	})
	waitFor(t, "the new leader to finish the rollout", 120*time.Second, func() bool {
		st, err := pc.client(next).UpdateStatus(context.Background(), "web")
		n, cur := versions(pc.cloud, "web", h2)
		return err == nil && st.Phase == spi.PhaseIdle && n == size && cur == size
	})
	if got := pc.callsBy(lead.name, ""); got != before {
		t.Fatalf("the old leader made %d world-changing calls after it woke: %v", got-before, pc.calls)
	}
	if n := pc.callsBy("", "Provision"); n != 2*size {
		t.Fatalf("%d provisions, want %d: %v", n, 2*size, pc.calls)
	}
	iv.verify(t)
	t.Logf("old leader after SIGCONT:\n%s", lead.log.String()[logBefore:])
}

// With one etcd member of three stopped the controllers carry on (a killed member is replaced, a
// commit through a follower takes effect); with two stopped the leader stops acting and logs why,
// a follower's answer says etcd cannot be reached; once the members are back a leader replaces
// the member killed meanwhile.
func TestProcessEtcdQuorumLoss(t *testing.T) {
	pc := newProcCluster(t, 2*time.Second)
	pc.cloud.Health = healthyAfter(0)
	lead := pc.startConverged(3)
	ctx := context.Background()
	kill := func() {
		ms := pc.cloud.Snapshot("web")
		if len(ms) == 0 {
			t.Fatal("no member to kill")
		}
		pc.cloud.Kill(ms[0].ID)
	}
	members := func() int { n, _ := versions(pc.cloud, "web", ""); return n }

	pc.etcd.Nodes[0].Stop()
	kill()
	waitFor(t, "the killed member replaced with one etcd member down", 60*time.Second, func() bool { return members() == 3 })
	if _, err := pc.client(pc.other(lead.name)).CommitGroup(ctx, procSpec(4, "v1"), false); err != nil {
		t.Fatalf("commit with one etcd member down: %v", err)
	}
	waitFor(t, "the scale-up with one etcd member down", 60*time.Second, func() bool { return members() == 4 })

	lead = pc.leader("", 30*time.Second)
	logBefore := len(lead.log.String())
	pc.etcd.Nodes[1].Stop()
	waitFor(t, "the leader to say its leadership ended", 60*time.Second, func() bool {
		return strings.Contains(lead.log.String()[logBefore:], "leadership ended")
	})
	callsLost := pc.callsBy("", "")
	kill()
	// Every controller's loop gets the chance to act several times over (poll 50ms, lease 2s).
	time.Sleep(3 * pc.lease)
	if got := pc.callsBy("", ""); got != callsLost {
		t.Fatalf("%d world-changing calls without an etcd quorum: %v", got-callsLost, pc.calls)
	}
	if members() != 3 {
		t.Fatalf("%d members without an etcd quorum, want the 3 left", members())
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err := pc.client(pc.other()).UpdateStatus(cctx, "web")
	cancel()
	if err == nil || !strings.Contains(err.Error(), "quorum") {
		t.Fatalf("a controller's UpdateStatus without an etcd quorum: %v, want an error saying etcd has no quorum", err)
	}
	if !strings.Contains(lead.log.String()[logBefore:], "without a quorum") {
		t.Fatalf("the old leader does not say why it does not lead:\n%s", lead.log.String()[logBefore:])
	}
	t.Logf("without quorum: %v", err)

	if err := pc.etcd.Nodes[1].Restart(); err != nil {
		t.Fatal(err)
	}
	if err := pc.etcd.Nodes[0].Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the killed member replaced after etcd came back", 120*time.Second, func() bool { return members() == 4 })
	t.Logf("leader %s after losing quorum:\n%s", lead.name, lead.log.String()[logBefore:])
}
