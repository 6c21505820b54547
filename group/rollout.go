package group

import (
	"context"
	"fmt"

	"github.com/mobykit/mobykit/group/plan"
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
	case plan.PhasePaused:
		return nil
	case plan.PhaseRolling, plan.PhaseRollingBack:
	default:
		return fmt.Errorf("group %s has no rollout in progress", id)
	}
	r.Resume, r.Phase, r.Message = r.Phase, plan.PhasePaused, "paused by user"
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
	if r.Phase != plan.PhasePaused {
		return fmt.Errorf("group %s is not paused (phase %s)", id, phaseName(r.Phase))
	}
	r.Phase = r.Resume
	if r.Phase == "" {
		r.Phase = plan.PhaseRolling
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
	phase := phaseName(r.Phase)
	if gs.rec.Destroying {
		phase, r.Message = PhaseDestroying, "DestroyGroup unfinished"
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

// PhaseDestroying is the phase UpdateStatus reports for a group whose DestroyGroup has not
// finished (a member could not be destroyed yet, or the controller restarted meanwhile).
const PhaseDestroying = "destroying"

func phaseName(p string) string {
	if p == "" {
		return plan.PhaseIdle
	}
	return p
}
