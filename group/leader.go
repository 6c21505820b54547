package group

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/mobykit/mobykit/group/store/etcdstore"
	"github.com/mobykit/mobykit/group/types"
	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/rpc"
)

// DefaultElection is the etcd key prefix of the controllers' election.
const DefaultElection = "/mobykit/leader/group"

// DefaultLeaseTTL is the lease of a controller's session: a leader that stops renewing it (dead,
// paused, partitioned) loses leadership this long after its last renewal.
const DefaultLeaseTTL = 10 * time.Second

// ElectionOptions configure a Member.
type ElectionOptions struct {
	// Client is the etcd client; Store the records on it (unguarded: the member guards it).
	Client *clientv3.Client
	Store  *etcdstore.Store
	// Election is the election key prefix (default DefaultElection).
	Election string
	// LeaseTTL of the session (default DefaultLeaseTTL; etcd rounds to whole seconds).
	LeaseTTL time.Duration
	// Address is what this member advertises as leader: the address followers forward calls
	// to (a unix socket path, or tcp://host:port for controllers on other machines).
	Address string
	// Forward returns a client of the leader at address (default: rpc.NewGroupClient).
	Forward func(address string) Forwarder
}

// Forwarder is what a follower passes calls to: the leader's Group and rollout control.
type Forwarder interface {
	spi.Group
	spi.RolloutControl
}

// Member is one of any number of controllers sharing an etcd store. It campaigns for leadership;
// while it leads it runs a Controller whose every store write is a transaction conditional on
// its election key (its leadership) and which checks that key before every Provision, Destroy
// and Label, so that a member that lost its lease (paused, partitioned) cannot act on stale
// state. A follower answers InspectGroups from the store and forwards every other call to the
// leader. It implements spi.Group and spi.RolloutControl.
type Member struct {
	plugins Plugins
	opts    Options
	eo      ElectionOptions
	log     *slog.Logger

	mu   sync.Mutex
	term *term // nil while following
	// terms counts the terms this member has led (for tests and logs).
	terms int

	cancel context.CancelFunc
	done   chan struct{}

	// deaf (tests): do not watch the session, as a process paused past its lease that has not
	// yet seen the lease go; only the fenced writes and checks stop it.
	deaf bool
}

var (
	_ spi.Group          = (*Member)(nil)
	_ spi.RolloutControl = (*Member)(nil)
)

// term is one period of leadership.
type term struct {
	ctrl   *Controller
	store  *etcdstore.Store // guarded
	cancel context.CancelFunc
}

// StartMember starts campaigning in the background; Stop ends it (resigning if leading).
func StartMember(plugins Plugins, opts Options, eo ElectionOptions) (*Member, error) {
	m, err := newMember(plugins, opts, eo)
	if err != nil {
		return nil, err
	}
	m.start()
	return m, nil
}

func (m *Member) start() {
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go m.run(ctx)
}

func newMember(plugins Plugins, opts Options, eo ElectionOptions) (*Member, error) {
	if eo.Client == nil || eo.Store == nil {
		return nil, errors.New("group election: no etcd client or store")
	}
	if eo.Election == "" {
		eo.Election = DefaultElection
	}
	if eo.LeaseTTL <= 0 {
		eo.LeaseTTL = DefaultLeaseTTL
	}
	if eo.Forward == nil {
		eo.Forward = func(addr string) Forwarder { return rpc.NewGroupClient(addr, "group") }
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Member{plugins: plugins, opts: opts, eo: eo, log: opts.Logger.With("component", "group-election", "address", eo.Address),
		done: make(chan struct{})}, nil
}

// Stop ends the campaign: a leader stops its controller and resigns, so that another member
// takes over at once rather than after the lease.
func (m *Member) Stop() {
	m.cancel()
	<-m.done
}

// Leading reports whether this member leads now.
func (m *Member) Leading() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.term != nil
}

// Terms is how many times this member became leader.
func (m *Member) Terms() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.terms
}

// Controller is the running controller while this member leads, else nil.
func (m *Member) Controller() *Controller {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.term == nil {
		return nil
	}
	return m.term.ctrl
}

// TermStore is the guarded store of the current (or last) term: what a leader writes through.
func (m *Member) termStore() *etcdstore.Store {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.term == nil {
		return nil
	}
	return m.term.store
}

