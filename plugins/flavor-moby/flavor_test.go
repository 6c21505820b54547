package flavormoby

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	grouptypes "github.com/mobykit/mobykit/group/types"
	"github.com/mobykit/mobykit/spi"
)

const specYAML = `kernel:
  image: mobykit/kernel:latest
  cmdline: "console=ttyS0"
init:
  - mobykit/init:latest
services:
  - name: web
    image: mobykit/hello:latest
`

// fakeBuilder writes kernel+initrd outputs whose content follows the spec, and counts builds.
type fakeBuilder struct {
	builds atomic.Int32
	delay  time.Duration
	arches sync.Map // architectures asked for
}

func (b *fakeBuilder) Build(_ context.Context, r BuildRequest) ([]string, error) {
	b.builds.Add(1)
	b.arches.Store(r.Arch, true)
	time.Sleep(b.delay)
	content := string(r.SpecYAML) + strings.Join(r.SpecContent, "")
	for _, f := range r.SpecFiles {
		if r.SpecContent != nil {
			break // inlined: the paths only name the files
		}
		c, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		content += string(c)
	}
	var outs []string
	for _, s := range []string{"-kernel", "-initrd.img", "-cmdline"} {
		p := filepath.Join(r.Dir, r.Name+s)
		if err := os.WriteFile(p, []byte(s+content), 0o644); err != nil {
			return nil, err
		}
		outs = append(outs, p)
	}
	return outs, nil
}

