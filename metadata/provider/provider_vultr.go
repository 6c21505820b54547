package provider

import (
	"context"
	"fmt"
	"log/slog"

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
	hostname, err := p.get(ctx, "hostname")
	if err != nil {
		return nil, fmt.Errorf("hostname: %w", err)
	}
	if err := dir.WriteFile(config.HostnameFile, hostname, 0o644); err != nil {
		return nil, err
	}
	for _, e := range saveAll(ctx, dir, p.get, []metaFile{
		{"interfaces/0/ipv4/address", "public_ipv4"},
		{"interfaces/1/ipv4/address", "private_ipv4"},
		{"interfaces/1/ipv4/netmask", "private_netmask"},
		{"region/regioncode", "region_code"},
		{"instanceid", "instance_id"},
	}) {
		slog.Info("Vultr: metadata value not saved", "err", e)
	}
	if keys, err := p.get(ctx, "public-keys"); err != nil {
		slog.Info("Vultr: no ssh keys", "err", err)
	} else if err := dir.WriteFile(config.AuthorizedKeysFile, keys, 0o600); err != nil {
		slog.Warn("Vultr: writing ssh keys", "err", err)
	}
	ud, err := p.g.get(ctx, p.base+"/latest/user-data")
	if err != nil {
		slog.Info("Vultr: no user-data", "err", err)
		return nil, nil
	}
	return ud, nil
}
