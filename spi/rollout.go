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
	// Phase is one of "idle", "rolling", "paused", "rolling-back", "failed", "done".
	Phase string
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
