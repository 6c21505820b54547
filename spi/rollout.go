package spi

import "context"

// RolloutControl is mobykit's extension of Group/0.1.1: control over a running rolling update,
// which InfraKit lacked. A Group implementation that also implements RolloutControl gets these
// served as extra methods of the Group service (Group.PauseUpdate, Group.ResumeUpdate,
// Group.RollbackUpdate, Group.UpdateStatus); InfraKit clients never call them, so they do not
// change the wire contract for InfraKit.
type RolloutControl interface {
	PauseUpdate(ctx context.Context, id GroupID) error
	ResumeUpdate(ctx context.Context, id GroupID) error
	RollbackUpdate(ctx context.Context, id GroupID) error
	UpdateStatus(ctx context.Context, id GroupID) (RolloutStatus, error)
}

// RolloutStatus is the progress of a group's rolling update, for people (`mobykit group
// describe`) and programs (`--output json`).
type RolloutStatus struct {
	// Phase is PhaseIdle, PhaseRolling, PhaseRollingBack, PhasePaused or PhaseDestroying.
	Phase RolloutPhase
	// TargetHash and PreviousHash are the config hashes rolled to and from.
	TargetHash   string
	PreviousHash string
	// Desired is the group's target size; Updated the members at TargetHash; Healthy the updated
	// members Flavor.Healthy reports healthy; Outdated the members still at another hash.
	Desired  int
	Updated  int
	Healthy  int
	Outdated int
	// Message says why the rollout is paused or failed, or what it is doing.
	Message string
}

// RolloutPhase is where a group's rolling update is. A rollout that fails is paused or rolled
// back (Strategy.OnFailure), and one that finishes goes back to idle: there is no "failed" or
// "done" phase.
type RolloutPhase string

// The rollout phases.
const (
	// PhaseIdle: no rollout running; the group is only kept at its size (self-healing).
	PhaseIdle RolloutPhase = "idle"
	// PhaseRolling: members not at the target hash are being replaced.
	PhaseRolling RolloutPhase = "rolling"
	// PhaseRollingBack: like rolling, towards the previous spec after a failure or a rollback.
	PhaseRollingBack RolloutPhase = "rolling-back"
	// PhasePaused: nothing is changed until resume or rollback.
	PhasePaused RolloutPhase = "paused"
	// PhaseDestroying is reported (never stored, never planned) for a group whose DestroyGroup
	// has not finished: a member could not be destroyed yet, or the controller restarted.
	PhaseDestroying RolloutPhase = "destroying"
)

// Rolling says whether members are being replaced (rolling or rolling back).
func (p RolloutPhase) Rolling() bool { return p == PhaseRolling || p == PhaseRollingBack }
