package group

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/mobykit/mobykit/group/plan"
	"github.com/mobykit/mobykit/group/types"
	"github.com/mobykit/mobykit/spi"
)

// Reconcile runs one supervision pass of group id now and returns what the planner decided.
// The background loops call it every poll interval; with Options.Manual, simulations and
// benchmarks call it themselves.
func (c *Controller) Reconcile(ctx context.Context, id spi.GroupID) (plan.Decision, error) {
	gs, err := c.get(id)
	if err != nil {
		return plan.Decision{}, err
	}
	return c.reconcile(ctx, gs)
}

// reconcile is one supervision pass, in three steps: observe the members (and, during a
// rollout, their health), plan what to do (package plan, a pure function), apply it.
func (c *Controller) reconcile(ctx context.Context, gs *groupState) (plan.Decision, error) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if gs.gone {
		return plan.Decision{}, notWatched(gs.rec.ID)
	}
	if gs.rec.Destroying {
		return c.continueDestroy(ctx, gs)
	}
	in, descs, err := c.observe(ctx, gs)
	if err != nil {
		return plan.Decision{}, err
	}
	return c.apply(ctx, gs, descs, plan.Plan(in))
}

// continueDestroy retries an unfinished DestroyGroup (a member could not be destroyed, or the
// controller restarted) and forgets the group once every member is gone; gs.mu is held.
func (c *Controller) continueDestroy(ctx context.Context, gs *groupState) (plan.Decision, error) {
	err := c.destroyPass(ctx, gs)
	msg := gs.destroyLeft
	if gs.gone {
		c.release(gs, false)
		msg = "destroyed"
	}
	return plan.Decision{Phase: spi.PhaseDestroying, Message: msg}, err
}

// observe lists the members, adopts bootstrap ones, checks health during a rollout and
// returns the planner's input; it updates gs.obs and gs.last. gs.mu is held.
func (c *Controller) observe(ctx context.Context, gs *groupState) (plan.Input, []spi.Description, error) {
	id := gs.rec.ID
	if gs.instance == nil || gs.flavor == nil {
		inst, flav, err := c.resolve(gs.props)
		if err != nil {
			return plan.Input{}, nil, fmt.Errorf("group %s: %w", id, err)
		}
		gs.instance, gs.flavor = inst, flav
	}
	now := c.opts.Now()
	descs, err := c.members(ctx, id, gs.instance, true)
	if err != nil {
		gs.instance, gs.flavor = nil, nil // resolve again next pass
		return plan.Input{}, nil, err
	}
	if err := c.adoptBootstrap(ctx, gs, descs); err != nil {
		return plan.Input{}, nil, err
	}

	phase := gs.rec.Rollout.Phase
	check := phase.Rolling()
	health := make([]spi.Health, len(descs))
	if check {
		c.parallelN(healthParallel(c.opts.MaxParallel), len(descs), func(i int) {
			h, err := gs.flavor.Healthy(ctx, gs.props.Flavor.Properties, descs[i])
			if err != nil {
				c.log.Debug("health check", "group", id, "instance", descs[i].ID, "err", err)
				h = spi.Unknown
			}
			health[i] = h
		})
	}

	strategy := gs.props.Strategy()
	seen := map[spi.ID]bool{}
	in := plan.Input{Group: id, Size: int(gs.props.Allocation.Size), LogicalIDs: gs.props.Allocation.LogicalIDs,
		Hash: gs.hash, Strategy: strategy, Phase: phase, CanRollback: gs.rec.Previous != nil}
	var last lastPass
	for i, d := range descs {
		seen[d.ID] = true
		o := gs.obs[d.ID]
		if o == nil {
			o = &observation{firstSeen: now, next: now.Add(ReadinessMin)}
			gs.obs[d.ID] = o
		}
		o.desc = d
		if check {
			o.record(health[i], now, true)
		}
		lid := logicalID(d)
		hash := d.Tags[spi.ConfigHashTag]
		m := plan.Member{
			ID: d.ID, LogicalID: lid, Hash: hash, Checked: check, Health: o.health,
			Available: check && o.streak >= strategy.HealthyPolls && now.Sub(o.healthySince) >= strategy.HealthyFor,
			Age:       now.Sub(o.firstSeen),
			Self:      c.opts.SelfLogicalID != "" && lid == c.opts.SelfLogicalID,
		}
		if hash != gs.hash {
			// Count and Duration gate new members only (as in InfraKit): an old member is
			// available while it reports Healthy.
			m.Available = check && o.health == spi.Healthy
		}
		o.available = m.Available
		in.Members = append(in.Members, m)
		if m.Hash == gs.hash {
			last.updated++
			if m.Available {
				last.healthy++
			}
		} else {
			last.outdated++
		}
	}
	for x := range gs.obs {
		if !seen[x] {
			delete(gs.obs, x)
		}
	}
	gs.last = last
	if !check {
		// Outside a rollout health is only asked of members never seen Healthy (readiness
		// checks): report the members at the target config last seen Healthy.
		gs.countHealthy()
	}
	return in, descs, nil
}

