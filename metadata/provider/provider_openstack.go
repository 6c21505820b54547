package provider

import (
	"context"

	"github.com/mobykit/mobykit/metadata/config"
)

// OpenStack reads the EC2-compatible part of the OpenStack metadata service (as LinuxKit
// does): /latest/meta-data/... and /latest/user-data, without tokens.
type OpenStack struct {
	base string
	g    getter
}

// NewOpenStack returns the OpenStack provider for cfg.Endpoints.OpenStack.
func NewOpenStack(cfg Config) *OpenStack {
	return &OpenStack{base: cfg.Endpoints.OpenStack, g: getter{client: cfg.client()}}
}

func (p *OpenStack) String() string { return "openstack" }

func (p *OpenStack) latest(ctx context.Context, path string) ([]byte, error) {
	return p.g.get(ctx, p.base+"/latest/"+path)
}

func (p *OpenStack) meta(ctx context.Context, path string) ([]byte, error) {
	return p.latest(ctx, "meta-data/"+path)
}

// Probe gets the hostname.
func (p *OpenStack) Probe(ctx context.Context) error {
	_, err := p.meta(ctx, "hostname")
	return err
}

// Extract writes the same files as AWS and returns /latest/user-data.
func (p *OpenStack) Extract(ctx context.Context, dir *config.Dir) ([]byte, error) {
	return extractEC2(ctx, "OpenStack", dir, p.meta, p.latest, ec2Files, func(ctx context.Context) ([]byte, error) {
		return p.meta(ctx, "public-keys/0/openssh-key")
	})
}
