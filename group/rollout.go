package group

import (
	"context"
	"fmt"

	"github.com/mobykit/mobykit/spi"
)

// PauseUpdate stops a running rollout where it is; nothing changes until resume or rollback.
func (c *Controller) PauseUpdate(ctx context.Context, id spi.GroupID) error {
	gs, err := c.lockChangeable(id)
	if err != nil {
		return err
	}
	defer gs.mu.Unlock()
	r := &gs.rec.Rollout
	switch r.Phase {
	case spi.PhasePaused:
		return nil
	case spi.PhaseRolling, spi.PhaseRollingBack:
	default:
		return fmt.Errorf("group %s has no rollout in progress", id)
	}
	r.Resume, r.Phase, r.Message = r.Phase, spi.PhasePaused, "paused by user"
	c.log.Info("rollout paused by user", "group", id)
	return c.persist(ctx, gs)
}

// ResumeUpdate continues a paused rollout. Health deadlines count again from now.
func (c *Controller) ResumeUpdate(ctx context.Context, id spi.GroupID) error {
	gs, err := c.lockChangeable(id)
	if err != nil {
		return err
	}
	defer gs.mu.Unlock()
	r := &gs.rec.Rollout
	if r.Phase != spi.PhasePaused {
		return fmt.Errorf("group %s is not paused (phase %s)", id, r.Phase)
	}
	r.Phase = r.Resume
	if !r.Phase.Rolling() {
		r.Phase = spi.PhaseRolling
	}
	r.Resume, r.Message = "", "resumed by user"
	now := c.opts.Now()
	for _, o := range gs.obs {
		o.firstSeen = now
	}
	if err := c.persist(ctx, gs); err != nil {
		return err
	}
	c.log.Info("rollout resumed", "group", id, "phase", r.Phase)
	gs.poke()
	return nil
}

// RollbackUpdate makes the previous spec the target again and rolls the group back to it.
func (c *Controller) RollbackUpdate(ctx context.Context, id spi.GroupID) error {
	gs, err := c.lockChangeable(id)
	if err != nil {
		return err
	}
	defer gs.mu.Unlock()
	if err := c.rollback(ctx, gs, "rollback requested by user"); err != nil {
		return err
	}
	c.log.Info("rolling back", "group", id, "to", gs.hash)
	gs.poke()
	return nil
}

// UpdateStatus reports the rollout phase and the counts seen by the last supervision pass.
func (c *Controller) UpdateStatus(ctx context.Context, id spi.GroupID) (spi.RolloutStatus, error) {
	gs, err := c.lock(id)
	if err != nil {
		return spi.RolloutStatus{}, err
	}
	defer gs.mu.Unlock()
	r := gs.rec.Rollout
	phase := r.Phase
	if gs.rec.Destroying {
		phase, r.Message = spi.PhaseDestroying, "DestroyGroup unfinished"
		if gs.destroyLeft != "" {
			r.Message += ": " + gs.destroyLeft
		}
	}
	return spi.RolloutStatus{
		Phase:        phase,
		TargetHash:   gs.hash,
		PreviousHash: r.PreviousHash,
		Desired:      gs.props.TargetSize(),
		Updated:      gs.last.updated,
		Healthy:      gs.last.healthy,
		Outdated:     gs.last.outdated,
		Message:      r.Message,
	}, nil
}
