package vm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mobykit/mobykit/spi"
)

// Backend is what a hypervisor plugin supplies to Instances: it checks Properties, turns a
// spec into a command line inside a prepared state folder, and asks a running VM to power off.
type Backend interface {
	// Validate checks the Instance Properties of a group spec.
	Validate(properties spi.Any) error
	// Launch prepares dir (disks, metadata, sockets...) for the new instance id and returns the
	// hypervisor command line and the properties to report for it. It must be quick: the VM
	// boots after Provision returns.
	Launch(ctx context.Context, dir Dir, id spi.ID, spec spi.Spec) (Launch, error)
	// Shutdown asks the VM to power off (ACPI); Instances kills it if it has not within Grace.
	Shutdown(ctx context.Context, dir Dir, p *Process) error
	// Release frees what the VM held outside its state folder. It runs after the VM is gone,
	// on Destroy and when a dead VM is reaped. Persistent disks are kept.
	Release(dir Dir) error
}

// Launch is a Backend's answer to Launch.
type Launch struct {
	Argv []string
	Env  []string // nil: inherit
	// Properties are reported by DescribeInstances (when asked) along with the state folder,
	// the console log and the PID. Stored in the state folder as launch.json.
	Properties map[string]any
}

// ShutdownTimeoutProperty in Launch.Properties (a Go duration string) overrides
// Instances.Grace for that VM.
const ShutdownTimeoutProperty = "shutdown_timeout"

// EarlyExitWindow is how long Provision watches a new hypervisor process for an immediate
// exit (a configuration it rejects) before returning.
var EarlyExitWindow = 250 * time.Millisecond

// LaunchFile holds a Launch's Properties.
const LaunchFile = "launch.json"

// destroyingFile marks a VM whose Destroy is under way: it is no longer listed.
const destroyingFile = "destroying"

// Instances implements spi.Instance for local VMs on top of a Store and a Backend. VMs are
// detached processes; their state folders are the only record, so a new Instances over the
// same Store (a restarted plugin) finds them again.
type Instances struct {
	Store   Store
	Backend Backend
	// Prefix starts every instance ID, e.g. "qemu-".
	Prefix string
	// Grace is how long Destroy waits for an ACPI shutdown before killing; default 10s.
	Grace time.Duration
	Log   *slog.Logger

	mu sync.Mutex // serialises Provision against listing and reaping
}

var _ spi.Instance = (*Instances)(nil)

func (in *Instances) log() *slog.Logger {
	if in.Log != nil {
		return in.Log
	}
	return slog.Default()
}

// Validate delegates to the Backend.
func (in *Instances) Validate(_ context.Context, properties spi.Any) error {
	return in.Backend.Validate(properties)
}

func newID(prefix string) (spi.ID, error) {
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return spi.ID(prefix + hex.EncodeToString(b)), nil
}

// Provision creates the state folder, records spec and tags, and starts the hypervisor. It
// returns as soon as the process runs; the instance is listed from then on.
func (in *Instances) Provision(ctx context.Context, spec spi.Spec) (*spi.ID, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	id, err := newID(in.Prefix)
	if err != nil {
		return nil, fmt.Errorf("provision: new ID: %w", err)
	}
	dir, err := in.Store.Create(string(id))
	if err != nil {
		return nil, fmt.Errorf("provision %s: %w", id, err)
	}
	fail := func(err error) (*spi.ID, error) {
		in.Backend.Release(dir)
		in.Store.Remove(string(id))
		return nil, fmt.Errorf("provision %s: %w", id, err)
	}
	tags := spec.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	if err := dir.WriteJSON(SpecFile, spec); err != nil {
		return fail(err)
	}
	if err := dir.WriteJSON(TagsFile, tags); err != nil {
		return fail(err)
	}
	l, err := in.Backend.Launch(ctx, dir, id, spec)
	if err != nil {
		return fail(err)
	}
	if err := dir.WriteJSON(LaunchFile, l.Properties); err != nil {
		return fail(err)
	}
	logf, err := os.OpenFile(dir.Path(LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fail(err)
	}
	defer logf.Close()
	p, _, err := Start(StartOptions{Argv: l.Argv, Env: l.Env, Dir: string(dir), Marker: string(dir), Stdout: logf, Stderr: logf})
	if err != nil {
		return fail(err)
	}
	// A hypervisor that rejects its configuration (a missing file, a bad option, no KVM)
	// exits at once: report that here, with its own words, rather than as a VM that vanishes.
	for deadline := time.Now().Add(EarlyExitWindow); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !p.Alive() {
			msg, _ := os.ReadFile(dir.Path(LogFile))
			return fail(fmt.Errorf("%s exited at once: %s", l.Argv[0], strings.TrimSpace(string(msg))))
		}
	}
	if err := dir.WriteJSON(ProcessFile, p); err != nil {
		p.Stop(ctx, nil, 0)
		return fail(err)
	}
	in.log().Info("provisioned", "id", id, "pid", p.PID, "state", dir)
	return &id, nil
}

