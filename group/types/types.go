package types

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mobykit/mobykit/spi"
)

// Properties is the schema of GroupSpec.Properties (docs/infrakit/PROTOCOL.md §11). Keys are matched
// case-insensitively when decoding and unknown keys are ignored, as Go's encoding/json does in
// InfraKit. Encoding it again (InspectGroups) writes every InfraKit field with its zero value, in
// InfraKit's order: Instance, Flavor, Allocation, Updating.
type Properties struct {
	// Instance names the instance plugin ("lookup[/subtype]") and the Properties sent to its
	// Validate and, through Flavor.Prepare, to Provision. Part of the config hash.
	Instance PluginSpec
	// Flavor names the flavor plugin and the Properties sent with every flavor call. Part of
	// the config hash.
	Flavor PluginSpec
	// Allocation sizes the group: exactly one of Size > 0 (a scaled group) or a non-empty
	// LogicalIDs (a quorum group, one member per ID) must be given. Not part of the hash.
	Allocation spi.Allocation
	// Updating says how a rolling update proceeds. Optional; not part of the hash.
	Updating Updating
}

// PluginSpec is the {Plugin, Properties} pair used for both Instance and Flavor.
type PluginSpec struct {
	// Plugin is the plugin name, "lookup[/subtype]". It must be a JSON string.
	Plugin spi.PluginName
	// Properties is passed to the plugin unchanged. Missing and null are the same (JSON null).
	// Always give it ({} when empty): InfraKit cannot provision members of a group without it.
	Properties spi.Any
}

// Updating controls rolling updates. Count, Duration and SkipBeforeInstanceDestroy are
// InfraKit's; the others are mobykit extensions, omitted from the JSON when unset so that
// InfraKit clients see exactly what InfraKit would send.
type Updating struct {
	// Duration: a new member counts as available only after Flavor.Healthy has reported it
	// Healthy continuously for this long (like Cluster API's minReadySeconds). Default "0s".
	// May not be combined with Count.
	Duration Duration
	// Count: a new member counts as available only after Flavor.Healthy has reported it Healthy
	// on this many consecutive polls. Default 0, which behaves as 1. May not be combined with
	// Duration.
	Count int
	// SkipBeforeInstanceDestroy: "drain" skips Flavor.Drain before rolling-update destroys.
	// Default null (drain every member before destroying it).
	SkipBeforeInstanceDestroy *string
	// MaxSurge is how many members above the target size a rolling update may create before
	// destroying old ones (create-before-destroy): an integer >= 0 or a percentage "NN%" of the
	// target size, rounded UP. Default 1. Ignored by quorum groups, which never surge.
	MaxSurge *IntOrPercent `json:",omitempty"`
	// MaxUnavailable is how many members below the target size may be unavailable during a
	// rolling update: an integer >= 0 or a percentage "NN%" of the target size, rounded DOWN.
	// Default 0. When MaxSurge and MaxUnavailable both resolve to 0, MaxUnavailable becomes 1
	// (Cluster API's rule; it is InfraKit's destroy-first, one-at-a-time update). Quorum groups
	// always use MaxSurge 0, MaxUnavailable 1: one member at a time, the new one healthy before
	// the next goes.
	MaxUnavailable *IntOrPercent `json:",omitempty"`
	// HealthTimeout is how long a new member may take to become available (a Go duration such
	// as "5m"). When it runs out, OnFailure decides. Default "10m"; "0s" waits forever, as
	// InfraKit does.
	HealthTimeout *Duration `json:",omitempty"`
	// OnFailure is what a HealthTimeout does to the rollout: "pause" (default) stops it until
	// resume or rollback; "rollback" rolls the group back to the previous spec automatically.
	// A rollback that itself times out pauses.
	OnFailure string `json:",omitempty"`
}

// Defaults of the mobykit extensions.
const (
	DefaultMaxSurge       = 1
	DefaultMaxUnavailable = 0
	DefaultHealthTimeout  = 10 * time.Minute
	OnFailurePause        = "pause"
	OnFailureRollback     = "rollback"
	// SkipDrain is the only meaningful value of SkipBeforeInstanceDestroy.
	SkipDrain = "drain"
)

// Duration is a time.Duration written as a Go duration string ("0s", "5m", "1h30m"), as in
// InfraKit's types.Duration. A JSON number is read as nanoseconds.
type Duration time.Duration

