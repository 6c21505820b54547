package group

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/mobykit/mobykit/group/store"
	"github.com/mobykit/mobykit/group/types"
	"github.com/mobykit/mobykit/spi"
)

// Plugins resolves plugin names ("lookup[/subtype]") to clients. Production code resolves them
// through discovery and the rpc clients; tests use in-process fakes.
type Plugins interface {
	Instance(name spi.PluginName) (spi.Instance, error)
	Flavor(name spi.PluginName) (spi.Flavor, error)
}

// Environment variables read by OptionsFromEnv (InfraKit's names).
const (
	EnvPollInterval  = "INFRAKIT_GROUP_POLL_INTERVAL"
	EnvSelfLogicalID = "INFRAKIT_GROUP_SELF_LOGICAL_ID"
	EnvMaxParallel   = "INFRAKIT_GROUP_MAX_PARALLEL_NUM"
)

// DefaultPollInterval is InfraKit's.
const DefaultPollInterval = 10 * time.Second

// Options configure a Controller.
type Options struct {
	// PollInterval between supervision passes. Default 10s.
	PollInterval time.Duration
	// SelfLogicalID marks the member that runs this controller: it is sorted last and a
	// rolling update drains it but never destroys it.
	SelfLogicalID spi.LogicalID
	// MaxParallel bounds concurrent creates and destroys in one pass; 0 means no limit.
	MaxParallel int
	// Manual: no background loops; the caller drives each group with Reconcile (simulations,
	// benchmarks).
	Manual bool
	// Now is the clock (default time.Now). The loops sleep on real timers, so without Manual it
	// must follow real time.
	Now func() time.Time
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// OptionsFromEnv reads INFRAKIT_GROUP_POLL_INTERVAL, INFRAKIT_GROUP_SELF_LOGICAL_ID and
// INFRAKIT_GROUP_MAX_PARALLEL_NUM.
func OptionsFromEnv() (Options, error) {
	var o Options
	if v := os.Getenv(EnvPollInterval); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return o, fmt.Errorf("%s=%q: want a positive Go duration such as 10s", EnvPollInterval, v)
		}
		o.PollInterval = d
	}
	o.SelfLogicalID = spi.LogicalID(os.Getenv(EnvSelfLogicalID))
	if v := os.Getenv(EnvMaxParallel); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return o, fmt.Errorf("%s=%q: want a non-negative integer", EnvMaxParallel, v)
		}
		o.MaxParallel = n
	}
	return o, nil
}

