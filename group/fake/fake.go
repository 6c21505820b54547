// Package fake is an in-process instance and flavor plugin for group controller tests,
// simulations and benchmarks: instances live in memory, health is scripted by a function of
// each instance's spec and age on a settable clock, instances can be killed behind the
// controller's back, and every call is counted.
package fake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"sync"
	"time"

	"github.com/mobykit/mobykit/spi"
)

// Instance is one fake machine.
type Instance struct {
	ID      spi.ID
	Spec    spi.Spec
	Tags    map[string]string
	Created time.Time
}

// HealthFunc scripts health: it is called with the instance and its age on the cloud's clock.
type HealthFunc func(inst Instance, age time.Duration) spi.Health

// Cloud implements spi.Instance, and through Flavor() spi.Flavor, over the same in-memory
// instances.
type Cloud struct {
	mu        sync.Mutex
	now       func() time.Time
	instances map[spi.ID]*Instance
	counter   int
	perLID    map[spi.LogicalID]int
	calls     map[string]int
	log       []string
	// Health decides Flavor.Healthy (default: always Healthy).
	Health HealthFunc
	// Shuffle, when set, shuffles DescribeInstances results (event-order tests).
	Shuffle *rand.Rand
	// OnDestroy, when set, is called after every Destroy with the cloud locked (invariant
	// checks).
	OnDestroy func(c *Cloud)
	// OnProvision likewise after every Provision.
	OnProvision func(c *Cloud)
	// Record, when true, keeps a log of every call (Log).
	Record bool
	// DrainError, when set, makes Flavor.Drain fail for the instances it returns an error for.
	DrainError func(id spi.ID) error
	// DestroyError, when set, makes Instance.Destroy fail (and keep the instance) for the
	// instances it returns an error for.
	DestroyError func(id spi.ID) error
}

var (
	_ spi.Instance = (*Cloud)(nil)
	_ spi.Flavor   = flavor{}
)

// New returns an empty cloud on the clock now (nil: time.Now).
func New(now func() time.Time) *Cloud {
	if now == nil {
		now = time.Now
	}
	return &Cloud{now: now, instances: map[spi.ID]*Instance{}, perLID: map[spi.LogicalID]int{}, calls: map[string]int{}}
}

// count counts a call and, when Record is set, logs it as "Method <params>" with params in
// the JSON form they have on the wire (fields in InfraKit's order, Type "").
func (c *Cloud) count(method string, params func() any) {
	c.calls[method]++
	if c.Record {
		b, err := json.Marshal(params())
		if err != nil {
			b = []byte(err.Error())
		}
		c.log = append(c.log, method+" "+string(b))
	}
}

// Calls returns the number of calls per method ("Instance.Provision", ...).
func (c *Cloud) Calls() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.calls {
		out[k] = v
	}
	return out
}

// TotalCalls is the sum of Calls.
func (c *Cloud) TotalCalls() int {
	n := 0
	for _, v := range c.Calls() {
		n += v
	}
	return n
}

// Log returns and clears the call log (Record must be set).
func (c *Cloud) Log() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.log
	c.log = nil
	return l
}

// Validate rejects Properties containing the key "invalid".
func (c *Cloud) validate(properties spi.Any) error {
	var m map[string]any
	if json.Unmarshal(properties, &m) == nil {
		if v, ok := m["invalid"]; ok {
			return fmt.Errorf("invalid: %v", v)
		}
	}
	return nil
}

// --- spi.Instance

// Validate implements spi.Instance.
func (c *Cloud) Validate(ctx context.Context, properties spi.Any) error {
	c.mu.Lock()
	c.count("Instance.Validate", func() any {
		return struct {
			Type       string
			Properties spi.Any
		}{"", properties}
	})
	c.mu.Unlock()
	return c.validate(properties)
}

// Provision implements spi.Instance. IDs are deterministic: "<logicalID>-<n>" for quorum
// members (n counts per logical ID), otherwise "i-<n>" with a global counter, so that
// creations that are alike get alike names whatever order they run in.
func (c *Cloud) Provision(ctx context.Context, spec spi.Spec) (*spi.ID, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var id spi.ID
	if spec.LogicalID != nil {
		c.perLID[*spec.LogicalID]++
		id = spi.ID(fmt.Sprintf("%s-%d", *spec.LogicalID, c.perLID[*spec.LogicalID]))
	} else {
		c.counter++
		id = spi.ID(fmt.Sprintf("i-%04d", c.counter))
	}
	tags := map[string]string{}
	for k, v := range spec.Tags {
		tags[k] = v
	}
	c.instances[id] = &Instance{ID: id, Spec: spec, Tags: tags, Created: c.now()}
	c.count("Instance.Provision", func() any {
		return struct {
			Type string
			Spec spi.Spec
		}{"", spec}
	})
	if c.OnProvision != nil {
		c.OnProvision(c)
	}
	return &id, nil
}

// Label implements spi.Instance (merge).
func (c *Cloud) Label(ctx context.Context, instance spi.ID, labels map[string]string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("Instance.Label", func() any {
		return struct {
			Type     string
			Instance spi.ID
			Labels   map[string]string
		}{"", instance, labels}
	})
	inst, ok := c.instances[instance]
	if !ok {
		return fmt.Errorf("instance %s not found", instance)
	}
	for k, v := range labels {
		inst.Tags[k] = v
	}
	return nil
}

// Destroy implements spi.Instance; idempotent. DestroyError can make it fail.
func (c *Cloud) Destroy(ctx context.Context, instance spi.ID, cx spi.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("Instance.Destroy", func() any {
		return struct {
			Type     string
			Instance spi.ID
			Context  spi.Context
		}{"", instance, cx}
	})
	if c.DestroyError != nil {
		if err := c.DestroyError(instance); err != nil {
			return err
		}
	}
	delete(c.instances, instance)
	if c.OnDestroy != nil {
		c.OnDestroy(c)
	}
	return nil
}