// apply records the planner's phase change and carries out d; a failed Drain before a
// rolling-update destroy pauses the rollout. gs.mu is held.
func (c *Controller) apply(ctx context.Context, gs *groupState, descs []spi.Description, d plan.Decision) (plan.Decision, error) {
	if err := c.applyPhase(ctx, gs, d); err != nil {
		return d, err
	}
	errs := c.execute(ctx, gs, descs, d)
	var drainErr *drainError
	for _, e := range errs {
		if errors.As(e, &drainErr) {
			break
		}
	}
	if drainErr != nil && gs.rec.Rollout.Phase.Rolling() {
		// InfraKit aborts the update when a Drain fails; mobykit pauses it, so that it can be
		// resumed once the member can be drained (or rolled back).
		r := &gs.rec.Rollout
		r.Resume, r.Phase = r.Phase, spi.PhasePaused
		r.Message = drainErr.Error() + ": paused"
		c.log.Warn("rollout paused", "group", gs.rec.ID, "reason", r.Message)
		if err := c.persist(ctx, gs); err != nil {
			errs = append(errs, err)
		}
		d.Phase, d.Message = r.Phase, r.Message
	}
	return d, errors.Join(errs...)
}

// drainError is a failed Drain before a rolling-update destroy.
type drainError struct {
	id  spi.ID
	err error
}

func (e *drainError) Error() string {
	return fmt.Sprintf("drain %s before its rolling-update destroy: %v", e.id, e.err)
}
func (e *drainError) Unwrap() error { return e.err }

// adoptBootstrap labels members tagged infrakit.config.hash=bootstrap with the group's hash,
// the way InfraKit does: list again without properties, then Label each one.
func (c *Controller) adoptBootstrap(ctx context.Context, gs *groupState, descs []spi.Description) error {
	found := false
	for _, d := range descs {
		if d.Tags[spi.ConfigHashTag] == spi.BootstrapHash {
			found = true
		}
	}
	if !found {
		return nil
	}
	id := gs.rec.ID
	plain, err := c.members(ctx, id, gs.instance, false)
	if err != nil {
		return err
	}
	labels := map[string]string{spi.GroupTag: string(id), spi.ConfigHashTag: gs.hash}
	adopted := map[spi.ID]bool{}
	for _, d := range plain {
		if d.Tags[spi.ConfigHashTag] != spi.BootstrapHash {
			continue
		}
		if err := gs.instance.Label(ctx, d.ID, labels); err != nil {
			return fmt.Errorf("group %s: adopt bootstrap instance %s: %w", id, d.ID, err)
		}
		adopted[d.ID] = true
		c.log.Info("adopted bootstrap instance", "group", id, "instance", d.ID)
	}
	for i := range descs {
		if adopted[descs[i].ID] {
			tags := map[string]string{}
			for k, v := range descs[i].Tags {
				tags[k] = v
			}
			tags[spi.ConfigHashTag] = gs.hash
			descs[i].Tags = tags
		}
	}
	return nil
}

