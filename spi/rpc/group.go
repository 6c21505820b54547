package rpc

import (
	"context"

	"github.com/mobykit/mobykit/spi"
)

// Group serves impl as Group/0.1.1, plus Metadata/0.1.1 as InfraKit's group plugin does (an
// empty tree). When impl also implements spi.RolloutControl, the Group service gains
// PauseUpdate, ResumeUpdate, RollbackUpdate and UpdateStatus (params {"Name","ID"}).
//
// Replies echo the request's Name, and its ID (CommitGroup: the spec's ID). The context given
// to impl is the HTTP request's: work that outlives the call must not use it.
func Group(impl spi.Group) Plugin {
	ms := map[string]*method{
		"CommitGroup": handle(func(ctx context.Context, r *CommitGroupRequest) (*CommitGroupResponse, error) {
			details, err := impl.CommitGroup(ctx, r.Spec, r.Pretend)
			if err != nil {
				return nil, err
			}
			return &CommitGroupResponse{Name: r.Name, ID: r.Spec.ID, Details: details}, nil
		}),
		"FreeGroup": handle(func(ctx context.Context, r *GroupRequest) (*GroupResponse, error) {
			if err := impl.FreeGroup(ctx, r.ID); err != nil {
				return nil, err
			}
			return &GroupResponse{Name: r.Name, ID: r.ID}, nil
		}),
		"DescribeGroup": handle(func(ctx context.Context, r *GroupRequest) (*DescribeGroupResponse, error) {
			d, err := impl.DescribeGroup(ctx, r.ID)
			if err != nil {
				return nil, err
			}
			return &DescribeGroupResponse{Name: r.Name, ID: r.ID, Description: d}, nil
		}),
		"DestroyGroup": handle(func(ctx context.Context, r *GroupRequest) (*GroupResponse, error) {
			if err := impl.DestroyGroup(ctx, r.ID); err != nil {
				return nil, err
			}
			return &GroupResponse{Name: r.Name, ID: r.ID}, nil
		}),
		"InspectGroups": handle(func(ctx context.Context, r *GroupRequest) (*InspectGroupsResponse, error) {
			gs, err := impl.InspectGroups(ctx)
			if err != nil {
				return nil, err
			}
			return &InspectGroupsResponse{Name: r.Name, ID: r.ID, Groups: gs}, nil
		}),
		"DestroyInstances": handle(func(ctx context.Context, r *DestroyInstancesRequest) (*GroupResponse, error) {
			if err := impl.DestroyInstances(ctx, r.ID, r.Instances); err != nil {
				return nil, err
			}
			return &GroupResponse{Name: r.Name, ID: r.ID}, nil
		}),
		"Size": handle(func(ctx context.Context, r *GroupRequest) (*SizeResponse, error) {
			n, err := impl.Size(ctx, r.ID)
			if err != nil {
				return nil, err
			}
			return &SizeResponse{Name: r.Name, ID: r.ID, Size: n}, nil
		}),
		"SetSize": handle(func(ctx context.Context, r *SetSizeRequest) (*GroupResponse, error) {
			if err := impl.SetSize(ctx, r.ID, r.Size); err != nil {
				return nil, err
			}
			return &GroupResponse{Name: r.Name, ID: r.ID}, nil
		}),
	}
	if rc, ok := impl.(spi.RolloutControl); ok {
		simple := func(f func(context.Context, spi.GroupID) error) *method {
			return handle(func(ctx context.Context, r *GroupRequest) (*GroupResponse, error) {
				if err := f(ctx, r.ID); err != nil {
					return nil, err
				}
				return &GroupResponse{Name: r.Name, ID: r.ID}, nil
			})
		}
		ms["PauseUpdate"] = simple(rc.PauseUpdate)
		ms["ResumeUpdate"] = simple(rc.ResumeUpdate)
		ms["RollbackUpdate"] = simple(rc.RollbackUpdate)
		ms["UpdateStatus"] = handle(func(ctx context.Context, r *GroupRequest) (*UpdateStatusResponse, error) {
			st, err := rc.UpdateStatus(ctx, r.ID)
			if err != nil {
				return nil, err
			}
			return &UpdateStatusResponse{Name: r.Name, ID: r.ID, Status: st}, nil
		})
	}
	g := &iface{spec: spi.GroupInterface, objects: []string{"."}, methods: ms, vendor: vendorOf(impl)}
	md := &iface{spec: spi.MetadataInterface, objects: []string{"."}, methods: map[string]*method{
		"Keys": handle(func(ctx context.Context, r *MetadataRequest) (*MetadataKeysResponse, error) {
			return &MetadataKeysResponse{Name: r.Name, Nodes: []string{}}, nil
		}),
		"Get": handle(func(ctx context.Context, r *MetadataRequest) (*MetadataGetResponse, error) {
			return &MetadataGetResponse{Name: r.Name}, nil
		}),
	}}
	md.methods["Keys"].example = func(req any, _ spi.Any) { req.(*MetadataRequest).Path = "." }
	md.methods["Get"].example = func(req any, _ spi.Any) { req.(*MetadataRequest).Path = "." }
	return Plugin{ifaces: []*iface{g, md}}
}