// Controller is the group controller. It implements spi.Group and spi.RolloutControl.
type Controller struct {
	plugins Plugins
	store   store.Store
	opts    Options
	log     *slog.Logger

	mu     sync.Mutex
	groups map[spi.GroupID]*groupState
	seq    uint64
	ctx    context.Context // parent of the supervision loops
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var (
	_ spi.Group          = (*Controller)(nil)
	_ spi.RolloutControl = (*Controller)(nil)
)

// groupState is one supervised group. mu serialises passes, commits and control calls.
type groupState struct {
	mu       sync.Mutex
	rec      store.Record
	props    types.Properties
	hash     string
	instance spi.Instance
	flavor   spi.Flavor
	obs      map[spi.ID]*observation
	last     lastPass
	ctx      context.Context
	stop     context.CancelFunc
	kick     chan struct{}
	done     chan struct{}
	// gone: the group was forgotten (freed, or destroyed to the last member) while the caller
	// waited for mu; destroyed: it went by DestroyGroup.
	gone, destroyed bool
	// destroyLeft is what the last destroy pass could not destroy, for UpdateStatus.
	destroyLeft string
}

// observation is what the controller knows of one member between passes.
type observation struct {
	firstSeen    time.Time
	streak       int
	healthySince time.Time
	health       spi.Health
	// available: the last pass (or readiness check) found it available for its rollout.
	available bool
	// desc is the member as last listed; zero for a member created since the last pass.
	desc spi.Description
	// next is when its next readiness check is due; wait the delay that led to it.
	next time.Time
	wait time.Duration
}

type lastPass struct {
	updated, healthy, outdated int
}

// New returns a controller that keeps its state in st. Call Start to load the stored groups
// and begin supervising them.
func New(plugins Plugins, st store.Store, opts Options) *Controller {
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Controller{plugins: plugins, store: st, opts: opts, log: opts.Logger.With("component", "group"),
		groups: map[spi.GroupID]*groupState{}, ctx: ctx, cancel: cancel}
}

// Start loads every stored group and resumes supervising it, including a rollout that was in
// progress. Members are found again by their tags.
func (c *Controller) Start(ctx context.Context) error {
	recs, err := c.store.List(ctx)
	if err != nil {
		return fmt.Errorf("load groups: %w", err)
	}
	type loaded struct {
		rec   store.Record
		props types.Properties
		hash  string
	}
	// Check every record before supervising any: a bad file stops the start as a whole.
	var all []loaded
	for _, r := range recs {
		where := string(r.ID)
		if r.Source != "" {
			where = fmt.Sprintf("%s (%s)", r.ID, r.Source)
		}
		if err := r.Rollout.Check(); err != nil {
			return fmt.Errorf("stored group %s: %w", where, err)
		}
		props, err := types.Parse(r.Spec.Properties)
		if err != nil {
			return fmt.Errorf("stored group %s: %w", where, err)
		}
		if err := types.Validate(r.ID, props); err != nil {
			return fmt.Errorf("stored group %s: %w", where, err)
		}
		hash, err := props.InstanceHash()
		if err != nil {
			return fmt.Errorf("stored group %s: %w", where, err)
		}
		all = append(all, loaded{r, props, hash})
	}
	for _, l := range all {
		gs := c.newGroupState(l.rec, l.props, l.hash)
		c.mu.Lock()
		c.seq = max(c.seq, l.rec.Seq)
		c.groups[l.rec.ID] = gs
		c.mu.Unlock()
		if l.rec.Destroying {
			// The first pass of its loop (or the next Reconcile) finishes the destroy.
			c.log.Warn("resuming unfinished destroy", "group", l.rec.ID)
		} else {
			c.log.Info("resuming group", "group", l.rec.ID, "phase", l.rec.Rollout.Phase, "hash", l.hash)
		}
		c.supervise(gs)
	}
	return nil
}

// Stop ends every supervision loop and waits for running passes to finish.
func (c *Controller) Stop() {
	c.cancel()
	c.wg.Wait()
}

// newGroupState prepares a group; its loop's channels are made here, before the group is
// shared, so that they are never written concurrently.
func (c *Controller) newGroupState(r store.Record, props types.Properties, hash string) *groupState {
	gs := &groupState{rec: r, props: props, hash: hash, obs: map[spi.ID]*observation{}}
	if !c.opts.Manual {
		gs.ctx, gs.stop = context.WithCancel(c.ctx)
		gs.kick = make(chan struct{}, 1)
		gs.done = make(chan struct{})
	}
	return gs
}

func (c *Controller) supervise(gs *groupState) {
	if c.opts.Manual {
		return
	}
	ctx := gs.ctx
	id := gs.rec.ID
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(gs.done)
		for {
			d, err := c.reconcile(ctx, gs)
			if err != nil && ctx.Err() == nil {
				c.log.Warn("supervision pass", "group", id, "err", err)
			}
			next := c.opts.PollInterval
			if d.Phase.Rolling() && len(d.Destroy) > 0 {
				// The rollout may be finished, or free to take its next step, once these
				// members are gone: look again soon.
				next = min(ReadinessMin, next)
			}
			if !c.between(ctx, gs, next) {
				return
			}
		}
	}()
}