func newFlavor(t *testing.T) (*Plugin, *fakeBuilder) {
	b := &fakeBuilder{delay: 50 * time.Millisecond}
	f, err := New(t.TempDir(), b, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f, b
}

func writeSpec(t *testing.T, content string) string {
	p := filepath.Join(t.TempDir(), "spec.yml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrepareBuildsOncePerGroup(t *testing.T) {
	f, b := newFlavor(t)
	specPath := writeSpec(t, specYAML)
	props, _ := json.Marshal(map[string]any{
		"spec": specPath,
		"tags": map[string]string{"role": "web", spi.GroupTag: "not-the-flavor's"},
		"userdata": map[string]any{
			"identity": map[string]any{"content": "{{.Group}} {{.LogicalID}} {{.Index}}"},
			"peers":    map[string]any{"content": `{{join .Peers ","}}`, "perm": "0644"},
		},
	})
	ctx := context.Background()
	if err := f.Validate(ctx, props, spi.Allocation{Size: 3}); err != nil {
		t.Fatal(err)
	}
	lids := []spi.LogicalID{"10.99.0.11", "10.99.0.12", "10.99.0.13"}
	alloc := spi.Allocation{LogicalIDs: lids}
	inst := spi.Any(`{"kernel":"/old/k","Initrd":"/old/i","memory":256,"network":{"name":"n"}}`)
	var wg sync.WaitGroup
	out := make([]spi.Spec, len(lids))
	errs := make([]error, len(lids))
	for i := range lids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lid := lids[i]
			out[i], errs[i] = f.Prepare(ctx, props, spi.Spec{
				Properties: inst, LogicalID: &lid,
				Tags: map[string]string{spi.GroupTag: "web", spi.ConfigHashTag: "h1", spi.LogicalIDTag: string(lid)},
			}, alloc, spi.Index{Group: "web", Sequence: 3})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := b.builds.Load(); n != 1 {
		t.Fatalf("built %d times for one group, want 1", n)
	}
	for i, s := range out {
		var p map[string]any
		json.Unmarshal(s.Properties, &p)
		if p["kernel"] != nil || p["Initrd"] != nil || p["memory"] != float64(256) || p["network"] == nil {
			t.Fatalf("instance properties not rewritten correctly: %v", p)
		}
		boot, _ := p["moby"].(string)
		if _, err := os.Stat(boot + "-kernel"); err != nil {
			t.Fatalf("moby %q does not name the build: %v", boot, err)
		}
		if s.Tags[spi.GroupTag] != "web" || s.Tags[spi.ConfigHashTag] != "h1" || s.Tags["role"] != "web" || !strings.HasPrefix(s.Tags[ImageDigestTag], "sha256:") {
			t.Fatalf("tags: %v", s.Tags)
		}
		var ud map[string]map[string]string
		if err := json.Unmarshal([]byte(s.Init), &ud); err != nil {
			t.Fatalf("Init is not LinuxKit JSON: %q", s.Init)
		}
		if want := fmt.Sprintf("web %s %d", lids[i], i); ud["identity"]["content"] != want {
			t.Fatalf("identity %q, want %q", ud["identity"]["content"], want)
		}
		if strings.Contains(ud["peers"]["content"], string(lids[i])) || strings.Count(ud["peers"]["content"], ",") != 1 || ud["peers"]["perm"] != "0644" {
			t.Fatalf("peers %v", ud["peers"])
		}
	}
	// A later Prepare (another group, same spec) reuses the build on disk, even from a new plugin.
	f2, err := New(f.Root, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f2.Prepare(ctx, props, spi.Spec{Properties: inst}, spi.Allocation{Size: 1}, spi.Index{Group: "other"}); err != nil {
		t.Fatal(err)
	}
	if n := b.builds.Load(); n != 1 {
		t.Fatalf("rebuilt an unchanged spec (%d builds)", n)
	}
}

func TestPlainTextUserdata(t *testing.T) {
	f, _ := newFlavor(t)
	props, _ := json.Marshal(map[string]any{"spec_yaml": specYAML, "userdata": "group={{.Group}} size={{.Size}} lid={{.LogicalID}}"})
	s, err := f.Prepare(context.Background(), props, spi.Spec{}, spi.Allocation{Size: 2}, spi.Index{Group: "g", Sequence: 2})
	if err != nil {
		t.Fatal(err)
	}
	if s.Init != "group=g size=2 lid=" {
		t.Fatalf("Init %q", s.Init)
	}
	bad, _ := json.Marshal(map[string]any{"spec_yaml": specYAML, "userdata": "{{.Nope}}"})
	if _, err := f.Prepare(context.Background(), bad, spi.Spec{}, spi.Allocation{Size: 2}, spi.Index{}); err == nil {
		t.Fatal("template with an unknown field rendered")
	}
}

// TestEditingSpecRollsGroup shows the documented way a spec edit reaches the config hash:
// re-pinning changes spec_digest, hence InfraKit's hash; a forgotten re-pin is refused.
func TestEditingSpecRollsGroup(t *testing.T) {
	f, _ := newFlavor(t)
	specPath := writeSpec(t, specYAML)
	group := fmt.Sprintf(`{"ID":"web","Properties":{"Allocation":{"Size":3},
	  "Instance":{"Plugin":"instance-qemu","Properties":{"memory":256}},
	  "Flavor":{"Plugin":"flavor-moby","Properties":{"spec":%q}}}}`, specPath)
	hash := func(doc []byte) string {
		var g spi.GroupSpec
		if err := json.Unmarshal(doc, &g); err != nil {
			t.Fatal(err)
		}
		p, err := grouptypes.Parse(g.Properties)
		if err != nil {
			t.Fatal(err)
		}
		h, err := p.InstanceHash()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	flavorProps := func(doc []byte) spi.Any {
		var g struct {
			Properties struct {
				Flavor struct{ Properties json.RawMessage }
			}
		}
		json.Unmarshal(doc, &g)
		return spi.Any(g.Properties.Flavor.Properties)
	}
	v1, err := Pin([]byte(group), "", "flavor-moby")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(context.Background(), flavorProps(v1), spi.Allocation{Size: 3}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(specPath, []byte(specYAML+"  - name: extra\n    image: mobykit/hello:latest\n"), 0o644)
	if err := f.Validate(context.Background(), flavorProps(v1), spi.Allocation{Size: 3}); err == nil || !strings.Contains(err.Error(), "changed since it was pinned") {
		t.Fatalf("stale pin accepted: %v", err)
	}
	if _, err := f.Prepare(context.Background(), flavorProps(v1), spi.Spec{}, spi.Allocation{Size: 3}, spi.Index{}); err == nil {
		t.Fatal("Prepare built a spec that differs from its pin")
	}
	v2, err := Pin(v1, "", "flavor-moby")
	if err != nil {
		t.Fatal(err)
	}
	if hash(v1) == hash(v2) {
		t.Fatal("re-pinning an edited spec left the config hash unchanged")
	}
	v2again, _ := Pin(v2, "", "flavor-moby")
	if hash(v2) != hash(v2again) {
		t.Fatal("pinning an unchanged spec changed the hash")
	}
	if _, err := Pin([]byte(`{"ID":"x","Properties":{"Flavor":{"Plugin":"vanilla","Properties":{}}}}`), "", "flavor-moby"); err == nil {
		t.Fatal("Pin found a flavor-moby group where there is none")
	}
}

func TestValidateRejects(t *testing.T) {
	f, _ := newFlavor(t)
	specPath := writeSpec(t, specYAML)
	badSpec := writeSpec(t, "kernel: [\n")
	for name, props := range map[string]string{
		"empty":             `null`,
		"no spec":           `{}`,
		"both":              fmt.Sprintf(`{"spec":%q,"spec_yaml":"x"}`, specPath),
		"missing file":      `{"spec":"/nonexistent.yml"}`,
		"bad yaml":          fmt.Sprintf(`{"spec":%q}`, badSpec),
		"bad inline":        `{"spec_yaml":"kernel: 3"}`,
		"bad digest":        fmt.Sprintf(`{"spec":%q,"spec_digest":"md5:1"}`, specPath),
		"bad template":      `{"spec_yaml":"x","userdata":"{{"}`,
		"bad json template": `{"spec_yaml":"x","userdata":{"a":{"content":"{{end}}"}}}`,
		"bad port":          `{"spec_yaml":"x","health":{"http":{"port":0}}}`,
		"bad regexp":        `{"spec_yaml":"x","health":{"console":"("}}`,
		"bad grace":         `{"spec_yaml":"x","health":{"console":"x","grace":"later"}}`,
		"relative spec":     `{"spec":"web.yml"}`,
		"content count":     fmt.Sprintf(`{"spec":[%q,%q],"spec_content":["x"]}`, specPath, specPath),
		"negative timeout":  `{"spec_yaml":"x","health":{"console":"x","timeout":"-1s"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			if err := f.Validate(context.Background(), spi.Any(props), spi.Allocation{Size: 1}); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestHealthy(t *testing.T) {
	f, _ := newFlavor(t)
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	f.Now = func() time.Time { return now }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/id" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, "I am web-1")
	}))
	defer srv.Close()
	hostport := strings.TrimPrefix(srv.URL, "http://")
	closed := func() string { l, _ := net.Listen("tcp", "127.0.0.1:0"); a := l.Addr().String(); l.Close(); return a }()
	console := filepath.Join(t.TempDir(), "console.log")
	os.WriteFile(console, []byte("booting\nweb: listening on :80\n"), 0o644)
	inst := func(port string, started time.Time) spi.Description {
		b, _ := json.Marshal(map[string]any{"ports": map[string]string{"80/tcp": port}, "console": console, "started": started})
		return spi.Description{ID: "qemu-1", Properties: b}
	}
	young, old := now.Add(-10*time.Second), now.Add(-10*time.Minute)
	for _, tc := range []struct {
		name   string
		health string
		inst   spi.Description
		want   spi.Health
	}{
		{"no check", `null`, inst(closed, young), spi.Healthy},
		{"http ok", `{"http":{"port":80,"path":"/id","expect":"web-1"}}`, inst(hostport, young), spi.Healthy},
		{"http wrong body", `{"http":{"port":80,"path":"/id","expect":"web-2"}}`, inst(hostport, old), spi.Unhealthy},
		{"http 404 young", `{"http":{"port":80,"path":"/"}}`, inst(hostport, young), spi.Unknown},
		{"http 404 old", `{"http":{"port":80,"path":"/"}}`, inst(hostport, old), spi.Unhealthy},
		{"tcp ok", `{"tcp":{"port":80}}`, inst(hostport, young), spi.Healthy},
		{"tcp closed young", `{"tcp":{"port":80}}`, inst(closed, young), spi.Unknown},
		{"tcp closed old", `{"tcp":{"port":80},"grace":"1m"}`, inst(closed, old), spi.Unhealthy},
		{"tcp unpublished port", `{"tcp":{"port":22}}`, inst(hostport, old), spi.Unhealthy},
		{"console ok", `{"console":"listening on :\\d+"}`, inst(closed, young), spi.Healthy},
		{"console missing", `{"console":"never"}`, inst(closed, young), spi.Unknown},
		{"no properties", `{"tcp":{"port":80}}`, spi.Description{ID: "x"}, spi.Unknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			props := spi.Any(`{"spec_yaml":"x","health":` + tc.health + `}`)
			got, err := f.Healthy(context.Background(), props, tc.inst)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("Healthy = %v, want %v", got, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"spec":["a.yml"],"userdata":{"a":{"content":"{{.Group}}"}},"health":{"http":{"port":80}}}`))
	f.Fuzz(func(t *testing.T, b []byte) { parse(b) })
}

// TestBuildOutlivesTimedOutPrepare: a Prepare whose caller gives up (InfraKit's client
// timeout) does not cancel the build; the retry finds it without building again.
func TestBuildOutlivesTimedOutPrepare(t *testing.T) {
	b := &fakeBuilder{delay: 300 * time.Millisecond}
	f, err := New(t.TempDir(), b, nil)
	if err != nil {
		t.Fatal(err)
	}
	props := spi.Any(`{"spec_yaml":` + strconvQuote(specYAML) + `}`)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := f.Prepare(ctx, props, spi.Spec{}, spi.Allocation{Size: 1}, spi.Index{}); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("Prepare past its deadline: %v", err)
	}
	s, err := f.Prepare(context.Background(), props, spi.Spec{}, spi.Allocation{Size: 1}, spi.Index{})
	if err != nil {
		t.Fatal(err)
	}
	if b.builds.Load() != 1 || !strings.HasPrefix(s.Tags[ImageDigestTag], "sha256:") {
		t.Fatalf("builds %d, tags %v", b.builds.Load(), s.Tags)
	}
}

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

// TestHealthProbeDoesNotReparseProperties: Properties are decoded, and their durations,
// console regexp and userdata templates compiled, once per distinct Properties, not on every
// health probe or Prepare (a group of N members is probed N times per poll).
func TestHealthProbeDoesNotReparseProperties(t *testing.T) {
	f, _ := newFlavor(t)
	console := filepath.Join(t.TempDir(), "console.log")
	os.WriteFile(console, []byte("booting\nready 42\n"), 0o644)
	props := spi.Any(`{"spec_yaml":` + strconvQuote(specYAML) + `,"health":{"console":"ready \\d+","timeout":"1s","grace":"1m"},` +
		`"userdata":{"id":{"content":"{{.Group}}-{{.Index}}"}}}`)
	inst, _ := json.Marshal(map[string]any{"console": console, "started": time.Now()})
	for range 50 {
		h, err := f.Healthy(context.Background(), props, spi.Description{ID: "i", Properties: inst})
		if err != nil || h != spi.Healthy {
			t.Fatalf("Healthy = %v, %v", h, err)
		}
	}
	for i := range 3 {
		s, err := f.Prepare(context.Background(), props, spi.Spec{}, spi.Allocation{Size: 3}, spi.Index{Group: "g"})
		if err != nil {
			t.Fatal(err)
		}
		if s.Init != `{"id":{"content":"g--1"}}` {
			t.Fatalf("Prepare %d: Init %q", i, s.Init)
		}
	}
	if n := f.parses.Load(); n != 1 {
		t.Fatalf("Properties parsed %d times for 50 probes and 3 Prepares, want once", n)
	}
	// A bad Properties document is refused every time, from the cache too.
	bad := spi.Any(`{"spec_yaml":"x","health":{"console":"("}}`)
	for range 2 {
		if _, err := f.Healthy(context.Background(), bad, spi.Description{}); err == nil || !strings.Contains(err.Error(), "health.console") {
			t.Fatalf("bad regexp: %v", err)
		}
	}
	if n := f.parses.Load(); n != 2 {
		t.Fatalf("parsed %d times, want 2", n)
	}
}

// TestParseCacheBounded: a client sending ever-different Properties does not grow the cache
// past its bound.
func TestParseCacheBounded(t *testing.T) {
	f, _ := newFlavor(t)
	for i := range 3 * maxCachedParses {
		f.Healthy(context.Background(), spi.Any(fmt.Sprintf(`{"spec_yaml":"x","tags":{"n":"%d"}}`, i)), spi.Description{})
		f.mu.Lock()
		n := len(f.cache)
		f.mu.Unlock()
		if n > maxCachedParses {
			t.Fatalf("cache holds %d entries, bound %d", n, maxCachedParses)
		}
	}
}

// blockingBuilder blocks until its context ends, then reports that it returned.
type blockingBuilder struct {
	started, returned chan struct{}
}

func (b *blockingBuilder) Build(ctx context.Context, _ BuildRequest) ([]string, error) {
	close(b.started)
	defer close(b.returned)
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestCloseCancelsInFlightBuild: stopping the plugin cancels the background build Validate
// started and waits for it, leaving no goroutine behind; a Prepare waiting for that build
// gets an error, and later calls that need a build are refused.
func TestCloseCancelsInFlightBuild(t *testing.T) {
	b := &blockingBuilder{started: make(chan struct{}), returned: make(chan struct{})}
	f, err := New(t.TempDir(), b, nil)
	if err != nil {
		t.Fatal(err)
	}
	props := spi.Any(`{"spec_yaml":` + strconvQuote(specYAML) + `}`)
	if err := f.Validate(context.Background(), props, spi.Allocation{Size: 1}); err != nil {
		t.Fatal(err)
	}
	<-b.started
	prepared := make(chan error, 1)
	go func() {
		_, err := f.Prepare(context.Background(), props, spi.Spec{}, spi.Allocation{Size: 1}, spi.Index{})
		prepared <- err
	}()
	closed := make(chan struct{})
	go func() { f.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return: the build was not cancelled")
	}
	select {
	case <-b.returned:
	default:
		t.Fatal("Close returned while the build was still running")
	}
	// The Prepare either joined the build (cancelled) or came after Close (refused).
	if err := <-prepared; err == nil || !strings.Contains(err.Error(), "canceled") && !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Prepare waiting for the cancelled build: %v", err)
	}
	if _, err := f.Prepare(context.Background(), props, spi.Spec{}, spi.Allocation{Size: 1}, spi.Index{}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Prepare after Close: %v", err)
	}
}

// TestConsoleProbeMemoryBounded: the guest writes the console log the console health check
// reads; a 64 MiB log (one huge line, then the ready line) costs the probe a bounded amount of
// memory, not the whole file (it used to be read whole and split into a copy).
func TestConsoleProbeMemoryBounded(t *testing.T) {
	f, _ := newFlavor(t)
	console := filepath.Join(t.TempDir(), "console.log")
	fh, err := os.Create(console)
	if err != nil {
		t.Fatal(err)
	}
	junk := []byte(strings.Repeat("x", 1<<20))
	for range 64 {
		fh.Write(junk)
	}
	fh.WriteString("\r\nservice ready\n")
	fh.Close()
	props := spi.Any(`{"spec_yaml":"x","health":{"console":"^service ready$"}}`)
	inst, _ := json.Marshal(map[string]any{"console": console, "started": time.Now()})
	f.Healthy(context.Background(), props, spi.Description{ID: "i", Properties: inst}) // parse and cache
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	h, err := f.Healthy(context.Background(), props, spi.Description{ID: "i", Properties: inst})
	runtime.ReadMemStats(&after)
	if err != nil || h != spi.Healthy {
		t.Fatalf("Healthy = %v, %v: the line after the huge one was not found", h, err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 8<<20 {
		t.Fatalf("one console probe allocated %d MiB for a 64 MiB log", n>>20)
	}
}

// TestArchBuildsAndReachesInstance: flavor-moby's arch is the assembler's target, a build per
// architecture (same spec, another image), and is passed to the instance plugin as "arch"
// beside "moby" (instance-aws imports the AMI with it); without it nothing is added, and an
// unknown architecture is refused naming the field.
func TestArchBuildsAndReachesInstance(t *testing.T) {
	f, b := newFlavor(t)
	specPath := writeSpec(t, specYAML)
	ctx := context.Background()
	prepare := func(arch string) map[string]any {
		t.Helper()
		m := map[string]any{"spec": specPath}
		if arch != "" {
			m["arch"] = arch
		}
		props, _ := json.Marshal(m)
		s, err := f.Prepare(ctx, props, spi.Spec{Properties: spi.Any(`{"instance_type":"t4g.micro"}`)}, spi.Allocation{Size: 1}, spi.Index{Group: "g"})
		if err != nil {
			t.Fatal(err)
		}
		var p map[string]any
		if err := json.Unmarshal(s.Properties, &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	def := prepare("")
	if _, ok := def["arch"]; ok {
		t.Fatalf("arch passed without being asked for: %v", def)
	}
	arm := prepare("aarch64")
	if arm["arch"] != "arm64" || arm["instance_type"] != "t4g.micro" {
		t.Fatalf("instance properties %v, want arch arm64 beside the instance's own", arm)
	}
	if arm["moby"] == def["moby"] {
		t.Fatalf("the arm64 build reused the default one: %v", arm["moby"])
	}
	if _, ok := b.arches.Load("arm64"); !ok || b.builds.Load() != 2 {
		t.Fatalf("%d builds; the assembler was not asked for arm64", b.builds.Load())
	}
	props, _ := json.Marshal(map[string]any{"spec": specPath, "arch": "riscv"})
	if err := f.Validate(ctx, props, spi.Allocation{Size: 1}); err == nil || !strings.Contains(err.Error(), "arch") {
		t.Fatalf("arch riscv: %v, want an error naming arch", err)
	}
}
