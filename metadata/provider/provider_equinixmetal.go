package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"

	"github.com/mobykit/mobykit/metadata/config"
)

// EquinixMetal reads the Equinix Metal (formerly Packet) metadata service: GET /metadata is a
// JSON document, GET /userdata the userdata. The same service answers at the old Packet host,
// which the "packet" provider uses.
//
// LinuxKit also reconfigures bonded network interfaces from this metadata; mobykit does not
// (yet): the hostname, keys and userdata are extracted, networking is left to the image.
type EquinixMetal struct {
	name string
	base string
	g    getter
	md   *equinixMetadata
}

type equinixMetadata struct {
	ID       string   `json:"id"`
	Hostname string   `json:"hostname"`
	SSHKeys  []string `json:"ssh_keys"`
	Facility string   `json:"facility"`
	Plan     string   `json:"plan"`
}

// NewEquinixMetal returns the provider for cfg.Endpoints.EquinixMetal.
func NewEquinixMetal(cfg Config) *EquinixMetal {
	return &EquinixMetal{name: "EquinixMetal", base: cfg.Endpoints.EquinixMetal, g: getter{client: cfg.client()}}
}

// NewPacket returns the same provider under LinuxKit's name "Packet", for cfg.Endpoints.Packet.
func NewPacket(cfg Config) *EquinixMetal {
	return &EquinixMetal{name: "Packet", base: cfg.Endpoints.Packet, g: getter{client: cfg.client()}}
}

func (p *EquinixMetal) String() string { return p.name }

// Probe fetches and parses /metadata.
func (p *EquinixMetal) Probe(ctx context.Context) error {
	b, err := p.g.get(ctx, p.base+"/metadata")
	if err != nil {
		return err
	}
	var md equinixMetadata
	if err := json.Unmarshal(b, &md); err != nil {
		return fmt.Errorf("%s/metadata is not the expected JSON: %w", p.base, err)
	}
	if md.Hostname == "" {
		return fmt.Errorf("%s/metadata has no hostname", p.base)
	}
	p.md = &md
	return nil
}

// Extract writes hostname, instance_id, facility, plan and ssh/authorized_keys, and returns the
// userdata unless it is an iPXE script (used to boot, not to configure).
func (p *EquinixMetal) Extract(ctx context.Context, dir *config.Dir) ([]byte, error) {
	if p.md == nil {
		if err := p.Probe(ctx); err != nil {
			return nil, err
		}
	}
	if err := dir.WriteFile(config.HostnameFile, []byte(p.md.Hostname), 0o644); err != nil {
		return nil, err
	}
	for file, v := range map[string]string{"instance_id": p.md.ID, "facility": p.md.Facility, "plan": p.md.Plan} {
		if v != "" {
			if err := dir.WriteFile(file, []byte(v), 0o644); err != nil {
				slog.Warn(p.name+": writing metadata", "file", file, "err", err)
			}
		}
	}
	if err := dir.WriteFile(config.AuthorizedKeysFile, []byte(strings.Join(p.md.SSHKeys, "\n")), 0o600); err != nil {
		slog.Warn(p.name+": writing ssh keys", "err", err)
	}
	ud, err := p.g.get(ctx, p.base+"/userdata")
	if err != nil {
		return nil, fmt.Errorf("userdata: %w", err)
	}
	if len(ud) == 0 || bytes.HasPrefix(ud, []byte("#!ipxe")) {
		return nil, nil
	}
	return ud, nil
}