// MarshalJSON writes the Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration %s: want a string such as \"5m\" or integer nanoseconds", b)
	}
	*d = Duration(n)
	return nil
}

// IntOrPercent is an absolute number or a percentage of the target size ("25%").
type IntOrPercent struct {
	Value     int
	IsPercent bool
}

// Int returns an absolute IntOrPercent.
func Int(v int) *IntOrPercent { return &IntOrPercent{Value: v} }

// Percent returns a percentage IntOrPercent.
func Percent(v int) *IntOrPercent { return &IntOrPercent{Value: v, IsPercent: true} }

func (v IntOrPercent) String() string {
	if v.IsPercent {
		return strconv.Itoa(v.Value) + "%"
	}
	return strconv.Itoa(v.Value)
}

// MarshalJSON writes a number, or a "NN%" string.
func (v IntOrPercent) MarshalJSON() ([]byte, error) {
	if v.IsPercent {
		return json.Marshal(v.String())
	}
	return json.Marshal(v.Value)
}

// UnmarshalJSON reads a non-negative integer or a "NN%" string.
func (v *IntOrPercent) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		p, ok := strings.CutSuffix(strings.TrimSpace(s), "%")
		if !ok {
			return fmt.Errorf("%q: want an integer or a percentage such as \"25%%\"", s)
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return fmt.Errorf("%q: want a non-negative percentage such as \"25%%\"", s)
		}
		*v = IntOrPercent{Value: n, IsPercent: true}
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil || f != math.Trunc(f) || f < 0 || f > math.MaxInt32 {
		return fmt.Errorf("%s: want a non-negative integer or a percentage such as \"25%%\"", b)
	}
	*v = IntOrPercent{Value: int(f)}
	return nil
}

// Resolve turns v into an absolute count against total, rounding a percentage up or down.
func (v IntOrPercent) Resolve(total int, roundUp bool) int {
	if !v.IsPercent {
		return v.Value
	}
	n := v.Value * total
	if roundUp {
		return (n + 99) / 100
	}
	return n / 100
}

// Parse decodes a group's Properties. A null or empty document gives the zero value, which
// Validate then rejects.
func Parse(raw spi.Any) (Properties, error) {
	var p Properties
	if len(raw) == 0 {
		return p, nil
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return p, fmt.Errorf("group properties: %w", err)
	}
	return p, nil
}

// Errors with InfraKit's exact texts (docs/infrakit/PROTOCOL.md §8); they reach users as JSON-RPC messages.
var (
	//lint:ignore ST1005 InfraKit's exact text
	ErrBlankID = errors.New("Group ID must not be blank")
	//lint:ignore ST1005 InfraKit's exact text
	ErrBlankAllocation = errors.New("Allocation must not be blank")
	//lint:ignore ST1005 InfraKit's exact text
	ErrTwoAllocations = errors.New("Only one Allocation method may be used")
	//lint:ignore ST1005 InfraKit's exact text
	ErrTwoUpdatingMethods = errors.New("Only one Updating method may be used")
)

// MaxIDLength bounds a group ID, in bytes.
const MaxIDLength = 128

// ValidateID checks a group ID: not blank (InfraKit's error), at most MaxIDLength bytes of
// UTF-8, no "/", "\\" or control characters, and not "." or "..". A group ID names the group's
// file in the store and its members' infrakit.group tag, and InfraKit's CLI addresses a group
// as "plugin/ID": an ID that reads as a path is refused here, before it is stored or sent.
func ValidateID(id spi.GroupID) error {
	s := string(id)
	switch {
	case s == "":
		return ErrBlankID
	case len(s) > MaxIDLength:
		return fmt.Errorf("group ID %.20q...: longer than %d bytes", s, MaxIDLength)
	case s == "." || s == "..":
		return fmt.Errorf("group ID %q: not allowed", s)
	case !utf8.ValidString(s):
		return fmt.Errorf("group ID %q: not UTF-8", s)
	}
	for _, r := range s {
		if r == '/' || r == '\\' || unicode.IsControl(r) {
			return fmt.Errorf("group ID %q: %q is not allowed in a group ID", s, r)
		}
	}
	return nil
}