// DescribeInstances implements spi.Instance.
func (c *Cloud) DescribeInstances(ctx context.Context, tags map[string]string, properties bool) ([]spi.Description, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("Instance.DescribeInstances", func() any {
		return struct {
			Type       string
			Tags       map[string]string
			Properties bool
		}{"", tags, properties}
	})
	out := []spi.Description{}
	for _, inst := range c.sorted() {
		if !matches(inst.Tags, tags) {
			continue
		}
		d := spi.Description{ID: inst.ID, LogicalID: inst.Spec.LogicalID, Tags: copyTags(inst.Tags)}
		if properties {
			b, _ := json.Marshal(inst.Spec)
			d.Properties = b
		}
		out = append(out, d)
	}
	if c.Shuffle != nil {
		c.Shuffle.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	}
	return out, nil
}

func matches(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func copyTags(t map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range t {
		out[k] = v
	}
	return out
}

func (c *Cloud) sorted() []*Instance {
	out := make([]*Instance, 0, len(c.instances))
	for _, i := range c.instances {
		out = append(out, i)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// --- spi.Flavor

// flavorValidate is Flavor.Validate; Cloud cannot have two Validate methods, so Flavor()
// returns an adapter.
func (c *Cloud) flavorValidate(properties spi.Any, allocation spi.Allocation) error {
	c.mu.Lock()
	c.count("Flavor.Validate", func() any {
		return struct {
			Type       string
			Properties spi.Any
			Allocation spi.Allocation
		}{"", properties, allocation}
	})
	c.mu.Unlock()
	return c.validate(properties)
}

// Prepare implements spi.Flavor: it adds the tag "flavor":"fake" and keeps every other tag.
func (c *Cloud) Prepare(ctx context.Context, properties spi.Any, spec spi.Spec, allocation spi.Allocation, index spi.Index) (spi.Spec, error) {
	c.mu.Lock()
	c.count("Flavor.Prepare", func() any {
		return struct {
			Type       string
			Properties spi.Any
			Spec       spi.Spec
			Allocation spi.Allocation
			Index      spi.Index
		}{"", properties, spec, allocation, index}
	})
	c.mu.Unlock()
	tags := copyTags(spec.Tags)
	tags["flavor"] = "fake"
	spec.Tags = tags
	return spec, nil
}

// Healthy implements spi.Flavor through the Health script.
func (c *Cloud) Healthy(ctx context.Context, properties spi.Any, d spi.Description) (spi.Health, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("Flavor.Healthy", func() any { return flavorCall{"", properties, d} })
	inst, ok := c.instances[d.ID]
	if !ok {
		return spi.Unknown, errors.New("no such instance")
	}
	return c.health(inst), nil
}

func (c *Cloud) health(inst *Instance) spi.Health {
	if c.Health == nil {
		return spi.Healthy
	}
	return c.Health(*inst, c.now().Sub(inst.Created))
}

// Drain implements spi.Flavor.
func (c *Cloud) Drain(ctx context.Context, properties spi.Any, d spi.Description) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("Flavor.Drain", func() any { return flavorCall{"", properties, d} })
	if c.DrainError != nil {
		return c.DrainError(d.ID)
	}
	return nil
}

// Flavor returns the cloud as an spi.Flavor whose Validate is Flavor.Validate.
func (c *Cloud) Flavor() spi.Flavor { return flavor{c} }

type flavor struct{ *Cloud }

func (f flavor) Validate(ctx context.Context, properties spi.Any, allocation spi.Allocation) error {
	return f.flavorValidate(properties, allocation)
}

// --- test helpers (ground truth)

// Kill removes an instance behind the controller's back.
func (c *Cloud) Kill(id spi.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.instances, id)
}

// Add creates an instance out of band (for example a bootstrap member).
func (c *Cloud) Add(id spi.ID, spec spi.Spec) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.instances[id] = &Instance{ID: id, Spec: spec, Tags: copyTags(spec.Tags), Created: c.now()}
}

// Snapshot returns copies of the instances carrying tag group=id, sorted by ID, with their
// current health. Call it from OnDestroy/OnProvision with SnapshotLocked.
func (c *Cloud) Snapshot(group spi.GroupID) []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.SnapshotLocked(group)
}

// Member is an instance and its health, for invariant checks.
type Member struct {
	Instance
	Health spi.Health
}

// SnapshotLocked is Snapshot for callbacks that already hold the lock.
func (c *Cloud) SnapshotLocked(group spi.GroupID) []Member {
	var out []Member
	for _, inst := range c.sorted() {
		if inst.Tags[spi.GroupTag] == string(group) {
			out = append(out, Member{Instance: *inst, Health: c.health(inst)})
		}
	}
	return out
}

// Plugins resolves every name to this cloud, except names listed in Missing.
type Plugins struct {
	Cloud   *Cloud
	Missing map[spi.PluginName]bool
}

// Instance implements group.Plugins.
func (p Plugins) Instance(name spi.PluginName) (spi.Instance, error) {
	if p.Missing[name] {
		lookup, _ := name.Split()
		return nil, fmt.Errorf("plugin not found:%s", lookup)
	}
	return p.Cloud, nil
}

// Flavor implements group.Plugins.
func (p Plugins) Flavor(name spi.PluginName) (spi.Flavor, error) {
	if p.Missing[name] {
		lookup, _ := name.Split()
		return nil, fmt.Errorf("plugin not found:%s", lookup)
	}
	return p.Cloud.Flavor(), nil
}

type flavorCall struct {
	Type       string
	Properties spi.Any
	Instance   spi.Description
}
