package group

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mobykit/mobykit/group/fake"
	"github.com/mobykit/mobykit/group/store"
	"github.com/mobykit/mobykit/group/types"
	"github.com/mobykit/mobykit/internal/golden"
	"github.com/mobykit/mobykit/spi"
)

const poll = 10 * time.Second

// spec builds a group spec: version names the instance config ("v1"), bad makes it never
// healthy, updating is the raw Updating object ("" for none).
func spec(id string, size int, lids []string, version string, bad bool, updating string) spi.GroupSpec {
	alloc := fmt.Sprintf(`{"Size":%d}`, size)
	if len(lids) > 0 {
		alloc = `{"LogicalIDs":["` + strings.Join(lids, `","`) + `"]}`
	}
	props := fmt.Sprintf(`{"Allocation":%s,"Instance":{"Plugin":"fake","Properties":{"version":%q,"bad":%t}},"Flavor":{"Plugin":"fake","Properties":{}}`, alloc, version, bad)
	if updating != "" {
		props += `,"Updating":` + updating
	}
	return spi.GroupSpec{ID: spi.GroupID(id), Properties: []byte(props + "}")}
}

// event is something that happens at the start of a step.
type event struct {
	name string
	do   func(h *harness) error
	spec *spi.GroupSpec
}

func commit(s spi.GroupSpec) event {
	return event{name: "commit " + versionOf(s), spec: &s, do: func(h *harness) error {
		details, err := h.ctrl.CommitGroup(context.Background(), s, false)
		h.printf("  commit %s: %s\n", versionOf(s), details)
		return err
	}}
}

func setSize(n int) event {
	return event{name: fmt.Sprintf("set-size %d", n), do: func(h *harness) error {
		h.printf("  set-size %d\n", n)
		return h.ctrl.SetSize(context.Background(), h.id, n)
	}}
}

// kill removes the k-th member (by ID order) behind the controller's back.
func kill(k int) event {
	return event{name: fmt.Sprintf("kill #%d", k), do: func(h *harness) error {
		ms := h.stepStart
		if k >= len(ms) {
			return fmt.Errorf("kill #%d: only %d members", k, len(ms))
		}
		h.cloud.Kill(ms[k].ID)
		h.printf("  killed %s\n", ms[k].ID)
		h.chaos = true
		return nil
	}}
}

var restart = event{name: "restart", do: func(h *harness) error {
	h.ctrl.Stop()
	h.ctrl = h.newController()
	if err := h.ctrl.Start(context.Background()); err != nil {
		return err
	}
	st, err := h.ctrl.UpdateStatus(context.Background(), h.id)
	h.printf("  restarted controller: phase %s loaded from the store\n", st.Phase)
	return err
}}

func control(name string, f func(c *Controller, ctx context.Context, id spi.GroupID) error) event {
	return event{name: name, do: func(h *harness) error {
		h.printf("  %s\n", name)
		return f(h.ctrl, context.Background(), h.id)
	}}
}

var (
	pause    = control("pause", (*Controller).PauseUpdate)
	resume   = control("resume", (*Controller).ResumeUpdate)
	rollback = control("rollback", (*Controller).RollbackUpdate)
)

func versionOf(s spi.GroupSpec) string {
	p, _ := types.Parse(s.Properties)
	var v struct {
		Version string
		Bad     bool
	}
	_ = jsonUnmarshal(p.Instance.Properties, &v)
	if v.Bad {
		return v.Version + "(bad)"
	}
	return v.Version
}

type scenario struct {
	name  string
	id    string
	steps int
	boot  int // polls until a good instance reports Healthy
	self  spi.LogicalID
	setup func(c *fake.Cloud)
	at    map[int][]event
	// final is the expected end: the phase, then the version of every member in ID order,
	// e.g. "idle v2 v2 v2".
	final string
}

func finalMatches(got, want string) bool {
	g := strings.Fields(got)
	w := strings.Fields(want)
	if len(g) != len(w) || g[0] != w[0] {
		return false
	}
	for i := 1; i < len(g); i++ {
		if g[i][strings.LastIndexByte(g[i], ':')+1:] != w[i] {
			return false
		}
	}
	return true
}

