package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/mobykit/mobykit/metadata/config"
)

// Hetzner reads Hetzner Cloud's EC2-style metadata service (/latest/meta-data/...), whose
// public-keys value is a JSON array of keys.
type Hetzner struct {
	base string
	g    getter
}

// NewHetzner returns the Hetzner provider for cfg.Endpoints.Hetzner.
func NewHetzner(cfg Config) *Hetzner {
	return &Hetzner{base: cfg.Endpoints.Hetzner, g: getter{client: cfg.client()}}
}

func (p *Hetzner) String() string { return "Hetzner" }

func (p *Hetzner) latest(ctx context.Context, path string) ([]byte, error) {
	return p.g.get(ctx, p.base+"/latest/"+path)
}

func (p *Hetzner) meta(ctx context.Context, path string) ([]byte, error) {
	return p.latest(ctx, "meta-data/"+path)
}

// Probe gets the hostname.
func (p *Hetzner) Probe(ctx context.Context) error {
	_, err := p.meta(ctx, "hostname")
	return err
}

// Extract writes hostname, public_ipv4, local_ipv4, instance_id and ssh/authorized_keys (one
// key per line), and returns /latest/user-data.
func (p *Hetzner) Extract(ctx context.Context, dir *config.Dir) ([]byte, error) {
	files := []metaFile{{"public-ipv4", "public_ipv4"}, {"local-ipv4", "local_ipv4"}, {"instance-id", "instance_id"}}
	return extractEC2(ctx, "Hetzner", dir, p.meta, p.latest, files, func(ctx context.Context) ([]byte, error) {
		b, err := p.meta(ctx, "public-keys")
		if err != nil {
			return nil, err
		}
		var keys []string
		if err := json.Unmarshal(b, &keys); err != nil {
			return nil, fmt.Errorf("public-keys is not a JSON list of strings: %w", err)
		}
		var sb strings.Builder
		for _, k := range keys {
			sb.WriteString(k + "\n")
		}
		return []byte(sb.String()), nil
	})
}
