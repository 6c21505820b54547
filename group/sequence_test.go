package group

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mobykit/mobykit/group/fake"
	"github.com/mobykit/mobykit/group/store"
	"github.com/mobykit/mobykit/internal/infrakitvectors"
	"github.com/mobykit/mobykit/spi"
)

// The sequence.* vectors record the plugin calls a real InfraKit group controller made. These
// tests check that mobykit's controller makes the same calls with the same parameters (instance
// IDs aside) for the parts where mobykit does not deliberately differ.

type sequence struct {
	Exchanges []struct {
		Method  string
		Request struct{ Params json.RawMessage }
	}
}

func loadSequence(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(infrakitvectors.Dir(t), name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var s sequence
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range s.Exchanges {
		if strings.HasPrefix(e.Method, "Group.") {
			continue
		}
		var compact json.RawMessage
		if err := json.Unmarshal(e.Request.Params, &compact); err != nil {
			t.Fatal(err)
		}
		p, _ := json.Marshal(compact)
		out = append(out, e.Method+" "+string(p))
	}
	return out
}

var instanceIDs = regexp.MustCompile(`"(ID|Instance)":"[^"]*"`)

// normalise replaces instance IDs (they are the plugin's) and re-encodes the parameters with
// sorted keys (the recorded Tags maps kept their insertion order).
func normalise(calls []string) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		method, params, _ := strings.Cut(c, " ")
		var v any
		if err := json.Unmarshal([]byte(params), &v); err == nil {
			b, _ := json.Marshal(v)
			params = string(b)
		}
		out[i] = method + " " + instanceIDs.ReplaceAllString(params, `"$1":"ID"`)
	}
	return out
}

// vanilla mimics InfraKit's vanilla flavor closely enough for the recorded Provision specs:
// it merges Tags and joins Init lines.
type vanilla struct{ *fake.Cloud }

func (v vanilla) Prepare(ctx context.Context, properties spi.Any, spec spi.Spec, a spi.Allocation, i spi.Index) (spi.Spec, error) {
	if _, err := v.Cloud.Flavor().Prepare(ctx, properties, spec, a, i); err != nil {
		return spec, err
	}
	var p struct {
		Init []string
		Tags map[string]string
	}
	_ = json.Unmarshal(properties, &p)
	tags := map[string]string{}
	for k, val := range spec.Tags {
		tags[k] = val
	}
	for k, val := range p.Tags {
		tags[k] = val
	}
	spec.Tags = tags
	spec.Init = strings.Join(p.Init, "\n")
	return spec, nil
}

type vanillaPlugins struct{ cloud *fake.Cloud }

func (p vanillaPlugins) Instance(spi.PluginName) (spi.Instance, error) { return p.cloud, nil }
func (p vanillaPlugins) Flavor(spi.PluginName) (spi.Flavor, error) {
	return vanilla{p.cloud}.withFlavor(), nil
}

type vanillaFlavor struct {
	spi.Flavor
	v vanilla
}

func (v vanilla) withFlavor() spi.Flavor { return vanillaFlavor{Flavor: v.Cloud.Flavor(), v: v} }
func (f vanillaFlavor) Prepare(ctx context.Context, properties spi.Any, spec spi.Spec, a spi.Allocation, i spi.Index) (spi.Spec, error) {
	return f.v.Prepare(ctx, properties, spec, a, i)
}

func newRecorded(t *testing.T) (*Controller, *fake.Cloud) {
	cloud := fake.New(nil)
	cloud.Record = true
	c := New(vanillaPlugins{cloud}, store.NewMemory(), Options{Manual: true, MaxParallel: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return c, cloud
}

func commitParams(t *testing.T, seq string) spi.GroupSpec {
	b, _ := os.ReadFile(filepath.Join(infrakitvectors.Dir(t), seq+".json"))
	var s struct {
		Exchanges []struct {
			Method  string
			Request struct{ Params params }
		}
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	for _, e := range s.Exchanges {
		if e.Method == "Group.CommitGroup" {
			return e.Request.Params.Spec
		}
	}
	t.Fatalf("%s has no CommitGroup", seq)
	return spi.GroupSpec{}
}

func TestSequenceInitialCommit(t *testing.T) {
	c, cloud := newRecorded(t)
	ctx := context.Background()
	spec := commitParams(t, "sequence.initial-commit")
	if _, err := c.CommitGroup(ctx, spec, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reconcile(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reconcile(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	got := normalise(cloud.Log())
	want := normalise(loadSequence(t, "sequence.initial-commit"))
	compareCalls(t, got, want)
}

func TestSequenceAdoptBootstrapAndLabel(t *testing.T) {
	c, cloud := newRecorded(t)
	ctx := context.Background()
	want := normalise(loadSequence(t, "sequence.adopt-bootstrap-and-label"))
	// The first exchange is the out-of-band Provision of the bootstrap instance.
	if _, err := cloud.Provision(ctx, spi.Spec{Properties: spi.Any(`{"note":"v1"}`),
		Tags: map[string]string{spi.GroupTag: "boot", spi.ConfigHashTag: spi.BootstrapHash}}); err != nil {
		t.Fatal(err)
	}
	spec := commitParams(t, "sequence.adopt-bootstrap-and-label")
	if _, err := c.CommitGroup(ctx, spec, false); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := c.Reconcile(ctx, spec.ID); err != nil {
			t.Fatal(err)
		}
	}
	compareCalls(t, normalise(cloud.Log()), want)
}

func TestSequenceDestroyGroup(t *testing.T) {
	ctx := context.Background()
	want := normalise(loadSequence(t, "sequence.destroy-group"))
	c, cloud := newRecorded(t)
	spec := spi.GroupSpec{ID: "managers", Properties: spi.Any(`{"Allocation":{"LogicalIDs":["10.0.0.1","10.0.0.2","10.0.0.3"]},"Instance":{"Plugin":"file","Properties":{"role":"manager"}},"Flavor":{"Plugin":"vanilla","Properties":{"Init":["echo mgr"]}}}`)}
	if _, err := c.CommitGroup(ctx, spec, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reconcile(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	cloud.Log()
	if err := c.DestroyGroup(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	got := normalise(cloud.Log())
	// The recorded members carried vanilla's Init in their Properties; ours carry the same
	// spec, so the whole Drain parameters compare equal apart from instance IDs.
	compareCalls(t, got, want)
}

func compareCalls(t *testing.T, got, want []string) {
	t.Helper()
	n := max(len(got), len(want))
	for i := 0; i < n; i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Errorf("call %d:\n got %s\nwant %s", i, g, w)
		}
	}
}
