package spi

import "context"

// Instance is the Instance/0.6.1 interface: boot, list, label and destroy machines.
type Instance interface {
	// Validate checks the Instance Properties of a group spec before anything is provisioned.
	Validate(ctx context.Context, properties Any) error
	// Provision creates an instance from spec and returns its ID. It must return quickly (boot
	// asynchronously) and the instance must be listed, with all its tags, as soon as it returns.
	Provision(ctx context.Context, spec Spec) (*ID, error)
	// Label merges labels into the instance's tags.
	Label(ctx context.Context, instance ID, labels map[string]string) error
	// Destroy removes an instance. It is idempotent.
	Destroy(ctx context.Context, instance ID, c Context) error
	// DescribeInstances lists the instances whose tags contain all of tags (nil: all).
	// Properties are reported only when properties is true.
	DescribeInstances(ctx context.Context, tags map[string]string, properties bool) ([]Description, error)
}

// Flavor is the Flavor/0.1.1 interface: it turns a group's spec into an instance spec and
// judges an instance's health. properties is always the group's Flavor Properties.
type Flavor interface {
	Validate(ctx context.Context, properties Any, allocation Allocation) error
	Prepare(ctx context.Context, properties Any, spec Spec, allocation Allocation, index Index) (Spec, error)
	Healthy(ctx context.Context, properties Any, instance Description) (Health, error)
	Drain(ctx context.Context, properties Any, instance Description) error
}

// Group is the Group/0.1.1 interface served by a group controller.
type Group interface {
	// CommitGroup validates and commits spec; the returned text describes the plan.
	CommitGroup(ctx context.Context, spec GroupSpec, pretend bool) (string, error)
	FreeGroup(ctx context.Context, id GroupID) error
	DescribeGroup(ctx context.Context, id GroupID) (GroupDescription, error)
	DestroyGroup(ctx context.Context, id GroupID) error
	InspectGroups(ctx context.Context) ([]GroupSpec, error)
	DestroyInstances(ctx context.Context, id GroupID, instances []ID) error
	Size(ctx context.Context, id GroupID) (int, error)
	SetSize(ctx context.Context, id GroupID, size int) error
}