// between waits for the next supervision pass of gs: after interval (the poll interval, or
// less after a rollout's destroys), at once when kicked (a commit, a resume) or, sooner, when a
// readiness check finds a waited-on member available (readiness.go). It returns false when ctx
// ends.
func (c *Controller) between(ctx context.Context, gs *groupState, interval time.Duration) bool {
	due := c.opts.Now().Add(interval)
	for {
		wake := due
		gs.mu.Lock()
		if next := gs.nextReadiness(); !next.IsZero() && next.Before(wake) {
			wake = next
		}
		gs.mu.Unlock()
		t := time.NewTimer(max(wake.Sub(c.opts.Now()), 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-gs.kick:
			t.Stop()
			return true
		case <-t.C:
		}
		if !c.opts.Now().Before(due) || c.checkReadiness(ctx, gs) {
			return true
		}
	}
}

func (gs *groupState) poke() {
	if gs.kick != nil {
		select {
		case gs.kick <- struct{}{}:
		default:
		}
	}
}

// notWatched is InfraKit's error for an unknown group.
func notWatched(id spi.GroupID) error {
	//lint:ignore ST1005 InfraKit's exact text (docs/infrakit/PROTOCOL.md §8)
	return fmt.Errorf("Group '%s' is not being watched", id)
}

func (c *Controller) get(id spi.GroupID) (*groupState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	gs, ok := c.groups[id]
	if !ok {
		return nil, notWatched(id)
	}
	return gs, nil
}

// lock finds group id and locks it; the caller unlocks gs.mu. A group forgotten while the caller
// waited for the lock is not watched.
func (c *Controller) lock(id spi.GroupID) (*groupState, error) {
	gs, err := c.get(id)
	if err != nil {
		return nil, err
	}
	gs.mu.Lock()
	if gs.gone {
		gs.mu.Unlock()
		return nil, notWatched(id)
	}
	return gs, nil
}

// lockChangeable is lock for calls that change the group: refused while it is being destroyed.
func (c *Controller) lockChangeable(id spi.GroupID) (*groupState, error) {
	gs, err := c.lock(id)
	if err != nil {
		return nil, err
	}
	if gs.rec.Destroying {
		gs.mu.Unlock()
		return nil, errDestroying(id)
	}
	return gs, nil
}

// ErrDestroying is returned (wrapped, naming the group) by calls that would change a group whose
// DestroyGroup has not finished.
var ErrDestroying = errors.New("is being destroyed")

func errDestroying(id spi.GroupID) error {
	return fmt.Errorf("group %s %w: it cannot be changed until every member is gone (call DestroyGroup again to retry now, or FreeGroup to stop managing what is left)", id, ErrDestroying)
}

// drop removes gs from the map if it is still the entry for its ID.
func (c *Controller) drop(gs *groupState) {
	c.mu.Lock()
	if c.groups[gs.rec.ID] == gs {
		delete(c.groups, gs.rec.ID)
	}
	c.mu.Unlock()
}

func (c *Controller) resolve(props types.Properties) (spi.Instance, spi.Flavor, error) {
	flavor, err := c.plugins.Flavor(props.Flavor.Plugin)
	if err != nil {
		//lint:ignore ST1005 InfraKit's exact text (docs/infrakit/PROTOCOL.md §8)
		return nil, nil, fmt.Errorf("Failed to find Flavor plugin '%s':%w", props.Flavor.Plugin, err)
	}
	instance, err := c.plugins.Instance(props.Instance.Plugin)
	if err != nil {
		//lint:ignore ST1005 InfraKit's exact text (docs/infrakit/PROTOCOL.md §8)
		return nil, nil, fmt.Errorf("Failed to find Instance plugin '%s':%w", props.Instance.Plugin, err)
	}
	return instance, flavor, nil
}

func (c *Controller) persist(ctx context.Context, gs *groupState) error {
	gs.rec.Rollout.Updated = c.opts.Now().UTC()
	if err := c.store.Put(ctx, gs.rec); err != nil {
		return fmt.Errorf("group %s: %w", gs.rec.ID, err)
	}
	return nil
}

// members lists the group's members, with LogicalID filled in from the tag.
func (c *Controller) members(ctx context.Context, id spi.GroupID, inst spi.Instance, props bool) ([]spi.Description, error) {
	descs, err := inst.DescribeInstances(ctx, map[string]string{spi.GroupTag: string(id)}, props)
	if err != nil {
		return nil, fmt.Errorf("group %s: list members: %w", id, err)
	}
	for i := range descs {
		if descs[i].LogicalID == nil {
			if l, ok := descs[i].Tags[spi.LogicalIDTag]; ok {
				lid := spi.LogicalID(l)
				descs[i].LogicalID = &lid
			}
		}
	}
	return descs, nil
}

func logicalID(d spi.Description) spi.LogicalID {
	if d.LogicalID != nil {
		return *d.LogicalID
	}
	return spi.LogicalID(d.Tags[spi.LogicalIDTag])
}

// CommitGroup validates spec and, unless pretend, makes it the group's target. The returned
// text is InfraKit's description of the plan (docs/infrakit/PROTOCOL.md §10).
func (c *Controller) CommitGroup(ctx context.Context, spec spi.GroupSpec, pretend bool) (string, error) {
	t, err := c.target(ctx, spec)
	if err != nil {
		return "", err
	}
	for {
		gs, fresh := c.claim(t, pretend)
		if fresh {
			if pretend {
				return managing(t), nil
			}
			return c.commitNew(ctx, gs, t)
		}
		details, err := c.commitExisting(ctx, gs, t, pretend)
		if !errors.Is(err, errGone) {
			return details, err
		}
		// Freed or destroyed while we waited for it: commit it as a new group.
		c.drop(gs)
	}
}

// target is a validated spec with its plugins resolved.
type target struct {
	spec     spi.GroupSpec
	props    types.Properties
	hash     string
	instance spi.Instance
	flavor   spi.Flavor
}

// target parses and validates spec, and has its plugins validate their parts.
func (c *Controller) target(ctx context.Context, spec spi.GroupSpec) (target, error) {
	if spec.ID == "" {
		return target{}, types.ErrBlankID
	}
	props, err := types.Parse(spec.Properties)
	if err != nil {
		return target{}, fmt.Errorf("group %s: %w", spec.ID, err)
	}
	if err := types.Validate(spec.ID, props); err != nil {
		return target{}, err
	}
	instance, flavor, err := c.resolve(props)
	if err != nil {
		return target{}, err
	}
	if err := flavor.Validate(ctx, props.Flavor.Properties, props.Allocation); err != nil {
		return target{}, err
	}
	if err := instance.Validate(ctx, props.Instance.Properties); err != nil {
		return target{}, err
	}
	hash, err := props.InstanceHash()
	if err != nil {
		return target{}, fmt.Errorf("group %s: %w", spec.ID, err)
	}
	return target{spec: spec, props: props, hash: hash, instance: instance, flavor: flavor}, nil
}

func managing(t target) string { return fmt.Sprintf("Managing %d instances", t.props.TargetSize()) }

// claim returns the group known by t's ID (fresh false), or registers a new group for t and
// returns it locked (fresh true): its lock is held until its first record is stored, so a
// concurrent commit of the same ID waits for it. With pretend nothing is registered and gs is
// nil when the group is not known.
func (c *Controller) claim(t target, pretend bool) (gs *groupState, fresh bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gs, known := c.groups[t.spec.ID]; known {
		return gs, false
	}
	if pretend {
		return nil, true
	}
	c.seq++
	gs = c.newGroupState(store.Record{ID: t.spec.ID, Seq: c.seq, Spec: t.spec, Rollout: store.Rollout{Phase: spi.PhaseIdle}}, t.props, t.hash)
	gs.instance, gs.flavor = t.instance, t.flavor
	gs.mu.Lock()
	c.groups[t.spec.ID] = gs
	return gs, true
}

// commitNew stores the first record of gs, registered and locked by claim, and starts
// supervising it. When the record cannot be stored the group is forgotten again.
func (c *Controller) commitNew(ctx context.Context, gs *groupState, t target) (string, error) {
	defer gs.mu.Unlock()
	if err := c.persist(ctx, gs); err != nil {
		// A commit waiting for the lock sees the group gone and registers it anew.
		gs.gone = true
		c.drop(gs)
		if gs.stop != nil {
			gs.stop()
		}
		return "", err
	}
	c.log.Info("managing group", "group", t.spec.ID, "size", t.props.TargetSize(), "hash", t.hash)
	c.supervise(gs)
	return managing(t), nil
}

// errGone: the group was forgotten while the caller waited for its lock.
var errGone = errors.New("group forgotten meanwhile")

// commitExisting makes t the target of the known group gs: a config change starts a rollout,
// a size change is left to the next pass. It returns errGone when gs was forgotten while it
// waited for gs's lock.
func (c *Controller) commitExisting(ctx context.Context, gs *groupState, t target, pretend bool) (string, error) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	id, props, hash := t.spec.ID, t.props, t.hash
	if gs.gone {
		return "", errGone
	}
	if gs.rec.Destroying {
		return "", errDestroying(id)
	}
	old := gs.props
	if old.IsQuorum() || props.IsQuorum() {
		if !sameIDs(old.Allocation.LogicalIDs, props.Allocation.LogicalIDs) {
			//lint:ignore ST1005 InfraKit's exact text (docs/infrakit/PROTOCOL.md §8)
			return "", errors.New("Logical ID changes to a quorum is not currently supported")
		}
	}
	outdated, err := c.countOutdated(ctx, id, t)
	if err != nil {
		return "", err
	}
	details := Details(props.IsQuorum(), old.TargetSize(), props.TargetSize(), outdated)
	if pretend {
		return details, nil
	}
	if hash != gs.hash {
		prev := gs.rec.Spec
		gs.rec.Previous = &prev
	}
	now := c.opts.Now().UTC()
	switch {
	case hash == gs.hash && gs.rec.Rollout.Phase != spi.PhaseIdle:
		// Same config (a SetSize, or an Updating change): a running, paused or rolling-back
		// rollout carries on as it was.
	case outdated > 0:
		gs.rec.Rollout = store.Rollout{Phase: spi.PhaseRolling, TargetHash: hash, PreviousHash: gs.hash, Started: now,
			Message: fmt.Sprintf("rolling %d members to %s", outdated, hash)}
	default:
		gs.rec.Rollout.Phase, gs.rec.Rollout.Resume = spi.PhaseIdle, ""
	}
	gs.rec.Spec = t.spec
	gs.props, gs.hash, gs.instance, gs.flavor = props, hash, t.instance, t.flavor
	for _, o := range gs.obs {
		o.firstSeen = now
	}
	if err := c.persist(ctx, gs); err != nil {
		return "", err
	}
	c.log.Info("committed group", "group", id, "details", details, "hash", hash)
	gs.poke()
	return details, nil
}