// applyPhase records the planner's phase change (and persists it).
func (c *Controller) applyPhase(ctx context.Context, gs *groupState, d plan.Decision) error {
	r := &gs.rec.Rollout
	if d.Message != "" {
		r.Message = d.Message
	}
	from := r.Phase
	switch {
	case d.Rollback:
		c.log.Warn("rollout failed, rolling back", "group", gs.rec.ID, "reason", d.Message)
		return c.rollback(ctx, gs, d.Message)
	case d.Phase == from:
		return nil
	case d.Phase == spi.PhasePaused:
		r.Resume = from
		c.log.Warn("rollout paused", "group", gs.rec.ID, "reason", d.Message)
	case d.Done:
		c.log.Info("rollout done", "group", gs.rec.ID, "hash", gs.hash, "phase", from)
		r.Resume = ""
	}
	r.Phase = d.Phase
	return c.persist(ctx, gs)
}

// rollback makes the previous spec the target; gs.mu is held.
func (c *Controller) rollback(ctx context.Context, gs *groupState, why string) error {
	if gs.rec.Previous == nil {
		return fmt.Errorf("group %s has no previous spec to roll back to", gs.rec.ID)
	}
	prev := *gs.rec.Previous
	props, err := types.Parse(prev.Properties)
	if err != nil {
		return fmt.Errorf("group %s: previous spec: %w", gs.rec.ID, err)
	}
	hash, err := props.InstanceHash()
	if err != nil {
		return fmt.Errorf("group %s: previous spec: %w", gs.rec.ID, err)
	}
	// A rollback keeps the current allocation: only the configuration goes back.
	props.Allocation = gs.props.Allocation
	raw, err := json.Marshal(props)
	if err != nil {
		return fmt.Errorf("group %s: previous spec: %w", gs.rec.ID, err)
	}
	failed := gs.rec.Spec
	gs.rec.Spec, gs.rec.Previous = spi.GroupSpec{ID: gs.rec.ID, Properties: raw}, &failed
	now := c.opts.Now()
	gs.rec.Rollout.Phase, gs.rec.Rollout.Resume = spi.PhaseRollingBack, ""
	gs.rec.Rollout.TargetHash, gs.rec.Rollout.PreviousHash = hash, gs.hash
	gs.rec.Rollout.Message, gs.rec.Rollout.Started = why, now.UTC()
	gs.props, gs.hash = props, hash
	gs.instance, gs.flavor = nil, nil
	for _, o := range gs.obs {
		o.firstSeen = now
	}
	return c.persist(ctx, gs)
}

