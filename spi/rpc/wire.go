package rpc

import "github.com/mobykit/mobykit/spi"

// The request and response bodies of every method, with InfraKit's field names (no json tags:
// the Go field name is the JSON key). Shared by server, client and the go-plugin transport.

// HelloRequest is Handshake.Hello's (empty) params.
type HelloRequest struct{}

// Object is one object a plugin serves under an interface; Name "." is the default object.
type Object struct {
	Name     string
	ProxyFor string
}

// HelloResponse lists the served objects by interface spec ("Instance/0.6.1").
type HelloResponse struct {
	Objects map[string][]Object
}

// Instance/0.6.1

type InstanceValidateRequest struct {
	Type       string
	Properties spi.Any
}

type InstanceValidateResponse struct {
	Type string
	OK   bool
}

type ProvisionRequest struct {
	Type string
	Spec spi.Spec
}

type ProvisionResponse struct {
	Type string
	ID   *spi.ID
}

type LabelRequest struct {
	Type     string
	Instance spi.ID
	Labels   map[string]string
}

type LabelResponse struct {
	Type string
	OK   bool
}

type DestroyRequest struct {
	Type     string
	Instance spi.ID
	Context  spi.Context
}

type DestroyResponse struct {
	Type string
	OK   bool
}

type DescribeInstancesRequest struct {
	Type       string
	Tags       map[string]string
	Properties bool
}

type DescribeInstancesResponse struct {
	Type         string
	Descriptions []spi.Description
}

// Flavor/0.1.1

type FlavorValidateRequest struct {
	Type       string
	Properties spi.Any
	Allocation spi.Allocation
}

type FlavorValidateResponse struct {
	Type string
	OK   bool
}

type PrepareRequest struct {
	Type       string
	Properties spi.Any
	Spec       spi.Spec
	Allocation spi.Allocation
	Index      spi.Index
}

type PrepareResponse struct {
	Type string
	Spec spi.Spec
}

type HealthyRequest struct {
	Type       string
	Properties spi.Any
	Instance   spi.Description
}

type HealthyResponse struct {
	Type   string
	Health spi.Health
}

type DrainRequest struct {
	Type       string
	Properties spi.Any
	Instance   spi.Description
}

type DrainResponse struct {
	Type string
	OK   bool
}

// Group/0.1.1 (plus mobykit's rollout extension)

type CommitGroupRequest struct {
	Name    string
	Spec    spi.GroupSpec
	Pretend bool
}

type CommitGroupResponse struct {
	Name    string
	ID      spi.GroupID
	Details string
}

// GroupRequest is the params of the Group methods that take only a group ID.
type GroupRequest struct {
	Name string
	ID   spi.GroupID
}

// GroupResponse is the result of the Group methods that return nothing but echo Name and ID.
type GroupResponse struct {
	Name string
	ID   spi.GroupID
}

type DescribeGroupResponse struct {
	Name        string
	ID          spi.GroupID
	Description spi.GroupDescription
}

type InspectGroupsResponse struct {
	Name   string
	ID     spi.GroupID
	Groups []spi.GroupSpec
}

type DestroyInstancesRequest struct {
	Name      string
	ID        spi.GroupID
	Instances []spi.ID
}

type SizeResponse struct {
	Name string
	ID   spi.GroupID
	Size int
}

type SetSizeRequest struct {
	Name string
	ID   spi.GroupID
	Size int
}

type UpdateStatusResponse struct {
	Name   string
	ID     spi.GroupID
	Status spi.RolloutStatus
}

// Metadata/0.1.1 (served next to Group, as InfraKit's group plugin does)

type MetadataRequest struct {
	Name string
	Path string
}

type MetadataKeysResponse struct {
	Name  string
	Nodes []string
}

type MetadataGetResponse struct {
	Name  string
	Value spi.Any
}
