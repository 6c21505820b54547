package provider

import (
	"context"

	"github.com/mobykit/mobykit/metadata/config"
)

// DigitalOcean reads the droplet metadata service under /metadata/v1/.
type DigitalOcean struct {
	base string
	g    getter
}

// NewDigitalOcean returns the DigitalOcean provider for cfg.Endpoints.DigitalOcean.
func NewDigitalOcean(cfg Config) *DigitalOcean {
	return &DigitalOcean{base: cfg.Endpoints.DigitalOcean, g: getter{client: cfg.client()}}
}

func (p *DigitalOcean) String() string { return "DigitalOcean" }

func (p *DigitalOcean) get(ctx context.Context, path string) ([]byte, error) {
	return p.g.get(ctx, p.base+"/metadata/v1/"+path)
}

// Probe gets the metadata index.
func (p *DigitalOcean) Probe(ctx context.Context) error {
	_, err := p.get(ctx, "")
	return err
}

// Extract writes hostname, public_ipv4, private_ipv4, region, id and ssh/authorized_keys, and
// returns user-data.
func (p *DigitalOcean) Extract(ctx context.Context, dir *config.Dir) ([]byte, error) {
	return plainTextService{
		name: "DigitalOcean",
		get:  p.get,
		values: []metaFile{
			{"interfaces/public/0/ipv4/address", "public_ipv4"},
			{"interfaces/private/0/ipv4/address", "private_ipv4"},
			{"region", "region"},
			{"id", "id"},
		},
		userData: func(ctx context.Context) ([]byte, error) { return p.get(ctx, "user-data") },
	}.extract(ctx, dir)
}