// execute carries out d: drains and destroys first, then creates, each batch in parallel
// (bounded by MaxParallel).
func (c *Controller) execute(ctx context.Context, gs *groupState, descs []spi.Description, d plan.Decision) []error {
	if gs.instance == nil || gs.flavor == nil {
		inst, flav, err := c.resolve(gs.props)
		if err != nil {
			return []error{fmt.Errorf("group %s: %w", gs.rec.ID, err)}
		}
		gs.instance, gs.flavor = inst, flav
	}
	id := gs.rec.ID
	byID := map[spi.ID]spi.Description{}
	for _, x := range descs {
		byID[x.ID] = x
	}
	var mu sync.Mutex
	var errs []error
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	skipDrain := gs.props.Strategy().SkipDrain
	c.parallel(len(d.Destroy), func(i int) {
		x := d.Destroy[i]
		desc := byID[x.ID]
		if !(skipDrain && x.Reason == spi.ReasonRollingUpdate) {
			if err := gs.flavor.Drain(ctx, gs.props.Flavor.Properties, desc); err != nil {
				if x.Reason == spi.ReasonRollingUpdate {
					fail(fmt.Errorf("group %s: %w", id, &drainError{id: x.ID, err: err}))
					return
				}
				c.log.Warn("drain before destroy", "group", id, "instance", x.ID, "err", err)
			}
		}
		if err := gs.instance.Destroy(ctx, x.ID, spi.Context{Reason: x.Reason}); err != nil {
			fail(fmt.Errorf("group %s: destroy %s: %w", id, x.ID, err))
			return
		}
		c.log.Info("destroyed instance", "group", id, "instance", x.ID, "reason", x.Reason, "why", x.Why)
	})
	var created []spi.ID
	c.parallel(len(d.Create), func(i int) {
		newID, err := c.create(ctx, gs, d.Create[i].LogicalID)
		if err != nil {
			fail(err)
			return
		}
		mu.Lock()
		created = append(created, newID)
		mu.Unlock()
	})
	// Health deadlines of new members count from their creation.
	now := c.opts.Now()
	for _, x := range created {
		// Not listed yet: its first readiness check lists the members again (a full pass).
		gs.obs[x] = &observation{firstSeen: now, next: now.Add(ReadinessMin)}
	}
	for _, x := range d.DrainOnly {
		if err := gs.flavor.Drain(ctx, gs.props.Flavor.Properties, byID[x]); err != nil {
			fail(fmt.Errorf("group %s: drain self %s: %w", id, x, err))
		}
	}
	return errs
}

// create prepares and provisions one member at the group's current spec. Index.Sequence is the
// target size, as InfraKit sends it (docs/infrakit/PROTOCOL.md §10).
func (c *Controller) create(ctx context.Context, gs *groupState, lid spi.LogicalID) (spi.ID, error) {
	id := gs.rec.ID
	spec := spi.Spec{
		Properties: gs.props.Instance.Properties,
		Tags:       map[string]string{spi.GroupTag: string(id), spi.ConfigHashTag: gs.hash},
	}
	if lid != "" {
		l := lid
		spec.LogicalID = &l
		spec.Tags[spi.LogicalIDTag] = string(lid)
	}
	index := spi.Index{Group: id, Sequence: uint(gs.props.TargetSize())}
	prepared, err := gs.flavor.Prepare(ctx, gs.props.Flavor.Properties, spec, gs.props.Allocation, index)
	if err != nil {
		return "", fmt.Errorf("group %s: prepare member: %w", id, err)
	}
	newID, err := gs.instance.Provision(ctx, prepared)
	if err != nil {
		return "", fmt.Errorf("group %s: provision member: %w", id, err)
	}
	if newID == nil {
		return "", fmt.Errorf("group %s: provision member: plugin %s returned no ID", id, gs.props.Instance.Plugin)
	}
	c.log.Info("provisioned instance", "group", id, "instance", *newID, "logical_id", lid, "hash", gs.hash)
	return *newID, nil
}

// maxHealthChecks bounds concurrent Flavor.Healthy calls when MaxParallel does not: a
// 1,000-member group must not open 1,000 connections to its flavor plugin every pass.
const maxHealthChecks = 32

func healthParallel(maxParallel int) int {
	if maxParallel > 0 && maxParallel < maxHealthChecks {
		return maxParallel
	}
	return maxHealthChecks
}

// parallel runs f(0..n-1) concurrently, at most MaxParallel at a time, and waits.
func (c *Controller) parallel(n int, f func(i int)) { c.parallelN(c.opts.MaxParallel, n, f) }

// parallelN runs f(0..n-1) concurrently, at most limit (0: no limit) at a time, and waits.
func (c *Controller) parallelN(limit, n int, f func(i int)) {
	if n == 0 {
		return
	}
	if limit <= 0 || limit > n {
		limit = n
	}
	if limit == 1 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			f(i)
		}(i)
	}
	wg.Wait()
}
