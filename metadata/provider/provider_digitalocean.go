package provider

import (
	"context"
	"fmt"
	"log/slog"

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
	hostname, err := p.get(ctx, "hostname")
	if err != nil {
		return nil, fmt.Errorf("hostname: %w", err)
	}
	if err := dir.WriteFile(config.HostnameFile, hostname, 0o644); err != nil {
		return nil, err
	}
	for _, e := range saveAll(ctx, dir, p.get, []metaFile{
		{"interfaces/public/0/ipv4/address", "public_ipv4"},
		{"interfaces/private/0/ipv4/address", "private_ipv4"},
		{"region", "region"},
		{"id", "id"},
	}) {
		slog.Info("DigitalOcean: metadata value not saved", "err", e)
	}
	if keys, err := p.get(ctx, "public-keys"); err != nil {
		slog.Info("DigitalOcean: no ssh keys", "err", err)
	} else if err := dir.WriteFile(config.AuthorizedKeysFile, keys, 0o600); err != nil {
		slog.Warn("DigitalOcean: writing ssh keys", "err", err)
	}
	ud, err := p.get(ctx, "user-data")
	if err != nil {
		slog.Info("DigitalOcean: no user-data", "err", err)
		return nil, nil
	}
	return ud, nil
}