// countOutdated counts the members t would replace: those at another config hash (of a quorum
// group, only those whose logical ID t keeps).
func (c *Controller) countOutdated(ctx context.Context, id spi.GroupID, t target) (int, error) {
	descs, err := c.members(ctx, id, t.instance, false)
	if err != nil {
		return 0, err
	}
	want := map[spi.LogicalID]bool{}
	for _, l := range t.props.Allocation.LogicalIDs {
		want[l] = true
	}
	outdated := 0
	for _, d := range descs {
		if t.props.IsQuorum() && !want[logicalID(d)] {
			continue
		}
		if d.Tags[spi.ConfigHashTag] != t.hash {
			outdated++
		}
	}
	return outdated, nil
}

func sameIDs(a, b []spi.LogicalID) bool {
	if len(a) != len(b) {
		return false
	}
	x := append([]spi.LogicalID(nil), a...)
	y := append([]spi.LogicalID(nil), b...)
	sort.Slice(x, func(i, j int) bool { return x[i] < x[j] })
	sort.Slice(y, func(i, j int) bool { return y[i] < y[j] })
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

// Details is InfraKit's plan description for a commit to a known group (docs/infrakit/PROTOCOL.md §10):
// the size change against the stored spec, and the number of members at another hash.
func Details(quorum bool, oldSize, newSize, outdated int) string {
	roll := func(r int) string { return fmt.Sprintf("rolling update on %d instances", r) }
	if quorum {
		if outdated == 0 {
			return "Noop"
		}
		return "Performing a " + roll(outdated)
	}
	switch {
	case newSize < oldSize:
		d := oldSize - newSize
		s := fmt.Sprintf("Terminating %d instances to reduce the group size to %d", d, newSize)
		if r := outdated - d; r > 0 {
			s += ", then performing a " + roll(r)
		}
		return s
	case newSize > oldSize:
		a := fmt.Sprintf("adding %d instances to increase the group size to %d", newSize-oldSize, newSize)
		if outdated > 0 {
			return "Performing a " + roll(outdated) + ", then " + a
		}
		return "A" + a[1:]
	case outdated > 0:
		return "Performing a " + roll(outdated)
	default:
		return "Noop"
	}
}

// DescribeGroup lists the members. Converged is true when no rollout is running or paused.
func (c *Controller) DescribeGroup(ctx context.Context, id spi.GroupID) (spi.GroupDescription, error) {
	gs, err := c.lock(id)
	if err != nil {
		return spi.GroupDescription{}, err
	}
	inst, phase := gs.instance, gs.rec.Rollout.Phase
	props, destroying := gs.props, gs.rec.Destroying
	gs.mu.Unlock()
	if inst == nil {
		if inst, _, err = c.resolve(props); err != nil {
			return spi.GroupDescription{}, err
		}
	}
	descs, err := c.members(ctx, id, inst, true)
	if err != nil {
		return spi.GroupDescription{}, err
	}
	sort.Slice(descs, func(i, j int) bool { return descs[i].ID < descs[j].ID })
	converged := !destroying && phase == spi.PhaseIdle
	return spi.GroupDescription{Instances: descs, Converged: converged}, nil
}

// InspectGroups returns every group's spec, re-serialised from the parsed schema (zero values
// written out), in the order the groups were first committed.
func (c *Controller) InspectGroups(ctx context.Context) ([]spi.GroupSpec, error) {
	c.mu.Lock()
	all := make([]*groupState, 0, len(c.groups))
	for _, gs := range c.groups {
		all = append(all, gs)
	}
	c.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].rec.Seq < all[j].rec.Seq })
	var out []spi.GroupSpec
	for _, gs := range all {
		gs.mu.Lock()
		raw, err := json.Marshal(gs.props)
		id, gone := gs.rec.ID, gs.gone
		gs.mu.Unlock()
		if gone {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("group %s: %w", id, err)
		}
		out = append(out, spi.GroupSpec{ID: id, Properties: raw})
	}
	return out, nil
}

