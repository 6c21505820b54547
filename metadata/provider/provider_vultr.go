package provider

import (
	"context"

	"github.com/mobykit/mobykit/metadata/config"
)

// Vultr reads the Vultr metadata API under /v1/, and the userdata from /latest/user-data
// (LinuxKit reads no Vultr userdata; the Vultr metadata API serves it there, decoded).
type Vultr struct {
	base string
	g    getter
}

// NewVultr returns the Vultr provider for cfg.Endpoints.Vultr.
func NewVultr(cfg Config) *Vultr {
	return &Vultr{base: cfg.Endpoints.Vultr, g: getter{client: cfg.client()}}
}

func (p *Vultr) String() string { return "Vultr" }

func (p *Vultr) get(ctx context.Context, path string) ([]byte, error) {
	return p.g.get(ctx, p.base+"/v1/"+path)
}

// Probe gets the /v1/ index.
func (p *Vultr) Probe(ctx context.Context) error {
	_, err := p.get(ctx, "")
	return err
}

// Extract writes hostname, public_ipv4, private_ipv4, private_netmask, region_code,
// instance_id and ssh/authorized_keys, and returns /latest/user-data.
func (p *Vultr) Extract(ctx context.Context, dir *config.Dir) ([]byte, error) {
	return plainTextService{
		name: "Vultr",
		get:  p.get,
		values: []metaFile{
			{"interfaces/0/ipv4/address", "public_ipv4"},
			{"interfaces/1/ipv4/address", "private_ipv4"},
			{"interfaces/1/ipv4/netmask", "private_netmask"},
			{"region/regioncode", "region_code"},
			{"instanceid", "instance_id"},
		},
		userData: func(ctx context.Context) ([]byte, error) { return p.g.get(ctx, p.base+"/latest/user-data") },
	}.extract(ctx, dir)
}
