package rpc

import (
	"context"

	"github.com/mobykit/mobykit/spi"
)

// Flavor serves impl as the default object of Flavor/0.1.1.
func Flavor(impl spi.Flavor) Plugin {
	return FlavorTypes(map[string]spi.Flavor{".": impl})
}

// FlavorTypes serves one Flavor implementation per subtype; "." (or "") is the default object.
func FlavorTypes(impls map[string]spi.Flavor) Plugin {
	names := objectNames(impls)
	ps := normalizeTypes(impls)
	get := func(t string) (spi.Flavor, error) {
		if p, ok := ps[t]; ok {
			return p, nil
		}
		return nil, noPlugin(t)
	}
	f := &iface{spec: spi.FlavorInterface, objects: names, methods: map[string]*method{
		"Validate": handle(func(ctx context.Context, r *FlavorValidateRequest) (*FlavorValidateResponse, error) {
			p, err := get(r.Type)
			if err != nil {
				return nil, err
			}
			if err := p.Validate(ctx, r.Properties, r.Allocation); err != nil {
				return nil, err
			}
			return &FlavorValidateResponse{Type: r.Type, OK: true}, nil
		}),
		"Prepare": handle(func(ctx context.Context, r *PrepareRequest) (*PrepareResponse, error) {
			p, err := get(r.Type)
			if err != nil {
				return nil, err
			}
			spec, err := p.Prepare(ctx, r.Properties, r.Spec, r.Allocation, r.Index)
			if err != nil {
				return nil, err
			}
			return &PrepareResponse{Type: r.Type, Spec: spec}, nil
		}),
		"Healthy": handle(func(ctx context.Context, r *HealthyRequest) (*HealthyResponse, error) {
			p, err := get(r.Type)
			if err != nil {
				return nil, err
			}
			h, err := p.Healthy(ctx, r.Properties, r.Instance)
			if err != nil {
				return nil, err
			}
			return &HealthyResponse{Type: r.Type, Health: h}, nil
		}),
		"Drain": handle(func(ctx context.Context, r *DrainRequest) (*DrainResponse, error) {
			p, err := get(r.Type)
			if err != nil {
				return nil, err
			}
			if err := p.Drain(ctx, r.Properties, r.Instance); err != nil {
				return nil, err
			}
			return &DrainResponse{Type: r.Type, OK: true}, nil
		}),
	}}
	if def, ok := ps[""]; ok {
		f.vendor, f.example = vendorOf(def), exampleOf(def)
	}
	f.methods["Validate"].example = func(req any, props spi.Any) { req.(*FlavorValidateRequest).Properties = props }
	f.methods["Prepare"].example = func(req any, props spi.Any) { req.(*PrepareRequest).Properties = props }
	return Plugin{ifaces: []*iface{f}}
}

// FlavorClient is a client of a remote Flavor/0.1.1 object.
type FlavorClient struct {
	c       Caller
	subtype string
}

var _ spi.Flavor = (*FlavorClient)(nil)

// NewFlavorClient returns a Flavor talking to the plugin at address (unix socket path or
// tcp://host:port) with "Type" subtype ("" for the default object).
func NewFlavorClient(address, subtype string) spi.Flavor {
	return NewFlavorClientFrom(NewClient(address, spi.FlavorInterface), subtype)
}

// NewFlavorClientFrom returns a Flavor client over any Caller.
func NewFlavorClientFrom(c Caller, subtype string) *FlavorClient {
	return &FlavorClient{c: c, subtype: subtype}
}

func (f *FlavorClient) Validate(ctx context.Context, properties spi.Any, allocation spi.Allocation) error {
	var resp FlavorValidateResponse
	return f.c.Call(ctx, "Flavor.Validate", FlavorValidateRequest{Type: f.subtype, Properties: properties, Allocation: allocation}, &resp)
}

func (f *FlavorClient) Prepare(ctx context.Context, properties spi.Any, spec spi.Spec, allocation spi.Allocation, index spi.Index) (spi.Spec, error) {
	var resp PrepareResponse
	err := f.c.Call(ctx, "Flavor.Prepare", PrepareRequest{Type: f.subtype, Properties: properties, Spec: spec, Allocation: allocation, Index: index}, &resp)
	return resp.Spec, err
}

func (f *FlavorClient) Healthy(ctx context.Context, properties spi.Any, instance spi.Description) (spi.Health, error) {
	var resp HealthyResponse
	if err := f.c.Call(ctx, "Flavor.Healthy", HealthyRequest{Type: f.subtype, Properties: properties, Instance: instance}, &resp); err != nil {
		return spi.Unknown, err
	}
	return resp.Health, nil
}

func (f *FlavorClient) Drain(ctx context.Context, properties spi.Any, instance spi.Description) error {
	var resp DrainResponse
	return f.c.Call(ctx, "Flavor.Drain", DrainRequest{Type: f.subtype, Properties: properties, Instance: instance}, &resp)
}