// forget deletes gs's record and marks it gone; gs.mu is held. The caller then calls
// release.
func (c *Controller) forget(ctx context.Context, gs *groupState) error {
	if err := c.store.Delete(ctx, gs.rec.ID); err != nil {
		return fmt.Errorf("group %s: %w", gs.rec.ID, err)
	}
	gs.gone = true
	return nil
}

// release drops a forgotten group from the map and ends its loop. With wait (never from the
// loop itself, and never with gs.mu held) it waits for the loop to end.
func (c *Controller) release(gs *groupState, wait bool) {
	c.drop(gs)
	if gs.stop != nil {
		gs.stop()
		if wait {
			<-gs.done
		}
	}
}

// FreeGroup stops supervising the group and forgets it; its instances are left alone. It is
// also the way to give up on an unfinished DestroyGroup: what is left is no longer managed.
func (c *Controller) FreeGroup(ctx context.Context, id spi.GroupID) error {
	gs, err := c.lock(id)
	if err != nil {
		return err
	}
	err = c.forget(ctx, gs)
	destroying := gs.rec.Destroying
	gs.mu.Unlock()
	if err != nil {
		return err
	}
	c.release(gs, true)
	if destroying {
		c.log.Warn("freed group during its destroy: remaining members are no longer managed", "group", id)
	} else {
		c.log.Info("freed group", "group", id)
	}
	return nil
}