// Validate checks a spec the way InfraKit's CommitGroup does (ID, Allocation, Updating, in
// that order, with InfraKit's messages), then mobykit's extensions.
func Validate(id spi.GroupID, p Properties) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	if p.Allocation.Size == 0 && len(p.Allocation.LogicalIDs) == 0 {
		return ErrBlankAllocation
	}
	if p.Allocation.Size > 0 && len(p.Allocation.LogicalIDs) > 0 {
		return ErrTwoAllocations
	}
	u := p.Updating
	if u.Count > 0 && u.Duration > 0 {
		return ErrTwoUpdatingMethods
	}
	if u.Count < 0 {
		return fmt.Errorf("group %s: Updating.Count %d is negative", id, u.Count)
	}
	if u.Duration < 0 {
		return fmt.Errorf("group %s: Updating.Duration %s is negative", id, time.Duration(u.Duration))
	}
	if u.HealthTimeout != nil && *u.HealthTimeout < 0 {
		return fmt.Errorf("group %s: Updating.HealthTimeout %s is negative", id, time.Duration(*u.HealthTimeout))
	}
	switch u.OnFailure {
	case "", OnFailurePause, OnFailureRollback:
	default:
		return fmt.Errorf("group %s: Updating.OnFailure %q: want %q or %q", id, u.OnFailure, OnFailurePause, OnFailureRollback)
	}
	for name, v := range map[string]*IntOrPercent{"MaxSurge": u.MaxSurge, "MaxUnavailable": u.MaxUnavailable} {
		if v != nil && v.Value < 0 {
			return fmt.Errorf("group %s: Updating.%s %s is negative", id, name, v)
		}
		if v != nil && v.IsPercent && v.Value > 100 {
			return fmt.Errorf("group %s: Updating.%s %s is above 100%%", id, name, v)
		}
	}
	seen := map[spi.LogicalID]bool{}
	for _, l := range p.Allocation.LogicalIDs {
		if l == "" {
			return fmt.Errorf("group %s: Allocation.LogicalIDs has an empty ID", id)
		}
		if seen[l] {
			return fmt.Errorf("group %s: Allocation.LogicalIDs lists %q twice", id, l)
		}
		seen[l] = true
	}
	return nil
}

// IsQuorum says whether the group is allocated by LogicalIDs.
func (p Properties) IsQuorum() bool { return len(p.Allocation.LogicalIDs) > 0 }

// TargetSize is Allocation.Size, or the number of LogicalIDs for a quorum group.
func (p Properties) TargetSize() int {
	if p.IsQuorum() {
		return len(p.Allocation.LogicalIDs)
	}
	return int(p.Allocation.Size)
}

// Strategy is Updating resolved against the target size: every default applied and every
// percentage rounded.
type Strategy struct {
	MaxSurge       int
	MaxUnavailable int
	// HealthyPolls is the number of consecutive Healthy polls a new member needs (>= 1).
	HealthyPolls int
	// HealthyFor is how long it must have been Healthy.
	HealthyFor time.Duration
	// HealthTimeout is 0 for "wait forever".
	HealthTimeout time.Duration
	OnFailure     string
	SkipDrain     bool
}

// Strategy resolves Updating for this group (see the field comments of Updating).
func (p Properties) Strategy() Strategy {
	u := p.Updating
	s := Strategy{
		MaxSurge:       DefaultMaxSurge,
		MaxUnavailable: DefaultMaxUnavailable,
		HealthyPolls:   max(u.Count, 1),
		HealthyFor:     time.Duration(u.Duration),
		HealthTimeout:  DefaultHealthTimeout,
		OnFailure:      u.OnFailure,
		SkipDrain:      u.SkipBeforeInstanceDestroy != nil && *u.SkipBeforeInstanceDestroy == SkipDrain,
	}
	if s.OnFailure == "" {
		s.OnFailure = OnFailurePause
	}
	if u.HealthTimeout != nil {
		s.HealthTimeout = time.Duration(*u.HealthTimeout)
	}
	n := p.TargetSize()
	if u.MaxSurge != nil {
		s.MaxSurge = u.MaxSurge.Resolve(n, true)
	}
	if u.MaxUnavailable != nil {
		s.MaxUnavailable = u.MaxUnavailable.Resolve(n, false)
	}
	if p.IsQuorum() {
		s.MaxSurge, s.MaxUnavailable = 0, 1
	}
	if s.MaxSurge == 0 && s.MaxUnavailable == 0 {
		s.MaxUnavailable = 1
	}
	return s
}