func (m *Member) run(ctx context.Context) {
	defer close(m.done)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if err := m.lead(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("leadership", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
	}
}

// lead campaigns once and, when elected, leads until the session ends, a write is fenced or
// ctx ends.
func (m *Member) lead(ctx context.Context) error {
	ttl := max(int(m.eo.LeaseTTL/time.Second), 1)
	// A bounded linearizable read first: without a quorum the session's lease grant would wait
	// silently; this says why this member does not lead (and run retries with backoff).
	if err := m.probe(ctx); err != nil {
		return err
	}
	sess, err := concurrency.NewSession(m.eo.Client, concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("etcd session: %w", err)
	}
	defer sess.Close()
	el := concurrency.NewElection(sess, m.eo.Election)
	// Campaign until elected; a session lost while waiting ends the campaign too.
	cctx, ccancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-sess.Done():
		case <-cctx.Done():
		}
		ccancel()
	}()
	err = el.Campaign(cctx, m.eo.Address)
	ccancel()
	if err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	select {
	case <-sess.Done():
		return errors.New("etcd session ended as this member was elected")
	default:
	}
	tctx, tcancel := context.WithCancel(ctx)
	defer tcancel()
	fenced := func() { tcancel() }
	guarded := m.eo.Store.WithGuard(fenced, clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev()))
	c := New(fencedPlugins{inner: m.plugins, check: guarded.Check}, guarded, m.opts)
	m.log.Info("elected leader", "key", el.Key(), "rev", el.Rev())
	if err := c.Start(tctx); err != nil {
		c.Stop()
		m.resign(el)
		return fmt.Errorf("leader: %w", err)
	}
	m.mu.Lock()
	m.term = &term{ctrl: c, store: guarded, cancel: tcancel}
	m.terms++
	m.mu.Unlock()
	why := "stopped"
	sessDone := sess.Done()
	if m.deaf {
		sessDone = nil
	}
	select {
	case <-ctx.Done():
	case <-tctx.Done():
		why = "a write was fenced: leadership lost"
	case <-sessDone:
		why = "etcd session lost (lease expired or revoked)"
	}
	m.mu.Lock()
	m.term = nil
	m.mu.Unlock()
	tcancel()
	c.Stop()
	m.log.Warn("leadership ended", "why", why)
	if ctx.Err() != nil {
		m.resign(el)
	}
	return nil
}

func (m *Member) resign(el *concurrency.Election) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := el.Resign(ctx); err != nil {
		m.log.Warn("resign", "err", err)
	}
}

// etcdTimeout bounds the reads that find the leader, so that a member whose etcd has no
// quorum says so instead of waiting.
const etcdTimeout = 5 * time.Second

// probe is one linearizable read of the election, bounded by etcdTimeout.
func (m *Member) probe(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	if _, err := m.eo.Client.Get(pctx, m.eo.Election+"/", clientv3.WithFirstCreate()...); err != nil {
		return fmt.Errorf("not leading: etcd unreachable or without a quorum of its members: %w", err)
	}
	return nil
}

