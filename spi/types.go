package spi

import (
	"encoding/json"
	"strings"
)

// Any is an opaque JSON blob (InfraKit's types.Any). It is passed through unchanged apart from
// compaction and HTML escaping, which encoding/json applies to json.RawMessage. A nil Any is
// encoded as JSON null.
type Any = json.RawMessage

// ID is an instance's identifier, unique within its instance plugin.
type ID string

// LogicalID is a member's stable identity in a quorum group (often an IP address).
type LogicalID string

// GroupID names a group.
type GroupID string

// Attachment is something an instance is attached to (a volume, a network...).
type Attachment struct {
	ID   string
	Type string
}

// Spec is what an instance plugin provisions: the output of Flavor.Prepare.
type Spec struct {
	Properties  Any
	Tags        map[string]string
	Init        string
	LogicalID   *LogicalID
	Attachments []Attachment
}

// Description is what an instance plugin reports about one instance.
type Description struct {
	ID         ID
	LogicalID  *LogicalID
	Tags       map[string]string
	Properties Any `json:",omitempty"`
}

// Destroy reasons sent in Context.Reason.
const (
	ReasonRollingUpdate = "rolling_update"
	ReasonTerminate     = "terminate"
)

// Context tells an instance plugin why Destroy is called.
type Context struct {
	Reason string
}

// Allocation is how a group sizes itself: either Size members, or one member per LogicalID.
type Allocation struct {
	Size       uint
	LogicalIDs []LogicalID
}

// Index is sent to Flavor.Prepare. Sequence is the supervisor's target size, not a per-instance
// counter (docs/infrakit/PROTOCOL.md §10).
type Index struct {
	Group    GroupID
	Sequence uint
}

// Health is a flavor's verdict on one instance.
type Health int

const (
	Unknown   Health = 0
	Healthy   Health = 1
	Unhealthy Health = 2
)

func (h Health) String() string {
	switch h {
	case Healthy:
		return "healthy"
	case Unhealthy:
		return "unhealthy"
	default:
		return "unknown"
	}
}

// GroupSpec is a group's ID and its opaque properties (the schema of docs/infrakit/PROTOCOL.md §11).
type GroupSpec struct {
	ID         GroupID
	Properties Any
}

// GroupDescription is what DescribeGroup returns. Converged only means that no update plan is
// running right now.
type GroupDescription struct {
	Instances []Description
	Converged bool
}

// Tags the group controller puts on every member (docs/infrakit/PROTOCOL.md §9).
const (
	GroupTag      = "infrakit.group"
	ConfigHashTag = "infrakit.config.hash"
	LogicalIDTag  = "infrakit.logical_id"
	// BootstrapHash as a config hash value means "adopt me".
	BootstrapHash = "bootstrap"
)

// InterfaceSpec names an interface and its version, written Name/Version on the wire.
type InterfaceSpec struct {
	Name    string
	Version string
}

func (s InterfaceSpec) String() string { return s.Name + "/" + s.Version }

// The interface versions mobykit speaks; they are InfraKit's.
var (
	InstanceInterface = InterfaceSpec{Name: "Instance", Version: "0.6.1"}
	FlavorInterface   = InterfaceSpec{Name: "Flavor", Version: "0.1.1"}
	GroupInterface    = InterfaceSpec{Name: "Group", Version: "0.1.1"}
	MetadataInterface = InterfaceSpec{Name: "Metadata", Version: "0.1.1"}
)

// PluginName is a plugin's name as clients use it: "lookup[/subtype]". The lookup is the socket
// file name; everything after the first "/" is the subtype sent as "Type" in Instance and Flavor
// requests.
type PluginName string

// Split returns the lookup (socket name) and the subtype ("" when there is none).
func (n PluginName) Split() (lookup, subtype string) {
	s := string(n)
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}
