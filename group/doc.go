// Package group is mobykit's group controller: it serves InfraKit's Group/0.1.1 (spi.Group) and
// mobykit's rollout control (spi.RolloutControl), and keeps every committed group at its spec by
// driving instance and flavor plugins obtained from a Plugins resolver.
//
// Each group has a supervision loop. Every poll interval (INFRAKIT_GROUP_POLL_INTERVAL, default
// 10s) it lists the members by their infrakit.group tag, adopts members tagged
// infrakit.config.hash=bootstrap by labelling them, checks health with Flavor.Healthy while a
// rollout runs, asks the pure planner (package plan) what to do, and does it: Flavor.Drain then
// Instance.Destroy for members to remove, then Flavor.Prepare and Instance.Provision for members
// to add. Specs and rollout progress are written to a store.Store on every change, so a
// controller started again resumes each group, and a rollout, where it stopped.
//
// Behaviour that InfraKit clients see (Details texts, error messages, tags, the config hash,
// Index.Sequence) follows docs/infrakit/PROTOCOL.md §8-§12; where mobykit goes further (surge, health
// deadlines, pause/rollback, resume after restart) docs/group.md says so.
package group
