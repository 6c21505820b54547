package rpc

import (
	"context"
	"fmt"

	"github.com/mobykit/mobykit/spi"
)

// Instance serves impl as the default object of Instance/0.6.1.
func Instance(impl spi.Instance) Plugin {
	return InstanceTypes(map[string]spi.Instance{".": impl})
}

// InstanceTypes serves one Instance implementation per subtype ("Type" in requests, the part
// after "/" in a plugin name). The key "." (or "") is the default object used for Type "".
// A request for a subtype not in the map fails with "no-plugin:<type>".
func InstanceTypes(impls map[string]spi.Instance) Plugin {
	names := objectNames(impls)
	ps := normalizeTypes(impls)
	get := func(t string) (spi.Instance, error) {
		if p, ok := ps[t]; ok {
			return p, nil
		}
		return nil, noPlugin(t)
	}
	f := &iface{spec: spi.InstanceInterface, objects: names, methods: map[string]*method{
		"Validate": handle(func(ctx context.Context, r *InstanceValidateRequest) (*InstanceValidateResponse, error) {
			p, err := get(r.Type)
			if err != nil {
				return nil, err
			}
			if err := p.Validate(ctx, r.Properties); err != nil {
				return nil, err
			}
			return &InstanceValidateResponse{Type: r.Type, OK: true}, nil
		}),
		"Provision": handle(func(ctx context.Context, r *ProvisionRequest) (*ProvisionResponse, error) {
			p, err := get(r.Type)
			if err != nil {
				return nil, err
			}
			id, err := p.Provision(ctx, r.Spec)
			if err != nil {
				return nil, err
			}
			if id == nil { // the group controller dereferences it (docs/infrakit/PROTOCOL.md §6)
				return nil, fmt.Errorf("provision returned no instance ID")
			}
			return &ProvisionResponse{Type: r.Type, ID: id}, nil
		}),
		"Label": handle(func(ctx context.Context, r *LabelRequest) (*LabelResponse, error) {
			p, err := get(r.Type)
			if err != nil {
				return nil, err
			}
			if err := p.Label(ctx, r.Instance, r.Labels); err != nil {
				return nil, err
			}
			return &LabelResponse{Type: r.Type, OK: true}, nil
		}),
		"Destroy": handle(func(ctx context.Context, r *DestroyRequest) (*DestroyResponse, error) {
			p, err := get(r.Type)
			if err != nil {
				return nil, err
			}
			if err := p.Destroy(ctx, r.Instance, r.Context); err != nil {
				return nil, err
			}
			return &DestroyResponse{Type: r.Type, OK: true}, nil
		}),
		"DescribeInstances": handle(func(ctx context.Context, r *DescribeInstancesRequest) (*DescribeInstancesResponse, error) {
			p, err := get(r.Type)
			if err != nil {
				return nil, err
			}
			d, err := p.DescribeInstances(ctx, r.Tags, r.Properties)
			if err != nil {
				return nil, err
			}
			if d == nil {
				d = []spi.Description{}
			}
			return &DescribeInstancesResponse{Type: r.Type, Descriptions: d}, nil
		}),
	}}
	if def, ok := ps[""]; ok {
		f.vendor, f.example = vendorOf(def), exampleOf(def)
	}
	f.methods["Validate"].example = func(req any, props spi.Any) { req.(*InstanceValidateRequest).Properties = props }
	f.methods["Provision"].example = func(req any, props spi.Any) { req.(*ProvisionRequest).Spec.Properties = props }
	return Plugin{ifaces: []*iface{f}}
}

// InstanceClient is a client of a remote Instance/0.6.1 object.
type InstanceClient struct {
	c       Caller
	subtype string
}

var _ spi.Instance = (*InstanceClient)(nil)

// NewInstanceClient returns an Instance talking to the plugin at address (a unix socket path,
// or tcp://host:port) with "Type" subtype ("" for the default object).
func NewInstanceClient(address, subtype string) spi.Instance {
	return NewInstanceClientFrom(NewClient(address, spi.InstanceInterface), subtype)
}

// NewInstanceClientFrom returns an Instance client over any Caller (for example a go-plugin
// connection).
func NewInstanceClientFrom(c Caller, subtype string) *InstanceClient {
	return &InstanceClient{c: c, subtype: subtype}
}

func (i *InstanceClient) Validate(ctx context.Context, properties spi.Any) error {
	var resp InstanceValidateResponse
	return i.c.Call(ctx, "Instance.Validate", InstanceValidateRequest{Type: i.subtype, Properties: properties}, &resp)
}

func (i *InstanceClient) Provision(ctx context.Context, spec spi.Spec) (*spi.ID, error) {
	var resp ProvisionResponse
	if err := i.c.Call(ctx, "Instance.Provision", ProvisionRequest{Type: i.subtype, Spec: spec}, &resp); err != nil {
		return nil, err
	}
	if resp.ID == nil {
		return nil, fmt.Errorf("rpc: Instance.Provision on %s returned a null ID", i.c)
	}
	return resp.ID, nil
}

func (i *InstanceClient) Label(ctx context.Context, instance spi.ID, labels map[string]string) error {
	var resp LabelResponse
	return i.c.Call(ctx, "Instance.Label", LabelRequest{Type: i.subtype, Instance: instance, Labels: labels}, &resp)
}

func (i *InstanceClient) Destroy(ctx context.Context, instance spi.ID, c spi.Context) error {
	var resp DestroyResponse
	return i.c.Call(ctx, "Instance.Destroy", DestroyRequest{Type: i.subtype, Instance: instance, Context: c}, &resp)
}

func (i *InstanceClient) DescribeInstances(ctx context.Context, tags map[string]string, properties bool) ([]spi.Description, error) {
	var resp DescribeInstancesResponse
	if err := i.c.Call(ctx, "Instance.DescribeInstances", DescribeInstancesRequest{Type: i.subtype, Tags: tags, Properties: properties}, &resp); err != nil {
		return nil, err
	}
	return resp.Descriptions, nil
}