// DestroyGroup drains and destroys every member (terminate), sorted by ID with the self member
// last, before returning, and only then forgets the group. The intent is stored first (the
// record is marked Destroying): until every member is gone the group stays recorded, calls that
// would change it are refused (ErrDestroying), DescribeGroup reports it not converged and
// UpdateStatus in phase "destroying", and its loop (after a restart too) tries the destroy
// again every poll interval. A member that cannot be destroyed makes DestroyGroup return an
// error naming it. A failed Drain is logged and the member destroyed anyway (as InfraKit).
func (c *Controller) DestroyGroup(ctx context.Context, id spi.GroupID) error {
	gs, err := c.get(id)
	if err != nil {
		return err
	}
	gs.mu.Lock()
	if gs.gone {
		gs.mu.Unlock()
		if gs.destroyed {
			return nil // a concurrent destroy (or the loop) finished it
		}
		return notWatched(id)
	}
	if !gs.rec.Destroying {
		gs.rec.Destroying = true
		if err := c.persist(ctx, gs); err != nil {
			gs.rec.Destroying = false
			gs.mu.Unlock()
			return fmt.Errorf("destroy group: %w", err)
		}
		c.log.Info("destroying group", "group", id)
	}
	err = c.destroyPass(ctx, gs)
	gone := gs.gone
	gs.mu.Unlock()
	if gone {
		c.release(gs, true)
	}
	return err
}