// GroupClient is a client of a remote Group/0.1.1 plugin, with mobykit's rollout extension.
type GroupClient struct {
	c    Caller
	name string
}

var (
	_ spi.Group          = (*GroupClient)(nil)
	_ spi.RolloutControl = (*GroupClient)(nil)
)

// NewGroupClient returns a Group client of the plugin at address; name is sent as "Name" in
// every request (the plugin name the user gave, e.g. "group" or "group/workers").
func NewGroupClient(address, name string) *GroupClient {
	return NewGroupClientFrom(NewClient(address, spi.GroupInterface), name)
}

// NewGroupClientFrom returns a Group client over any Caller.
func NewGroupClientFrom(c Caller, name string) *GroupClient {
	return &GroupClient{c: c, name: name}
}

func (g *GroupClient) CommitGroup(ctx context.Context, spec spi.GroupSpec, pretend bool) (string, error) {
	var resp CommitGroupResponse
	err := g.c.Call(ctx, "Group.CommitGroup", CommitGroupRequest{Name: g.name, Spec: spec, Pretend: pretend}, &resp)
	return resp.Details, err
}

func (g *GroupClient) simple(ctx context.Context, method string, id spi.GroupID) error {
	var resp GroupResponse
	return g.c.Call(ctx, method, GroupRequest{Name: g.name, ID: id}, &resp)
}

func (g *GroupClient) FreeGroup(ctx context.Context, id spi.GroupID) error {
	return g.simple(ctx, "Group.FreeGroup", id)
}

func (g *GroupClient) DescribeGroup(ctx context.Context, id spi.GroupID) (spi.GroupDescription, error) {
	var resp DescribeGroupResponse
	err := g.c.Call(ctx, "Group.DescribeGroup", GroupRequest{Name: g.name, ID: id}, &resp)
	return resp.Description, err
}

func (g *GroupClient) DestroyGroup(ctx context.Context, id spi.GroupID) error {
	return g.simple(ctx, "Group.DestroyGroup", id)
}

func (g *GroupClient) InspectGroups(ctx context.Context) ([]spi.GroupSpec, error) {
	var resp InspectGroupsResponse
	err := g.c.Call(ctx, "Group.InspectGroups", GroupRequest{Name: g.name}, &resp)
	return resp.Groups, err
}

func (g *GroupClient) DestroyInstances(ctx context.Context, id spi.GroupID, instances []spi.ID) error {
	var resp GroupResponse
	return g.c.Call(ctx, "Group.DestroyInstances", DestroyInstancesRequest{Name: g.name, ID: id, Instances: instances}, &resp)
}

func (g *GroupClient) Size(ctx context.Context, id spi.GroupID) (int, error) {
	var resp SizeResponse
	err := g.c.Call(ctx, "Group.Size", GroupRequest{Name: g.name, ID: id}, &resp)
	return resp.Size, err
}

func (g *GroupClient) SetSize(ctx context.Context, id spi.GroupID, size int) error {
	var resp GroupResponse
	return g.c.Call(ctx, "Group.SetSize", SetSizeRequest{Name: g.name, ID: id, Size: size}, &resp)
}

func (g *GroupClient) PauseUpdate(ctx context.Context, id spi.GroupID) error {
	return g.simple(ctx, "Group.PauseUpdate", id)
}

func (g *GroupClient) ResumeUpdate(ctx context.Context, id spi.GroupID) error {
	return g.simple(ctx, "Group.ResumeUpdate", id)
}

func (g *GroupClient) RollbackUpdate(ctx context.Context, id spi.GroupID) error {
	return g.simple(ctx, "Group.RollbackUpdate", id)
}

func (g *GroupClient) UpdateStatus(ctx context.Context, id spi.GroupID) (spi.RolloutStatus, error) {
	var resp UpdateStatusResponse
	err := g.c.Call(ctx, "Group.UpdateStatus", GroupRequest{Name: g.name, ID: id}, &resp)
	return resp.Status, err
}