// Label merges labels into the instance's tags.
func (in *Instances) Label(_ context.Context, instance spi.ID, labels map[string]string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	dir, err := in.Store.Get(string(instance))
	if err != nil {
		return fmt.Errorf("label %s: %w", instance, err)
	}
	tags := map[string]string{}
	if err := dir.ReadJSON(TagsFile, &tags); err != nil {
		return fmt.Errorf("label %s: %w", instance, err)
	}
	if tags == nil {
		tags = map[string]string{}
	}
	for k, v := range labels {
		tags[k] = v
	}
	if err := dir.WriteJSON(TagsFile, tags); err != nil {
		return fmt.Errorf("label %s: %w", instance, err)
	}
	return nil
}

// Destroy stops the VM (ACPI shutdown, then kill after Grace) and removes its state folder.
// It stops listing the instance at once and is idempotent: destroying an unknown or already
// destroyed instance succeeds.
func (in *Instances) Destroy(ctx context.Context, instance spi.ID, c spi.Context) error {
	dir, err := in.Store.Get(string(instance))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("destroy %s: %w", instance, err)
	}
	if err := os.WriteFile(dir.Path(destroyingFile), []byte(c.Reason), 0o644); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("destroy %s: %w", instance, err)
	}
	start := time.Now()
	var p Process
	if err := dir.ReadJSON(ProcessFile, &p); err == nil {
		grace := in.Grace
		if grace == 0 {
			grace = 10 * time.Second
		}
		var lp map[string]any
		if dir.ReadJSON(LaunchFile, &lp) == nil {
			if s, ok := lp[ShutdownTimeoutProperty].(string); ok {
				if d, err := time.ParseDuration(s); err == nil {
					grace = d
				}
			}
		}
		if err := p.Stop(ctx, func(ctx context.Context) error { return in.Backend.Shutdown(ctx, dir, &p) }, grace); err != nil {
			return fmt.Errorf("destroy %s: %w", instance, err)
		}
	}
	if err := in.Backend.Release(dir); err != nil {
		in.log().Warn("release failed", "id", instance, "err", err)
	}
	if err := in.Store.Remove(string(instance)); err != nil {
		return fmt.Errorf("destroy %s: %w", instance, err)
	}
	in.log().Info("destroyed", "id", instance, "reason", c.Reason, "seconds", time.Since(start).Seconds())
	return nil
}

// DescribeInstances lists the live VMs whose tags contain all of tags. VMs whose process has
// died (or whose PID now belongs to another process) are not listed: their state folders are
// removed, after logging the end of their console.
func (in *Instances) DescribeInstances(_ context.Context, tags map[string]string, properties bool) ([]spi.Description, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	ids, err := in.Store.List()
	if err != nil {
		return nil, err
	}
	out := []spi.Description{}
	for _, id := range ids {
		dir := Dir(filepath.Join(in.Store.Root, id))
		if _, err := os.Stat(dir.Path(destroyingFile)); err == nil {
			continue
		}
		var p Process
		if err := dir.ReadJSON(ProcessFile, &p); err != nil || !p.Alive() {
			in.reap(dir, err)
			continue
		}
		var spec spi.Spec
		if err := dir.ReadJSON(SpecFile, &spec); err != nil {
			in.log().Warn("unreadable spec; skipping", "id", id, "err", err)
			continue
		}
		t := map[string]string{}
		if err := dir.ReadJSON(TagsFile, &t); err != nil {
			in.log().Warn("unreadable tags; skipping", "id", id, "err", err)
			continue
		}
		if !matches(t, tags) {
			continue
		}
		d := spi.Description{ID: spi.ID(id), LogicalID: spec.LogicalID, Tags: t}
		if properties {
			props := map[string]any{}
			dir.ReadJSON(LaunchFile, &props)
			if props == nil {
				props = map[string]any{}
			}
			props["pid"] = p.PID
			props["state_dir"] = string(dir)
			if _, ok := props["console"]; !ok {
				props["console"] = dir.Path(ConsoleFile)
			}
			props["started"] = p.Started
			b, err := json.Marshal(props)
			if err != nil {
				return nil, fmt.Errorf("describe %s: %w", id, err)
			}
			d.Properties = b
		}
		out = append(out, d)
	}
	return out, nil
}

func matches(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

// reap removes the state folder of a VM that is no longer running.
func (in *Instances) reap(dir Dir, why error) {
	tail := func(name string) string {
		b, err := os.ReadFile(dir.Path(name))
		if err != nil {
			return ""
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 10 {
			lines = lines[len(lines)-10:]
		}
		return strings.Join(lines, "\n")
	}
	in.log().Warn("VM process gone; removing its state", "id", dir.Name(), "record_err", why, "console_tail", tail(ConsoleFile), "vmm_log", tail(LogFile))
	if err := in.Backend.Release(dir); err != nil {
		in.log().Warn("release failed", "id", dir.Name(), "err", err)
	}
	if err := in.Store.Remove(dir.Name()); err != nil {
		in.log().Warn("cannot remove state of dead VM", "id", dir.Name(), "err", err)
	}
}
