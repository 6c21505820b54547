// Package cli is the logic behind `mobykit group ...`: reading group files (InfraKit's
// {"ID","Properties"} JSON, or the same in YAML), and rendering groups, members and rollout
// progress for people or, with JSON output, for programs. It talks to any spi.Group that also
// implements spi.RolloutControl (the rpc client in production, the controller in tests).
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mobykit/mobykit/group/types"
	"github.com/mobykit/mobykit/spi"
)

// Client is what the commands need from the group plugin.
type Client interface {
	spi.Group
	spi.RolloutControl
}

// ReadSpec reads a group file: JSON, or YAML when the name ends in .yml/.yaml or the content
// is not JSON. "-" reads standard input.
func ReadSpec(path string, stdin io.Reader) (spi.GroupSpec, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return spi.GroupSpec{}, fmt.Errorf("read group file: %w", err)
	}
	return ParseSpec(path, b)
}

// ParseSpec decodes a group document; name is used in errors and to recognise YAML.
func ParseSpec(name string, b []byte) (spi.GroupSpec, error) {
	ext := strings.ToLower(filepath.Ext(name))
	trimmed := bytes.TrimSpace(b)
	if ext == ".yml" || ext == ".yaml" || (len(trimmed) > 0 && trimmed[0] != '{') {
		var v any
		if err := yaml.Unmarshal(b, &v); err != nil {
			return spi.GroupSpec{}, fmt.Errorf("group file %s: %w", name, err)
		}
		j, err := json.Marshal(v)
		if err != nil {
			return spi.GroupSpec{}, fmt.Errorf("group file %s: %w", name, err)
		}
		b = j
	}
	var s spi.GroupSpec
	if err := json.Unmarshal(b, &s); err != nil {
		return spi.GroupSpec{}, fmt.Errorf("group file %s: %w", name, err)
	}
	if s.ID == "" {
		return s, fmt.Errorf("group file %s: no \"ID\"", name)
	}
	if len(s.Properties) == 0 {
		return s, fmt.Errorf("group file %s: no \"Properties\"", name)
	}
	return s, nil
}

// Printer writes results as text or, when JSON is set, as indented JSON.
type Printer struct {
	W    io.Writer
	JSON bool
}

