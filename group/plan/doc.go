// Package plan is the group controller's decision maker, kept pure so that rollouts can be
// simulated without any machine: Plan takes a snapshot of one group (its target, its rollout
// phase, and every member with its config hash and observed availability) and returns the
// decisions for this poll tick: which members to destroy and why, how many members to create,
// and how the rollout phase changes. The controller (package group) takes the snapshot, calls
// Plan, and carries the decisions out: destroys first, then creates.
//
// Scaled groups roll like a Cluster API MachineDeployment: never more than Size+MaxSurge
// members, never fewer than Size-MaxUnavailable available ones, old members that are already
// unavailable are replaced first. Quorum groups replace one member at a time (destroy, then
// create the same logical ID), and only while every other logical ID is served by an available
// member. A new member that stays unavailable past HealthTimeout pauses the rollout or rolls it
// back.
package plan
