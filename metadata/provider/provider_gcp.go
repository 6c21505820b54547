package provider

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/mobykit/mobykit/metadata/config"
)

// GCP reads the Google Compute Engine metadata server. Every request carries
// "Metadata-Flavor: Google", without which the server refuses to answer.
type GCP struct {
	base string
	g    getter
}

// NewGCP returns the GCP provider for cfg.Endpoints.GCP.
func NewGCP(cfg Config) *GCP {
	return &GCP{base: cfg.Endpoints.GCP, g: getter{client: cfg.client(), header: http.Header{"Metadata-Flavor": {"Google"}}}}
}

func (p *GCP) String() string { return "GCP" }

func (p *GCP) instance(ctx context.Context, path string) ([]byte, error) {
	return p.g.get(ctx, p.base+"/computeMetadata/v1/instance/"+path)
}

// Probe gets the instance hostname.
func (p *GCP) Probe(ctx context.Context) error {
	_, err := p.instance(ctx, "hostname")
	return err
}

// Extract writes hostname and ssh/authorized_keys (the project's ssh-keys attribute, user
// names dropped), and returns the instance's user-data attribute.
func (p *GCP) Extract(ctx context.Context, dir *config.Dir) ([]byte, error) {
	hostname, err := p.instance(ctx, "hostname")
	if err != nil {
		return nil, fmt.Errorf("hostname: %w", err)
	}
	if err := dir.WriteFile(config.HostnameFile, hostname, 0o644); err != nil {
		return nil, err
	}
	if keys, err := p.g.get(ctx, p.base+"/computeMetadata/v1/project/attributes/ssh-keys"); err != nil {
		slog.Info("GCP: no ssh keys", "err", err)
	} else {
		var sb strings.Builder
		for _, line := range strings.Split(string(keys), "\n") {
			// "user:ssh-rsa AAAA... comment": keep the key, drop the user.
			if _, key, ok := strings.Cut(line, ":"); ok {
				sb.WriteString(key + "\n")
			}
		}
		if err := dir.WriteFile(config.AuthorizedKeysFile, []byte(sb.String()), 0o600); err != nil {
			slog.Warn("GCP: writing ssh keys", "err", err)
		}
	}
	ud, err := p.instance(ctx, "attributes/user-data")
	if err != nil {
		slog.Info("GCP: no user-data", "err", err)
		return nil, nil
	}
	return ud, nil
}
