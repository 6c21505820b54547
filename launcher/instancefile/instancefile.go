// Package instancefile is an Instance plugin whose "machines" are JSON files in a directory,
// like InfraKit's file plugin: Provision writes <dir>/<id> holding the spec, DescribeInstances
// reads them back (Properties is the whole spec), Label merges tags, Destroy removes the file.
// It is the test partner of the group controller and of the launcher: everything a real
// instance plugin must get right on the wire (tags exactly as given, visible as soon as
// Provision returns, idempotent Destroy) with no machine behind it.
package instancefile

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/mobykit/mobykit/internal/atomicfile"
	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/rpc"
)

// Plugin stores instances as files in Dir.
type Plugin struct {
	dir string
	mu  sync.Mutex // serializes read-modify-write of one instance file (Label)
}

var _ spi.Instance = (*Plugin)(nil)

// New returns a plugin storing instances in dir, created (0700) if missing.
func New(dir string) (*Plugin, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("instance-file: creating %s: %w", dir, err)
	}
	return &Plugin{dir: dir}, nil
}

// record is what one instance file holds.
type record struct {
	ID   spi.ID
	Spec spi.Spec
}

func (p *Plugin) path(id spi.ID) (string, error) {
	s := string(id)
	if s == "" || s == "." || s == ".." || strings.ContainsAny(s, `/\`) || strings.HasPrefix(s, ".") {
		return "", fmt.Errorf("instance-file: invalid instance ID %q", id)
	}
	return filepath.Join(p.dir, s), nil
}

// Validate accepts any JSON value.
func (p *Plugin) Validate(_ context.Context, props spi.Any) error {
	if len(props) > 0 && !json.Valid(props) {
		return fmt.Errorf("instance-file: properties are not JSON")
	}
	return nil
}

func (p *Plugin) write(r record) error {
	path, err := p.path(r.ID)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("instance-file: encoding %s: %w", r.ID, err)
	}
	if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("instance-file: %w", err)
	}
	return nil
}

func (p *Plugin) read(id spi.ID) (record, error) {
	var r record
	path, err := p.path(id)
	if err != nil {
		return r, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return r, fmt.Errorf("instance-file: instance %s: %w", id, err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("instance-file: decoding %s: %w", path, err)
	}
	return r, nil
}

// Provision records spec under a new random ID ("instance-<n>").
func (p *Plugin) Provision(_ context.Context, spec spi.Spec) (*spi.ID, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("instance-file: %w", err)
	}
	id := spi.ID(fmt.Sprintf("instance-%d", binary.BigEndian.Uint64(b[:])>>1))
	if err := p.write(record{ID: id, Spec: spec}); err != nil {
		return nil, err
	}
	return &id, nil
}

// Label merges labels into the instance's tags.
func (p *Plugin) Label(_ context.Context, id spi.ID, labels map[string]string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, err := p.read(id)
	if err != nil {
		return err
	}
	if r.Spec.Tags == nil {
		r.Spec.Tags = map[string]string{}
	}
	for k, v := range labels {
		r.Spec.Tags[k] = v
	}
	return p.write(r)
}

// Destroy removes the instance file; destroying a missing instance succeeds.
func (p *Plugin) Destroy(_ context.Context, id spi.ID, _ spi.Context) error {
	path, err := p.path(id)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("instance-file: destroying %s: %w", id, err)
	}
	return nil
}

// DescribeInstances lists the instances whose tags contain all of tags, sorted by ID.
func (p *Plugin) DescribeInstances(_ context.Context, tags map[string]string, properties bool) ([]spi.Description, error) {
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return nil, fmt.Errorf("instance-file: listing %s: %w", p.dir, err)
	}
	out := []spi.Description{}
next:
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		r, err := p.read(spi.ID(e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // destroyed meanwhile
		}
		if err != nil {
			return nil, err
		}
		for k, v := range tags {
			if got, ok := r.Spec.Tags[k]; !ok || got != v {
				continue next
			}
		}
		d := spi.Description{ID: r.ID, LogicalID: r.Spec.LogicalID, Tags: r.Spec.Tags}
		if d.LogicalID == nil {
			if l, ok := r.Spec.Tags[spi.LogicalIDTag]; ok {
				lid := spi.LogicalID(l)
				d.LogicalID = &lid
			}
		}
		if properties {
			b, err := json.Marshal(r.Spec)
			if err != nil {
				return nil, fmt.Errorf("instance-file: encoding %s: %w", r.ID, err)
			}
			d.Properties = b
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// VendorInfo names the plugin in /info/api.json.
func (p *Plugin) VendorInfo() rpc.VendorInfo {
	return rpc.VendorInfo{Name: "mobykit-instance-file", Version: "0.1.0", URL: "https://github.com/mobykit/mobykit"}
}

// ExampleProperties is shown in /info/api.json: any JSON is accepted.
func (p *Plugin) ExampleProperties() spi.Any {
	return spi.Any(`{"note":"any JSON; kept in the instance file"}`)
}
