package flavormoby

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mobykit/mobykit/assembler"
	"github.com/mobykit/mobykit/assembler/spec"
	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/vm"
)

// Tags the flavor adds to every instance.
const (
	// ImageDigestTag is the digest of the image the instance boots ("sha256:<hex>" over the
	// built files).
	ImageDigestTag = "mobykit.image.digest"
)

// BuildRequest asks a Builder for one image.
type BuildRequest struct {
	// SpecFiles, or SpecYAML when there are none. With SpecContent (one entry per
	// SpecFiles) the files are not read: SpecFiles only name them.
	SpecFiles   []string
	SpecContent []string
	SpecYAML    []byte
	Format      string
	// Dir receives the outputs, named Name-kernel, Name-initrd.img, ... as the assembler
	// names them.
	Dir, Name string
	Insecure  []string
	// Arch is the target architecture ("" = the plugin's own).
	Arch string
}

// Builder builds an image spec. AssemblerBuilder is the real one; tests use fakes.
type Builder interface {
	Build(ctx context.Context, r BuildRequest) (outputs []string, err error)
}

// AssemblerBuilder builds with mobykit's assembler, using the image cache at CacheDir
// ("" = the assembler's default).
type AssemblerBuilder struct {
	CacheDir string
}

// Build implements Builder.
func (a AssemblerBuilder) Build(ctx context.Context, r BuildRequest) ([]string, error) {
	o := assembler.Options{Name: r.Name, OutputDir: r.Dir, Formats: []string{r.Format}, CacheDir: a.CacheDir, Insecure: r.Insecure, Arch: r.Arch}
	var res *assembler.Result
	var err error
	if r.SpecContent != nil {
		var m *spec.Moby
		if m, err = loadInline(r.SpecFiles, r.SpecContent); err == nil {
			res, err = assembler.Build(ctx, m, o)
		}
	} else if len(r.SpecFiles) > 0 {
		res, err = assembler.BuildFiles(ctx, r.SpecFiles, o)
	} else {
		var m *spec.Moby
		if m, err = spec.Parse("spec_yaml", r.SpecYAML); err == nil {
			if err = m.Validate(); err == nil {
				res, err = assembler.Build(ctx, m, o)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	return res.Outputs, nil
}

// Plugin is the flavor. Build results live under Root/builds/<content key>/. Builds run in
// the background, under a context Close cancels.
type Plugin struct {
	Root    string
	Builder Builder
	Log     *slog.Logger
	// Now is the clock used for health grace periods; default time.Now.
	Now func() time.Time

	once    sync.Once
	bg      *background
	mu      sync.Mutex
	flights map[string]*flight // builds under way, by content key
	cache   map[[sha256.Size]byte]cachedParse
	parses  atomic.Int64 // Properties decoded (not found in the cache), for tests
}

// flight is one build under way; done closes when img and err are set.
type flight struct {
	done chan struct{}
	img  image
	err  error
}

type cachedParse struct {
	p   *parsed
	err error
}

// maxCachedParses bounds the parse cache: Properties come from the network, and a client
// sending ever-different ones must not grow the plugin's memory without end.
const maxCachedParses = 128

func (f *Plugin) init() {
	f.once.Do(func() {
		f.bg = newBackground()
		f.flights = map[string]*flight{}
		f.cache = map[[sha256.Size]byte]cachedParse{}
		if f.Now == nil {
			f.Now = time.Now
		}
		if f.Log == nil {
			f.Log = slog.Default()
		}
	})
}

// parse returns the decoded Properties, from the cache when the same bytes were seen before:
// durations, the console regexp and the userdata templates are compiled once per distinct
// Properties, not on each Prepare or health probe. Errors are cached as well.
func (f *Plugin) parse(raw spi.Any) (*parsed, error) {
	f.init()
	key := sha256.Sum256(raw)
	f.mu.Lock()
	c, ok := f.cache[key]
	f.mu.Unlock()
	if ok {
		return c.p, c.err
	}
	f.parses.Add(1)
	p, err := parse(raw)
	f.mu.Lock()
	if len(f.cache) >= maxCachedParses {
		clear(f.cache)
	}
	f.cache[key] = cachedParse{p, err}
	f.mu.Unlock()
	return p, err
}

// Close stops the plugin's background work: it cancels the builds under way and waits for
// them to return. Prepares waiting for a build then fail; later calls that need a build fail.
func (f *Plugin) Close() error {
	f.init()
	f.bg.Close()
	return nil
}

var _ spi.Flavor = (*Plugin)(nil)

// New returns a flavor keeping builds under root and building with b (nil: the assembler
// with its default cache).
func New(root string, b Builder, log *slog.Logger) (*Plugin, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(root, "builds"), 0o755); err != nil {
		return nil, fmt.Errorf("flavor-moby: root: %w", err)
	}
	if b == nil {
		b = AssemblerBuilder{}
	}
	if log == nil {
		log = slog.Default()
	}
	f := &Plugin{Root: root, Builder: b, Log: log, Now: time.Now}
	f.init()
	return f, nil
}

// Validate checks the Properties: their shape, the spec (parsed and validated, not built),
// the pinned digest, the userdata template and the health check.
func (f *Plugin) Validate(_ context.Context, properties spi.Any, _ spi.Allocation) error {
	p, err := f.parse(properties)
	if err != nil {
		return err
	}
	if len(p.Spec) > 0 {
		d, err := p.checkPinned()
		if err != nil {
			return err
		}
		if p.SpecDigest == "" && p.SpecContent == nil {
			f.Log.Warn("spec given by path without spec_digest: editing the file will not change the group's config hash, so a commit will not roll the group; pin it with `mobykit moby pin`", "spec", p.Spec, "digest", d)
		}
		load := func() (*spec.Moby, error) { return spec.Load(p.Spec...) }
		if p.SpecContent != nil {
			load = func() (*spec.Moby, error) { return loadInline(p.Spec, p.SpecContent) }
		}
		if _, err := load(); err != nil {
			return fmt.Errorf("flavor-moby: %w", err)
		}
	} else {
		m, err := spec.Parse("spec_yaml", []byte(p.SpecYAML))
		if err == nil {
			err = m.Validate()
		}
		if err != nil {
			return fmt.Errorf("flavor-moby: %w", err)
		}
	}
	// Start building now, in the background: the commit's Prepares find the image ready or
	// join the build under way (a failure is logged by the build and reported by Prepare).
	if _, err := f.startBuild(p); err != nil {
		return err
	}
	return nil
}

// image is one build result.
type image struct {
	// Boot is what the instance plugin's "moby" property gets: the prefix for kernel+initrd,
	// else the first output file.
	Boot   string
	Digest string
}

// arch is the architecture the image is built for.
func (p *parsed) arch() string {
	if p.Arch != "" {
		return p.Arch
	}
	return runtime.GOARCH
}

// contentKey identifies a build: format, architecture and spec content.
func (p *parsed) contentKey() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "format=%s\x00arch=%s\x00", p.Format, p.arch())
	if len(p.Spec) > 0 {
		d, err := p.specDigest()
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "files=%s\x00", d)
	} else {
		fmt.Fprintf(h, "yaml=%s\x00", p.SpecYAML)
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

// startBuild returns the build of p's content: the one under way, or a new background job.
// Builds run under the plugin's background context, not the caller's: a Prepare that times
// out on the client side (InfraKit's 15 s) must not waste the build, which the retry then
// finds done; Close cancels them.
func (f *Plugin) startBuild(p *parsed) (*flight, error) {
	f.init()
	key, err := p.contentKey()
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl, ok := f.flights[key]; ok {
		return fl, nil
	}
	fl := &flight{done: make(chan struct{})}
	err = f.bg.Go(func(ctx context.Context) {
		fl.img, fl.err = f.buildOnce(ctx, key, p)
		if fl.err != nil {
			f.Log.Warn("build failed", "key", key, "err", fl.err)
		}
		f.mu.Lock()
		delete(f.flights, key)
		f.mu.Unlock()
		close(fl.done)
	})
	if err != nil {
		return nil, err
	}
	f.flights[key] = fl
	return fl, nil
}

// build returns the image for p, building it at most once per content key: concurrent
// Prepares of a group wait for the same build, later ones find it on disk. waitCtx bounds
// the wait only, not the build.
func (f *Plugin) build(waitCtx context.Context, p *parsed) (image, error) {
	fl, err := f.startBuild(p)
	if err != nil {
		return image{}, err
	}
	select {
	case <-fl.done:
		return fl.img, fl.err
	case <-waitCtx.Done():
		return image{}, fmt.Errorf("flavor-moby: build of %s still running: %w", p.describe(), waitCtx.Err())
	}
}

// buildOnce builds p into Root/builds/key, or finds it there.
func (f *Plugin) buildOnce(ctx context.Context, key string, p *parsed) (image, error) {
	dir := filepath.Join(f.Root, "builds", key)
	var img image
	if vm.ReadJSON(filepath.Join(dir, "image.json"), &img) == nil {
		return img, nil
	}
	tmp, err := os.MkdirTemp(filepath.Join(f.Root, "builds"), "."+key+"-")
	if err != nil {
		return image{}, err
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	outs, err := f.Builder.Build(ctx, BuildRequest{SpecFiles: p.Spec, SpecContent: p.SpecContent, SpecYAML: []byte(p.SpecYAML), Format: p.Format, Dir: tmp, Name: "image", Insecure: p.Insecure, Arch: p.Arch})
	if err != nil {
		return image{}, fmt.Errorf("flavor-moby: build %s: %w", p.describe(), err)
	}
	if len(outs) == 0 {
		return image{}, fmt.Errorf("flavor-moby: build %s produced no output", p.describe())
	}
	digest, err := digestFiles(outs)
	if err != nil {
		return image{}, err
	}
	img = image{Digest: digest}
	if p.Format == "kernel+initrd" || slices.Contains(outs, filepath.Join(tmp, "image-kernel")) {
		// a boot prefix: kernel+initrd, and kernel+squashfs, kernel+erofs, kernel+iso
		// (vm.FindBoot finds their root file system image and loader beside the kernel)
		img.Boot = filepath.Join(dir, "image")
	} else {
		img.Boot = filepath.Join(dir, filepath.Base(outs[0]))
	}
	if err := vm.WriteJSON(filepath.Join(tmp, "image.json"), img); err != nil {
		return image{}, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return image{}, fmt.Errorf("flavor-moby: keep build %s: %w", key, err)
	}
	f.Log.Info("built image", "key", key, "digest", digest, "seconds", time.Since(start).Seconds())
	return img, nil
}

// digestFiles hashes the outputs by name and content, in name order.
func digestFiles(paths []string) (string, error) {
	sorted := append([]string(nil), paths...)
	sort.Strings(sorted)
	h := sha256.New()
	for _, p := range sorted {
		fh, err := os.Open(p)
		if err != nil {
			return "", fmt.Errorf("flavor-moby: digest: %w", err)
		}
		fmt.Fprintf(h, "%s\x00", filepath.Base(p))
		_, err = io.Copy(h, fh)
		fh.Close()
		if err != nil {
			return "", fmt.Errorf("flavor-moby: digest %s: %w", p, err)
		}
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// bootKeys are instance Properties keys that name a boot source; Prepare replaces them with
// "moby".
var bootKeys = []string{"moby", "kernel", "initrd", "iso", "disk"}

// Prepare builds (or reuses) the image, sets the instance Properties' "moby" to it, tags the
// instance with the image digest and the flavor's tags, and renders the userdata into Init.
func (f *Plugin) Prepare(ctx context.Context, properties spi.Any, s spi.Spec, a spi.Allocation, idx spi.Index) (spi.Spec, error) {
	p, err := f.parse(properties)
	if err != nil {
		return s, err
	}
	if _, err := p.checkPinned(); err != nil {
		return s, err
	}
	img, err := f.build(ctx, p)
	if err != nil {
		return s, err
	}
	props := map[string]any{}
	if len(s.Properties) > 0 && string(s.Properties) != "null" {
		if err := json.Unmarshal(s.Properties, &props); err != nil {
			return s, fmt.Errorf("flavor-moby: instance Properties must be a JSON object to point at the image: %w", err)
		}
	}
	for k := range props {
		for _, b := range bootKeys {
			if strings.EqualFold(k, b) {
				delete(props, k)
			}
		}
	}
	props["moby"] = img.Boot
	if p.Arch != "" {
		props["arch"] = p.Arch
	}
	b, err := json.Marshal(props)
	if err != nil {
		return s, err
	}
	out := s
	out.Properties = b
	out.Tags = map[string]string{}
	for k, v := range p.Tags {
		out.Tags[k] = v
	}
	for k, v := range s.Tags { // infrakit.* tags win over the flavor's
		out.Tags[k] = v
	}
	out.Tags[ImageDigestTag] = img.Digest
	if render := p.render; render != nil {
		d := TemplateData{Group: string(idx.Group), Index: -1, Sequence: idx.Sequence, Size: int(a.Size), Tags: out.Tags, ImageDigest: img.Digest}
		if s.LogicalID != nil {
			d.LogicalID = string(*s.LogicalID)
		}
		if len(a.LogicalIDs) > 0 {
			d.Size = len(a.LogicalIDs)
		}
		for i, l := range a.LogicalIDs {
			d.AllPeers = append(d.AllPeers, string(l))
			if string(l) == d.LogicalID {
				d.Index = i
			} else {
				d.Peers = append(d.Peers, string(l))
			}
		}
		init, err := render(d)
		if err != nil {
			return s, err
		}
		if out.Init != "" {
			out.Init += "\n"
		}
		out.Init += init
	}
	return out, nil
}

// Healthy runs the configured check against the instance, using the endpoints its instance
// plugin reports in its Properties ("ports": {"80/tcp": "host:port"}, "address",
// "console", "started"). A failing check is Unknown while the instance is younger than the
// grace period (still booting), Unhealthy after.
func (f *Plugin) Healthy(ctx context.Context, properties spi.Any, inst spi.Description) (spi.Health, error) {
	p, err := f.parse(properties)
	if err != nil {
		return spi.Unknown, err
	}
	h := p.Health
	if h == nil || (h.HTTP == nil && h.TCP == nil && h.Etcd == nil && h.Console == "") {
		return spi.Healthy, nil
	}
	var ip instanceProps
	if len(inst.Properties) > 0 {
		json.Unmarshal(inst.Properties, &ip)
	}
	err = probe(ctx, p, ip)
	if err == nil {
		return spi.Healthy, nil
	}
	if ip.Started.IsZero() || f.Now().Sub(ip.Started) < p.grace {
		f.Log.Debug("not healthy yet", "instance", inst.ID, "err", err)
		return spi.Unknown, nil
	}
	f.Log.Info("unhealthy", "instance", inst.ID, "err", err)
	return spi.Unhealthy, nil
}

type instanceProps struct {
	Ports   map[string]string `json:"ports"`
	Address string            `json:"address"`
	Console string            `json:"console"`
	Started time.Time         `json:"started"`
}

// endpoint finds host:port for a guest TCP port: the published port, else the instance's
// address.
func (ip instanceProps) endpoint(port int) (string, error) {
	if hp, ok := ip.Ports[fmt.Sprintf("%d/tcp", port)]; ok {
		return hp, nil
	}
	if ip.Address != "" {
		host := ip.Address
		if h, _, err := net.ParseCIDR(host); err == nil {
			host = h.String()
		}
		return net.JoinHostPort(host, fmt.Sprint(port)), nil
	}
	return "", fmt.Errorf("instance reports neither a published port %d/tcp nor an address", port)
}

func probe(ctx context.Context, p *parsed, ip instanceProps) error {
	h := p.Health
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	switch {
	case h.HTTP != nil:
		ep, err := ip.endpoint(h.HTTP.Port)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ep+"/"+strings.TrimPrefix(h.HTTP.Path, "/"), nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("GET %s: %s", req.URL, resp.Status)
		}
		if h.HTTP.Expect != "" && !strings.Contains(string(body), h.HTTP.Expect) {
			return fmt.Errorf("GET %s: body lacks %q", req.URL, h.HTTP.Expect)
		}
		return nil
	case h.TCP != nil:
		ep, err := ip.endpoint(h.TCP.Port)
		if err != nil {
			return err
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", ep)
		if err != nil {
			return err
		}
		return c.Close()
	case h.Etcd != nil:
		ep, err := ip.endpoint(h.Etcd.Port)
		if err != nil {
			return err
		}
		return probeEtcd(ctx, ep)
	default:
		if ip.Console == "" {
			return errors.New("instance reports no console log")
		}
		ok, err := consoleMatches(ip.Console, p.console)
		if err != nil || ok {
			return err
		}
		return fmt.Errorf("no console line matches %q yet", h.Console)
	}
}

// maxConsoleLine bounds what a console line costs the probe: a longer line is matched on its
// first maxConsoleLine bytes.
const maxConsoleLine = 64 << 10

// consoleMatches reports whether a line of the console log matches re. The guest writes the
// log, so it is streamed: memory stays bounded by maxConsoleLine however much it wrote.
func consoleMatches(path string, re *regexp.Regexp) (bool, error) {
	fh, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer fh.Close()
	br := bufio.NewReaderSize(fh, maxConsoleLine)
	rest := false // reading the rest of a line longer than the buffer
	for {
		chunk, err := br.ReadSlice('\n')
		if !rest && re.Match(bytes.TrimRight(chunk, "\r\n")) {
			return true, nil
		}
		rest = errors.Is(err, bufio.ErrBufferFull)
		if rest {
			continue
		}
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("console %s: %w", path, err)
		}
	}
}

// Drain has nothing to do: the members of a local cluster hold no work a scheduler must move.
func (f *Plugin) Drain(context.Context, spi.Any, spi.Description) error { return nil }