// destroyPass lists the members and drains and destroys each; when all of them were destroyed
// it forgets the group. gs.mu is held and gs.rec.Destroying is set. The caller releases gs
// when it is gone.
func (c *Controller) destroyPass(ctx context.Context, gs *groupState) error {
	id := gs.rec.ID
	inst, flav := gs.instance, gs.flavor
	if inst == nil || flav == nil {
		var err error
		if inst, flav, err = c.resolve(gs.props); err != nil {
			gs.destroyLeft = err.Error()
			return fmt.Errorf("group %s: destroy: %w", id, err)
		}
		gs.instance, gs.flavor = inst, flav
	}
	descs, err := c.members(ctx, id, inst, true)
	if err != nil {
		gs.instance, gs.flavor = nil, nil // resolve again next time
		gs.destroyLeft = err.Error()
		return fmt.Errorf("group %s: destroy: %w", id, err)
	}
	c.sortSelfLast(descs)
	var failed []spi.ID
	var errs []error
	for i, d := range descs {
		if err := ctx.Err(); err != nil {
			for _, rest := range descs[i:] {
				failed = append(failed, rest.ID)
			}
			errs = append(errs, err)
			break
		}
		if err := flav.Drain(ctx, gs.props.Flavor.Properties, d); err != nil {
			c.log.Warn("drain before destroy", "group", id, "instance", d.ID, "err", err)
		}
		if err := inst.Destroy(ctx, d.ID, spi.Context{Reason: spi.ReasonTerminate}); err != nil {
			c.log.Warn("destroy", "group", id, "instance", d.ID, "err", err)
			failed = append(failed, d.ID)
			errs = append(errs, fmt.Errorf("instance %s: %w", d.ID, err))
		}
	}
	if len(failed) > 0 {
		gs.destroyLeft = fmt.Sprintf("%d of %d members not destroyed: %v", len(failed), len(descs), failed)
		return fmt.Errorf("group %s: destroy: %d of %d members not destroyed (%v); the group stays recorded and the destroy is retried: %w",
			id, len(failed), len(descs), failed, errors.Join(errs...))
	}
	if err := c.forget(ctx, gs); err != nil {
		gs.destroyLeft = err.Error()
		return fmt.Errorf("destroy: every member destroyed, but: %w", err)
	}
	gs.destroyed = true
	c.log.Info("destroyed group", "group", id, "members", len(descs))
	return nil
}