// leader returns the running controller, or a client of the leader to forward to.
func (m *Member) leader(ctx context.Context) (Forwarder, error) {
	if c := m.Controller(); c != nil {
		return c, nil
	}
	gctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	resp, err := m.eo.Client.Get(gctx, m.eo.Election+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return nil, fmt.Errorf("group controller: finding the leader in etcd (unreachable or without a quorum of its members?): %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, errors.New("group controller: no controller leads now (election under way); try again")
	}
	addr := string(resp.Kvs[0].Value)
	if addr == m.eo.Address || addr == "" {
		return nil, fmt.Errorf("group controller: the leader (%q) is not serving yet; try again", addr)
	}
	return m.eo.Forward(addr), nil
}

func forward[T any](m *Member, ctx context.Context, f func(Forwarder) (T, error)) (T, error) {
	l, err := m.leader(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	return f(l)
}

// InspectGroups reads the store on a follower (every controller can answer it), and the
// controller's state on the leader.
func (m *Member) InspectGroups(ctx context.Context) ([]spi.GroupSpec, error) {
	if c := m.Controller(); c != nil {
		return c.InspectGroups(ctx)
	}
	recs, err := m.eo.Store.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []spi.GroupSpec
	for _, r := range recs {
		props, err := types.Parse(r.Spec.Properties)
		if err != nil {
			return nil, fmt.Errorf("stored group %s (%s): %w", r.ID, r.Source, err)
		}
		raw, err := json.Marshal(props)
		if err != nil {
			return nil, fmt.Errorf("stored group %s: %w", r.ID, err)
		}
		out = append(out, spi.GroupSpec{ID: r.ID, Properties: raw})
	}
	return out, nil
}

func (m *Member) CommitGroup(ctx context.Context, spec spi.GroupSpec, pretend bool) (string, error) {
	return forward(m, ctx, func(l Forwarder) (string, error) { return l.CommitGroup(ctx, spec, pretend) })
}

func (m *Member) FreeGroup(ctx context.Context, id spi.GroupID) error {
	_, err := forward(m, ctx, func(l Forwarder) (any, error) { return nil, l.FreeGroup(ctx, id) })
	return err
}

func (m *Member) DescribeGroup(ctx context.Context, id spi.GroupID) (spi.GroupDescription, error) {
	return forward(m, ctx, func(l Forwarder) (spi.GroupDescription, error) { return l.DescribeGroup(ctx, id) })
}

func (m *Member) DestroyGroup(ctx context.Context, id spi.GroupID) error {
	_, err := forward(m, ctx, func(l Forwarder) (any, error) { return nil, l.DestroyGroup(ctx, id) })
	return err
}

func (m *Member) DestroyInstances(ctx context.Context, id spi.GroupID, ids []spi.ID) error {
	_, err := forward(m, ctx, func(l Forwarder) (any, error) { return nil, l.DestroyInstances(ctx, id, ids) })
	return err
}

func (m *Member) Size(ctx context.Context, id spi.GroupID) (int, error) {
	return forward(m, ctx, func(l Forwarder) (int, error) { return l.Size(ctx, id) })
}

func (m *Member) SetSize(ctx context.Context, id spi.GroupID, size int) error {
	_, err := forward(m, ctx, func(l Forwarder) (any, error) { return nil, l.SetSize(ctx, id, size) })
	return err
}

func (m *Member) PauseUpdate(ctx context.Context, id spi.GroupID) error {
	_, err := forward(m, ctx, func(l Forwarder) (any, error) { return nil, l.PauseUpdate(ctx, id) })
	return err
}

func (m *Member) ResumeUpdate(ctx context.Context, id spi.GroupID) error {
	_, err := forward(m, ctx, func(l Forwarder) (any, error) { return nil, l.ResumeUpdate(ctx, id) })
	return err
}

func (m *Member) RollbackUpdate(ctx context.Context, id spi.GroupID) error {
	_, err := forward(m, ctx, func(l Forwarder) (any, error) { return nil, l.RollbackUpdate(ctx, id) })
	return err
}

func (m *Member) UpdateStatus(ctx context.Context, id spi.GroupID) (spi.RolloutStatus, error) {
	return forward(m, ctx, func(l Forwarder) (spi.RolloutStatus, error) { return l.UpdateStatus(ctx, id) })
}

// fencedPlugins checks leadership (one linearizable etcd read) before every call that changes
// the world: Provision, Destroy, Label and Flavor.Drain. Reads, Prepare and Healthy go through.
type fencedPlugins struct {
	inner Plugins
	check func(context.Context) error
}

func (p fencedPlugins) Instance(name spi.PluginName) (spi.Instance, error) {
	i, err := p.inner.Instance(name)
	if err != nil {
		return nil, err
	}
	return fencedInstance{Instance: i, check: p.check}, nil
}

func (p fencedPlugins) Flavor(name spi.PluginName) (spi.Flavor, error) {
	f, err := p.inner.Flavor(name)
	if err != nil {
		return nil, err
	}
	return fencedFlavor{Flavor: f, check: p.check}, nil
}

// fencedFlavor checks leadership before Drain: draining takes a member out of service (a
// cluster leaves it), which a controller that lost its lease must not do either.
type fencedFlavor struct {
	spi.Flavor
	check func(context.Context) error
}

func (f fencedFlavor) Drain(ctx context.Context, props spi.Any, d spi.Description) error {
	if err := f.check(ctx); err != nil {
		return err
	}
	return f.Flavor.Drain(ctx, props, d)
}

type fencedInstance struct {
	spi.Instance
	check func(context.Context) error
}

func (i fencedInstance) Provision(ctx context.Context, spec spi.Spec) (*spi.ID, error) {
	if err := i.check(ctx); err != nil {
		return nil, err
	}
	return i.Instance.Provision(ctx, spec)
}

func (i fencedInstance) Destroy(ctx context.Context, id spi.ID, c spi.Context) error {
	if err := i.check(ctx); err != nil {
		return err
	}
	return i.Instance.Destroy(ctx, id, c)
}

func (i fencedInstance) Label(ctx context.Context, id spi.ID, labels map[string]string) error {
	if err := i.check(ctx); err != nil {
		return err
	}
	return i.Instance.Label(ctx, id, labels)
}