type harness struct {
	t      *testing.T
	sc     scenario
	id     spi.GroupID
	now    time.Time
	nowMu  sync.Mutex
	cloud  *fake.Cloud
	store  store.Store
	ctrl   *Controller
	out    strings.Builder
	outMu  sync.Mutex
	hashes map[string]string // config hash -> version label
	chaos  bool
	// stepStart is the membership at the start of the step (kill ranks refer to it, so that
	// kills in one step commute).
	stepStart []fake.Member
	maxCount  int
	// invariant state for the current step
	converged bool
	size      int
	lids      []spi.LogicalID
	strategy  types.Strategy
	violation []string
}

func (h *harness) clock() time.Time {
	h.nowMu.Lock()
	defer h.nowMu.Unlock()
	return h.now
}

func (h *harness) printf(f string, a ...any) {
	h.outMu.Lock()
	defer h.outMu.Unlock()
	fmt.Fprintf(&h.out, f, a...)
}

func (h *harness) newController() *Controller {
	return New(fake.Plugins{Cloud: h.cloud}, h.store, Options{
		Manual: true, Now: h.clock, PollInterval: poll, SelfLogicalID: h.sc.self,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
}

func (h *harness) label(hash string) string {
	if v, ok := h.hashes[hash]; ok {
		return v
	}
	if hash == spi.BootstrapHash {
		return hash
	}
	return "?" + hash[:min(6, len(hash))]
}

// check runs after every Provision and Destroy, with the cloud locked.
func (h *harness) check(c *fake.Cloud, op string) {
	ms := c.SnapshotLocked(h.id)
	if len(h.lids) == 0 && len(ms) > h.maxCount {
		h.violation = append(h.violation, fmt.Sprintf("after %s: %d members > max(size %d + surge %d, members before the step)", op, len(ms), h.size, h.strategy.MaxSurge))
	}
	if len(h.lids) > 0 && len(ms) > len(h.lids) {
		h.violation = append(h.violation, fmt.Sprintf("after %s: %d members in a quorum of %d", op, len(ms), len(h.lids)))
	}
	if !h.converged || op != "destroy" {
		return
	}
	if len(h.lids) > 0 {
		ok := map[spi.LogicalID]bool{}
		for _, m := range ms {
			if m.Health == spi.Healthy && m.Spec.LogicalID != nil {
				ok[*m.Spec.LogicalID] = true
			}
		}
		lost := 0
		for _, l := range h.lids {
			if !ok[l] {
				lost++
			}
		}
		if lost > 1 {
			h.violation = append(h.violation, fmt.Sprintf("after destroy: quorum lost %d members at once", lost))
		}
		return
	}
	healthy := 0
	for _, m := range ms {
		if m.Health == spi.Healthy {
			healthy++
		}
	}
	if min := h.size - h.strategy.MaxUnavailable; healthy < min {
		h.violation = append(h.violation, fmt.Sprintf("after destroy: %d healthy < size %d - unavailable %d", healthy, h.size, h.strategy.MaxUnavailable))
	}
}

func (h *harness) target() {
	h.size, h.lids, h.strategy = 0, nil, types.Strategy{}
	specs, _ := h.ctrl.InspectGroups(context.Background())
	for _, s := range specs {
		if s.ID == h.id {
			p, _ := types.Parse(s.Properties)
			h.size, h.lids, h.strategy = p.TargetSize(), p.Allocation.LogicalIDs, p.Strategy()
		}
	}
}

func runScenario(t *testing.T, sc scenario, seed int64) string {
	h := &harness{t: t, sc: sc, id: spi.GroupID(sc.id), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), hashes: map[string]string{}}
	h.cloud = fake.New(h.clock)
	rng := rand.New(rand.NewSource(seed))
	h.cloud.Shuffle = rng
	boot := time.Duration(sc.boot) * poll
	h.cloud.Health = func(inst fake.Instance, age time.Duration) spi.Health {
		var v struct {
			Bad     bool
			Version string
		}
		_ = jsonUnmarshal(inst.Spec.Properties, &v)
		if v.Bad || age < boot {
			return spi.Unknown
		}
		// "flaky" configs stop answering health checks after a minute.
		if strings.HasPrefix(v.Version, "flaky") && age >= time.Minute {
			return spi.Unknown
		}
		return spi.Healthy
	}
	h.cloud.OnDestroy = func(c *fake.Cloud) { h.check(c, "destroy") }
	h.cloud.OnProvision = func(c *fake.Cloud) { h.check(c, "provision") }
	if sc.setup != nil {
		sc.setup(h.cloud)
	}
	h.store = store.NewMemory()
	h.ctrl = h.newController()
	if err := h.ctrl.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Label every config hash the scenario uses.
	for _, evs := range sc.at {
		for _, e := range evs {
			if e.spec != nil {
				p, err := types.Parse(e.spec.Properties)
				if err != nil {
					t.Fatal(err)
				}
				hash, err := p.InstanceHash()
				if err != nil {
					t.Fatal(err)
				}
				h.hashes[hash] = versionOf(*e.spec)
			}
		}
	}
	for step := 0; step < sc.steps; step++ {
		h.printf("step %d t=%s\n", step, h.clock().Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)))
		h.chaos = false
		h.stepStart = h.cloud.Snapshot(h.id)
		evs := sc.at[step]
		// Events of one step happen in a seeded random order; the outcome must not depend on it
		// (events that do depend on each other are put on different steps). What they print is
		// written in declaration order.
		order := rng.Perm(len(evs))
		outs := make([]string, len(evs))
		for _, i := range order {
			mark := h.out.Len()
			if err := evs[i].do(h); err != nil {
				h.printf("  %s: error: %v\n", evs[i].name, err)
			}
			all := h.out.String()
			outs[i] = all[mark:]
			h.out.Reset()
			h.out.WriteString(all[:mark])
		}
		for _, o := range outs {
			h.printf("%s", o)
		}
		h.target()
		ms := h.cloud.Snapshot(h.id)
		healthy := 0
		var line []string
		for _, m := range ms {
			st := m.Health.String() // ground truth: booting or broken members are "unknown"
			if m.Health == spi.Healthy {
				st = "ok"
				healthy++
			}
			line = append(line, fmt.Sprintf("%s:%s:%s", m.ID, h.label(m.Tags[spi.ConfigHashTag]), st))
		}
		h.printf("  members %s\n", strings.Join(line, " "))
		h.maxCount = max(h.size+h.strategy.MaxSurge, len(ms))
		h.converged = !h.chaos && h.size > 0 && healthy >= h.size
		h.violation = nil
		d, err := h.ctrl.Reconcile(context.Background(), h.id)
		for _, l := range strings.Split(strings.TrimSpace(d.String()), "\n") {
			h.printf("  %s\n", l)
		}
		if err != nil {
			h.printf("  error: %v\n", err)
		}
		for _, v := range h.violation {
			t.Errorf("seed %d step %d: invariant violated: %s", seed, step, v)
		}
		h.nowMu.Lock()
		h.now = h.now.Add(poll)
		h.nowMu.Unlock()
	}
	st, err := h.ctrl.UpdateStatus(context.Background(), h.id)
	if err == nil {
		h.printf("final phase=%s desired=%d updated=%d healthy=%d outdated=%d\n", st.Phase, st.Desired, st.Updated, st.Healthy, st.Outdated)
	}
	ms := h.cloud.Snapshot(h.id)
	var line []string
	for _, m := range ms {
		line = append(line, fmt.Sprintf("%s:%s", m.ID, h.label(m.Tags[spi.ConfigHashTag])))
	}
	h.printf("final members %s\n", strings.Join(line, " "))
	h.printf("calls %s\n", formatCalls(h.cloud.Calls()))
	if sc.final != "" {
		got := fmt.Sprintf("%s %s", st.Phase, strings.Join(line, " "))
		if !finalMatches(got, sc.final) {
			t.Errorf("seed %d: final state %q, want phase and versions %q", seed, got, sc.final)
		}
	}
	h.ctrl.Stop()
	return h.out.String()
}

func formatCalls(m map[string]int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(out, " ")
}

func TestRolloutSimulations(t *testing.T) {
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			var first string
			for seed := int64(1); seed <= 4; seed++ {
				got := runScenario(t, sc, seed)
				if seed == 1 {
					first = got
					continue
				}
				if got != first {
					t.Fatalf("seed %d gives a different transcript than seed 1:\n%s\n--- seed 1:\n%s", seed, got, first)
				}
			}
			golden.Check(t, filepath.Join("testdata", "rollout", sc.name+".golden"), []byte(first))
		})
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