func (c *Controller) sortSelfLast(descs []spi.Description) {
	self := c.opts.SelfLogicalID
	sort.SliceStable(descs, func(i, j int) bool {
		si := self != "" && logicalID(descs[i]) == self
		sj := self != "" && logicalID(descs[j]) == self
		if si != sj {
			return sj
		}
		return descs[i].ID < descs[j].ID
	})
}

// DestroyInstances drains and destroys the listed instances (terminate), stopping at the first
// failed Destroy, then lowers a scaled group's size by the number of IDs given (InfraKit counts
// IDs that were not members too). A quorum group keeps its size and replaces the members.
func (c *Controller) DestroyInstances(ctx context.Context, id spi.GroupID, ids []spi.ID) error {
	gs, err := c.lockChangeable(id)
	if err != nil {
		return err
	}
	inst, flav := gs.instance, gs.flavor
	if inst == nil || flav == nil {
		if inst, flav, err = c.resolve(gs.props); err != nil {
			gs.mu.Unlock()
			return err
		}
	}
	descs, err := c.members(ctx, id, inst, true)
	if err != nil {
		gs.mu.Unlock()
		return err
	}
	byID := map[spi.ID]spi.Description{}
	for _, d := range descs {
		byID[d.ID] = d
	}
	for _, x := range ids {
		d, ok := byID[x]
		if !ok {
			d = spi.Description{ID: x}
		}
		if err := flav.Drain(ctx, gs.props.Flavor.Properties, d); err != nil {
			c.log.Warn("drain before destroy", "group", id, "instance", x, "err", err)
		}
		if err := inst.Destroy(ctx, x, spi.Context{Reason: spi.ReasonTerminate}); err != nil {
			gs.mu.Unlock()
			return fmt.Errorf("group %s: destroy instance %s: %w", id, x, err)
		}
	}
	quorum, size := gs.props.IsQuorum(), gs.props.TargetSize()
	gs.mu.Unlock()
	if quorum {
		gs.poke()
		return nil
	}
	return c.SetSize(ctx, id, size-len(ids))
}

// Size is the number of LogicalIDs of a quorum group, otherwise Allocation.Size.
func (c *Controller) Size(ctx context.Context, id spi.GroupID) (int, error) {
	gs, err := c.lock(id)
	if err != nil {
		return 0, err
	}
	defer gs.mu.Unlock()
	return gs.props.TargetSize(), nil
}

// SetSize commits the stored spec again with Allocation.Size = size.
func (c *Controller) SetSize(ctx context.Context, id spi.GroupID, size int) error {
	if _, err := c.get(id); err != nil {
		return err
	}
	if size < 0 {
		return errors.New("size cannot be negative")
	}
	gs, err := c.lockChangeable(id)
	if err != nil {
		return err
	}
	props := gs.props
	gs.mu.Unlock()
	if props.IsQuorum() {
		return errors.New("cannot set size if logic ids are explicitly set")
	}
	props.Allocation.Size = uint(size)
	raw, err := json.Marshal(props)
	if err != nil {
		return fmt.Errorf("group %s: %w", id, err)
	}
	_, err = c.CommitGroup(ctx, spi.GroupSpec{ID: id, Properties: raw}, false)
	return err
}
