package image

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func jsonIndent(v any) ([]byte, error) { return json.MarshalIndent(v, "", "  ") }

// Resolver turns references into images, from the cache or a registry.
type Resolver struct {
	cache    *Cache
	platform v1.Platform
	insecure map[string]bool
	keychain authn.Keychain
	rt       http.RoundTripper
	pull     bool
	progress io.Writer

	mu    sync.Mutex
	total atomic.Int64
	done  atomic.Int64
	last  time.Time
}

// Option configures a Resolver.
type Option func(*Resolver)

// WithArch selects the platform linux/ARCH (default: the host's); ARCH may
// name a variant ("arm/v7").
func WithArch(arch string) Option {
	return func(r *Resolver) {
		if arch != "" {
			a, variant, _ := strings.Cut(arch, "/")
			r.platform = v1.Platform{OS: "linux", Architecture: a, Variant: variant}
		}
	}
}

// WithInsecure names registries (host[:port]) spoken to over plain HTTP.
func WithInsecure(hosts ...string) Option {
	return func(r *Resolver) {
		for _, h := range hosts {
			r.insecure[h] = true
		}
	}
}

// WithKeychain replaces the docker config keychain.
func WithKeychain(k authn.Keychain) Option { return func(r *Resolver) { r.keychain = k } }

// WithTransport sets the HTTP transport (tests use httptest servers).
func WithTransport(t http.RoundTripper) Option { return func(r *Resolver) { r.rt = t } }

// WithPull asks the registry again even when the cache holds the image.
func WithPull(pull bool) Option { return func(r *Resolver) { r.pull = pull } }

// WithProgress shows download progress on w (a terminal).
func WithProgress(w io.Writer) Option { return func(r *Resolver) { r.progress = w } }

// NewResolver returns a resolver backed by cache.
func NewResolver(cache *Cache, opts ...Option) *Resolver {
	r := &Resolver{
		cache:    cache,
		platform: v1.Platform{OS: "linux", Architecture: runtime.GOARCH},
		insecure: map[string]bool{},
		keychain: authn.DefaultKeychain,
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Platform is the platform images are resolved for.
func (r *Resolver) Platform() v1.Platform { return r.platform }

// Cache returns the cache.
func (r *Resolver) Cache() *Cache { return r.cache }

// ParseReference parses ref, marking its registry insecure if it was
// named so.
func (r *Resolver) ParseReference(ref string) (name.Reference, error) {
	pr, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", ref, err)
	}
	if r.insecure[pr.Context().RegistryStr()] {
		pr, err = name.ParseReference(ref, name.Insecure)
		if err != nil {
			return nil, fmt.Errorf("image %q: %w", ref, err)
		}
	}
	return pr, nil
}

// Resolve returns the image for ref for the resolver's platform: from the
// cache when it holds it completely (and pull was not asked), else pulled
// into the cache first.
func (r *Resolver) Resolve(ctx context.Context, ref string) (v1.Image, error) {
	return r.resolve(ctx, ref, false)
}

// ResolveLazy is Resolve, except that an image not in the cache is
// returned once its manifest and config are stored: each layer blob is
// fetched into the cache when first read (Compressed, Uncompressed or
// Cache.Unpacked), once even when read concurrently.
func (r *Resolver) ResolveLazy(ctx context.Context, ref string) (v1.Image, error) {
	return r.resolve(ctx, ref, true)
}

func (r *Resolver) resolve(ctx context.Context, ref string, lazy bool) (v1.Image, error) {
	pr, err := r.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	if !r.pull {
		if img, ok := r.cache.Lookup(pr, r.platform); ok {
			slog.Debug("image from cache", "image", ref)
			return img, nil
		}
	}
	key := fmt.Sprintf("ref:%s@%s lazy=%v", pr.Name(), r.platform, lazy)
	v, err, _ := r.cache.flights.Do(key, func() (interface{}, error) {
		return r.pullImage(ctx, pr, lazy)
	})
	if err != nil {
		if others := r.cache.platformsOf(pr); len(others) > 0 {
			return nil, fmt.Errorf("image %s has no %s variant: the cache holds it for %s only, and %w (for mobykit's images: mobykit pkg build --platforms %s,%s)",
				ref, r.platform, strings.Join(others, ", "), err, strings.Join(others, ","), r.platform)
		}
		return nil, err
	}
	return v.(v1.Image), nil
}

func (r *Resolver) remoteOptions(ctx context.Context) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(r.keychain), remote.WithPlatform(r.platform)}
	if r.rt != nil {
		opts = append(opts, remote.WithTransport(r.rt))
	}
	return opts
}

func (r *Resolver) pullImage(ctx context.Context, ref name.Reference, lazy bool) (v1.Image, error) {
	slog.Debug("pulling image", "image", ref.Name(), "platform", r.platform.String())
	desc, err := remote.Get(ref, r.remoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	var img v1.Image
	var attest func()
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, fmt.Errorf("pull %s: %w", ref, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("pull %s: %w", ref, err)
		}
		var found *v1.Descriptor
		for i := range im.Manifests {
			if platformMatches(im.Manifests[i].Platform, r.platform) {
				found = &im.Manifests[i]
				break
			}
		}
		if found == nil {
			return nil, fmt.Errorf("pull %s: no image for platform %s", ref, r.platform)
		}
		if img, err = idx.Image(found.Digest); err != nil {
			return nil, fmt.Errorf("pull %s: %w", ref, err)
		}
		attest = func() { r.pullAttestation(ctx, ref, idx, im, found.Digest) }
	} else {
		if img, err = desc.Image(); err != nil {
			return nil, fmt.Errorf("pull %s: %w", ref, err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("pull %s: config: %w", ref, err)
		}
		if cf.Architecture != "" && cf.Architecture != r.platform.Architecture {
			return nil, fmt.Errorf("pull %s: image is for %s/%s, not %s", ref, cf.OS, cf.Architecture, r.platform)
		}
	}
	var progress func(int64)
	if r.progress != nil {
		if m, err := img.Manifest(); err == nil {
			for _, l := range m.Layers {
				if !r.cache.hasBlob(l.Digest, l.Size) {
					r.total.Add(l.Size)
				}
			}
		}
		progress = r.report
	}
	add := r.cache.Add
	if lazy {
		add = r.cache.addLazy
	}
	out, err := add(ref, img, r.platform, progress)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	if attest != nil {
		attest()
	}
	return out, nil
}

func (r *Resolver) report(n int64) {
	done := r.done.Add(n)
	r.mu.Lock()
	defer r.mu.Unlock()
	total := r.total.Load()
	if time.Since(r.last) < 100*time.Millisecond && done < total {
		return
	}
	r.last = time.Now()
	fmt.Fprintf(r.progress, "\rpulling: %6.1f / %6.1f MB", float64(done)/1e6, float64(total)/1e6)
	if done >= total {
		fmt.Fprintln(r.progress)
	}
}

// IsLoopback reports whether a registry host is on the loopback network.
func IsLoopback(host string) bool {
	h := host
	if i := strings.LastIndex(h, ":"); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	return h == "localhost" || strings.HasPrefix(h, "127.") || h == "[::1]" || h == "::1"
}
