package group

import (
	"context"
	"time"

	"github.com/mobykit/mobykit/spi"
)

// Readiness: a roll is bound by how fast members boot, not by the poll interval. Between the
// supervision passes of its loop, a group that waits on members (a rollout waiting for new
// members to become available, or members created or found since the last pass that were never
// seen Healthy) asks Flavor.Healthy about those members alone, each on its own backoff: first
// ReadinessMin after it was created (or first seen), then twice as long each time, up to the
// poll interval. A member that turns available during a rollout starts a full pass at once.
// A group where no member is waited on costs nothing between passes: the steady state is one
// DescribeInstances per poll interval, as before.

// ReadinessMin is the first delay of a waited-on member's readiness checks.
const ReadinessMin = 250 * time.Millisecond

// waited says whether o is a member the group waits on: at the target config and, during a
// rollout, not yet available; outside one, never seen Healthy.
func (gs *groupState) waited(o *observation) bool {
	if o.desc.ID == "" {
		return true // created since the last pass: not listed yet
	}
	if o.desc.Tags[spi.ConfigHashTag] != gs.hash {
		return false
	}
	if gs.rec.Rollout.Phase.Rolling() {
		return !o.available
	}
	if gs.rec.Rollout.Phase == spi.PhaseIdle {
		return o.health != spi.Healthy
	}
	return false // paused: nothing moves until resume
}

// nextReadiness is when the next readiness check of gs is due (zero: none is waited on); gs.mu
// is held.
func (gs *groupState) nextReadiness() time.Time {
	var next time.Time
	for _, o := range gs.obs {
		if gs.waited(o) && (next.IsZero() || o.next.Before(next)) {
			next = o.next
		}
	}
	return next
}

// checkReadiness asks Flavor.Healthy about the waited-on members whose check is due and
// reports whether a full pass should run now: a member turned available during a rollout.
// Outside a rollout a member seen Healthy simply stops being waited on (and counts in
// UpdateStatus's Healthy).
func (c *Controller) checkReadiness(ctx context.Context, gs *groupState) (pass bool) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if gs.gone || gs.rec.Destroying || gs.flavor == nil {
		return false
	}
	now := c.opts.Now()
	var due []*observation
	for _, o := range gs.obs {
		if !gs.waited(o) || o.next.After(now) {
			continue
		}
		if o.desc.ID == "" {
			// Created by the last pass: list the members again to learn how to reach it.
			o.backOff(now, c.opts.PollInterval)
			pass = true
			continue
		}
		due = append(due, o)
	}
	health := make([]spi.Health, len(due))
	c.parallelN(healthParallel(c.opts.MaxParallel), len(due), func(i int) {
		h, err := gs.flavor.Healthy(ctx, gs.props.Flavor.Properties, due[i].desc)
		if err != nil {
			c.log.Debug("readiness check", "group", gs.rec.ID, "instance", due[i].desc.ID, "err", err)
			h = spi.Unknown
		}
		health[i] = h
	})
	strategy := gs.props.Strategy()
	rolling := gs.rec.Rollout.Phase.Rolling()
	for i, o := range due {
		o.record(health[i], now, false)
		if rolling {
			o.available = o.streak >= strategy.HealthyPolls && now.Sub(o.healthySince) >= strategy.HealthyFor
			if o.available {
				pass = true
			}
		}
		o.backOff(now, c.opts.PollInterval)
	}
	gs.countHealthy()
	return pass
}

// record notes one Flavor.Healthy verdict, of a pass or (pass false) of a readiness check. The
// streak Updating.Count asks for counts passes, as InfraKit's polls: a readiness check starts it
// (or breaks it) but does not lengthen it, so Count N still means N consecutive polls, while a
// member's first Healthy (all the default Count 1 needs) and Duration are seen at once.
func (o *observation) record(h spi.Health, now time.Time, pass bool) {
	o.health = h
	if h == spi.Healthy {
		if o.streak == 0 {
			o.healthySince = now
			o.streak = 1
		} else if pass {
			o.streak++
		}
	} else {
		o.streak, o.healthySince = 0, now
	}
}

// backOff schedules o's next readiness check: twice the last delay, at most limit.
func (o *observation) backOff(now time.Time, limit time.Duration) {
	o.wait = min(max(2*o.wait, ReadinessMin), limit)
	o.next = now.Add(o.wait)
}

// countHealthy recounts UpdateStatus's Healthy outside a rollout: the members at the target
// config last seen Healthy. gs.mu is held.
func (gs *groupState) countHealthy() {
	if gs.rec.Rollout.Phase.Rolling() {
		return
	}
	n := 0
	for _, o := range gs.obs {
		if o.desc.Tags[spi.ConfigHashTag] == gs.hash && o.health == spi.Healthy {
			n++
		}
	}
	gs.last.healthy = n
}