func (p Printer) json(v any) error {
	enc := json.NewEncoder(p.W)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Message prints a one-line result ({"ID","Message"} in JSON).
func (p Printer) Message(id spi.GroupID, msg string) error {
	if p.JSON {
		return p.json(struct {
			ID      spi.GroupID
			Message string
		}{id, msg})
	}
	_, err := fmt.Fprintln(p.W, msg)
	return err
}

// Commit prints the result of a commit.
func (p Printer) Commit(id spi.GroupID, details string, pretend bool) error {
	if p.JSON {
		return p.json(struct {
			ID      spi.GroupID
			Details string
			Pretend bool
		}{id, details, pretend})
	}
	prefix := "Committed"
	if pretend {
		prefix = "Would commit"
	}
	_, err := fmt.Fprintf(p.W, "%s %s: %s\n", prefix, id, details)
	return err
}

// GroupSummary is one line of `group ls`.
type GroupSummary struct {
	ID         spi.GroupID
	Size       int
	LogicalIDs []spi.LogicalID `json:",omitempty"`
	Instance   spi.PluginName
	Flavor     spi.PluginName
	ConfigHash string
	Spec       spi.GroupSpec
}

// Summaries parses InspectGroups output.
func Summaries(specs []spi.GroupSpec) []GroupSummary {
	var out []GroupSummary
	for _, s := range specs {
		p, _ := types.Parse(s.Properties)
		h, _ := p.InstanceHash()
		out = append(out, GroupSummary{ID: s.ID, Size: p.TargetSize(), LogicalIDs: p.Allocation.LogicalIDs,
			Instance: p.Instance.Plugin, Flavor: p.Flavor.Plugin, ConfigHash: h, Spec: s})
	}
	return out
}

// List prints the groups.
func (p Printer) List(groups []GroupSummary) error {
	if p.JSON {
		if groups == nil {
			groups = []GroupSummary{}
		}
		return p.json(groups)
	}
	tw := tabwriter.NewWriter(p.W, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSIZE\tINSTANCE\tFLAVOR\tCONFIG")
	for _, g := range groups {
		size := fmt.Sprint(g.Size)
		if len(g.LogicalIDs) > 0 {
			var l []string
			for _, x := range g.LogicalIDs {
				l = append(l, string(x))
			}
			size += " (" + strings.Join(l, ",") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", g.ID, size, g.Instance, g.Flavor, short(g.ConfigHash))
	}
	return tw.Flush()
}

// Description is the JSON form of `group describe`.
type Description struct {
	ID        spi.GroupID
	Converged bool
	Instances []spi.Description
	Rollout   *spi.RolloutStatus `json:",omitempty"`
}

// Describe prints the members and the rollout status (status may be nil when the plugin does
// not implement mobykit's rollout extension, e.g. a real InfraKit).
func (p Printer) Describe(id spi.GroupID, d spi.GroupDescription, status *spi.RolloutStatus) error {
	if p.JSON {
		inst := d.Instances
		if inst == nil {
			inst = []spi.Description{}
		}
		return p.json(Description{ID: id, Converged: d.Converged, Instances: inst, Rollout: status})
	}
	tw := tabwriter.NewWriter(p.W, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tLOGICAL ID\tCONFIG\tSTATE")
	ds := append([]spi.Description(nil), d.Instances...)
	sort.Slice(ds, func(i, j int) bool { return ds[i].ID < ds[j].ID })
	for _, x := range ds {
		lid := "-"
		if x.LogicalID != nil {
			lid = string(*x.LogicalID)
		}
		hash := x.Tags[spi.ConfigHashTag]
		state := "outdated"
		if status == nil || hash == status.TargetHash {
			state = "current"
		}
		if status == nil {
			state = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", x.ID, lid, short(hash), state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	conv := "converged"
	if !d.Converged {
		conv = "not converged"
	}
	fmt.Fprintf(p.W, "%d members, %s\n", len(ds), conv)
	if status != nil {
		fmt.Fprintln(p.W, StatusLine(*status))
	}
	return nil
}

// StatusLine renders a rollout status on one line, for people.
func StatusLine(s spi.RolloutStatus) string {
	if s.Phase == spi.PhaseDestroying {
		// An unfinished DestroyGroup: no rollout counts, only what is left.
		return "destroying: " + s.Message
	}
	// Flavor.Healthy is asked during rollouts only (as InfraKit's scaler, which never checks
	// health); an idle group's count would be stale, so it is not shown.
	health := fmt.Sprintf(", %d healthy", s.Healthy)
	if s.Phase == spi.PhaseIdle {
		health = ""
	}
	line := fmt.Sprintf("rollout %s: %d/%d updated%s, %d outdated (target %s",
		s.Phase, s.Updated, s.Desired, health, s.Outdated, short(s.TargetHash))
	if s.PreviousHash != "" {
		line += ", from " + short(s.PreviousHash)
	}
	line += ")"
	if s.Message != "" {
		line += " - " + s.Message
	}
	return line
}

func short(h string) string {
	if len(h) > 8 {
		return h[:8]
	}
	return h
}

// ErrPaused is returned by Watch when the rollout pauses.
var ErrPaused = errors.New("rollout paused")

// Until is what Watch waits for once no rollout runs.
type Until string

const (
	// UntilExist: the group has its size (members created), whatever their health.
	UntilExist Until = "exist"
	// UntilHealthy: also every member at the target config seen Healthy by the flavor (what
	// `group commit --wait` means).
	UntilHealthy Until = "healthy"
)

// ParseUntil reads --wait-for.
func ParseUntil(s string) (Until, error) {
	switch u := Until(s); u {
	case UntilExist, UntilHealthy:
		return u, nil
	}
	return "", fmt.Errorf("--wait-for %q: want %s or %s", s, UntilExist, UntilHealthy)
}

// Watch prints the rollout's progress every interval until no rollout runs and the group has
// what until asks for (nil, after a line saying what was waited for), or the rollout pauses
// (ErrPaused, with the reason), or ctx ends. A line is printed only when something changed;
// with JSON output every change is one JSON object per line.
func Watch(ctx context.Context, c Client, id spi.GroupID, interval time.Duration, w io.Writer, asJSON bool, until Until, now func() time.Time) error {
	if now == nil {
		now = time.Now
	}
	var last string
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s, err := c.UpdateStatus(ctx, id)
		if err != nil {
			return err
		}
		done, paused := false, s.Phase == spi.PhasePaused
		line := StatusLine(s)
		switch s.Phase {
		case spi.PhaseIdle:
			// No rollout runs in idle: the members exist once the group has its size. Members
			// at another config stay as they are (a first commit adopts them, as InfraKit does)
			// and are not waited on.
			exist := s.Updated+s.Outdated >= s.Desired
			healthy := s.Healthy >= min(s.Updated, s.Desired)
			done = exist && (until != UntilHealthy || healthy)
			if until == UntilHealthy && !healthy {
				line += fmt.Sprintf(" - waiting for health: %d/%d healthy", s.Healthy, min(s.Updated, s.Desired))
			}
		}
		if line != last {
			last = line
			if asJSON {
				b, _ := json.Marshal(s)
				fmt.Fprintln(w, string(b))
			} else {
				fmt.Fprintf(w, "%s  %s\n", now().Format("15:04:05"), line)
			}
		}
		if paused {
			return fmt.Errorf("%w: %s", ErrPaused, s.Message)
		}
		if done {
			if !asJSON {
				if until == UntilHealthy {
					fmt.Fprintf(w, "done: %d members at %s, all seen healthy\n", s.Updated, short(s.TargetHash))
				} else {
					fmt.Fprintf(w, "done: %d members exist (health not waited for)\n", s.Updated+s.Outdated)
				}
				if s.Outdated > 0 {
					fmt.Fprintf(w, "%d members are at another config; commit the spec again to roll them\n", s.Outdated)
				}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
