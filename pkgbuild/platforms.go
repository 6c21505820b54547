package pkgbuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// multiVersion is bumped when the way a multi-platform tag is derived changes.
const multiVersion = "pkgbuild-multi/1"

// PlatformResult is one platform's image of a multi-platform build.
type PlatformResult struct {
	// Platform is "linux/ARCH".
	Platform string
	// Ref is ORG/NAME:HASH of this platform alone (what a single-platform build tags).
	Ref string
	// Digest is the platform's image manifest digest.
	Digest v1.Hash
	// Cached reports that the cache already held the image.
	Cached bool
}

// ParsePlatforms turns "linux/amd64,linux/arm64" (or a list of such) into sorted, distinct
// GOARCH names. Only linux platforms of architectures with a Debian port are accepted.
func ParsePlatforms(specs ...string) ([]string, error) {
	seen := map[string]bool{}
	var arches []string
	for _, spec := range specs {
		for _, p := range strings.Split(spec, ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			os, arch, ok := strings.Cut(p, "/")
			if !ok || os != "linux" || arch == "" || strings.Contains(arch, "/") {
				return nil, fmt.Errorf("platform %q: want linux/ARCH (linux/amd64, linux/arm64)", p)
			}
			if _, ok := debArch[arch]; !ok {
				return nil, fmt.Errorf("platform %q: no Debian architecture for %s", p, arch)
			}
			if !seen[arch] {
				seen[arch] = true
				arches = append(arches, arch)
			}
		}
	}
	if len(arches) == 0 {
		return nil, fmt.Errorf("platforms %q: none given", strings.Join(specs, ","))
	}
	sort.Strings(arches)
	return arches, nil
}

// multi reports whether b builds several platforms at once.
func (b *Builder) multi() bool { return len(b.Arches) > 1 }

// forArch returns a copy of b that builds arch alone.
func (b *Builder) forArch(arch string) *Builder {
	c := *b
	c.Arches = nil
	c.Arch = arch
	return &c
}

// multiTag derives the tag of a multi-platform image from the platforms' own tags, so that it
// changes when any platform's inputs change and a single-platform build can be reused.
func multiTag(arches, tags []string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", multiVersion)
	for i, a := range arches {
		fmt.Fprintf(h, "%s %s\n", a, tags[i])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// archesFor returns the architectures of b that r builds for (see Recipe.Platforms).
func (b *Builder) archesFor(r *Recipe) ([]string, error) {
	var out []string
	for _, a := range b.Arches {
		if r.BuildsFor(a) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("image %s: built only for %s (the recipe's platforms), none of %s", r.Name, strings.Join(r.Platforms, ", "), strings.Join(b.Arches, ", "))
	}
	return out, nil
}

// resolveAll resolves r for every architecture it is built for, concurrently (each asks apt
// and go list).
func (b *Builder) resolveAll(ctx context.Context, r *Recipe) ([]string, []*resolved, error) {
	arches, err := b.archesFor(r)
	if err != nil {
		return nil, nil, err
	}
	var names []string
	for _, d := range r.Debian {
		names = append(names, d.Package)
	}
	pre := resolveDebsAll(ctx, arches, names)
	res := make([]*resolved, len(arches))
	errs := make([]error, len(arches))
	var wg sync.WaitGroup
	for i, a := range arches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ab := b.forArch(a)
			ab.pre = pre
			res[i], errs[i] = ab.resolve(ctx, r)
			if errs[i] != nil {
				errs[i] = fmt.Errorf("linux/%s: %w", a, errs[i])
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, nil, err
		}
	}
	return arches, res, nil
}

func (b *Builder) tagAll(ctx context.Context, r *Recipe) (string, error) {
	arches, res, err := b.resolveAll(ctx, r)
	if err != nil {
		return "", err
	}
	tags := make([]string, len(res))
	for i, x := range res {
		tags[i] = x.tag
	}
	return multiTag(arches, tags), nil
}

// buildAll builds r for every architecture of b, concurrently, and records each platform's
// image under three references: its own single-platform tag (so that a later single-platform
// build finds it), the multi-platform tag and latest. The cache then holds, under the
// multi-platform tag, one image per platform: what `pkg push` uploads as one OCI index.
func (b *Builder) buildAll(ctx context.Context, r *Recipe) (*Result, error) {
	start := time.Now()
	arches, res, err := b.resolveAll(ctx, r)
	if err != nil {
		return nil, err
	}
	if len(arches) < len(b.Arches) {
		b.log().Info("image built for some platforms only (recipe platforms)", "image", r.Repo(), "platforms", strings.Join(arches, ","))
	}
	tags := make([]string, len(res))
	for i, x := range res {
		tags[i] = x.tag
	}
	tag := multiTag(arches, tags)
	ref, err := b.ref(r.Repo(), tag)
	if err != nil {
		return nil, err
	}
	latest, err := b.ref(r.Repo(), "latest")
	if err != nil {
		return nil, err
	}
	imgs := make([]v1.Image, len(arches))
	plats := make([]PlatformResult, len(arches))
	errs := make([]error, len(arches))
	var wg sync.WaitGroup
	for i, a := range arches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ab := b.forArch(a)
			p := ab.platform()
			plats[i] = PlatformResult{Platform: p.String(), Ref: r.Repo() + ":" + tags[i]}
			own, err := b.ref(r.Repo(), tags[i])
			if err != nil {
				errs[i] = err
				return
			}
			img, ok := b.Cache.Lookup(own, p)
			if ok && !b.Force {
				plats[i].Cached = true
			} else {
				if img, err = ab.buildImage(ctx, r, res[i]); err != nil {
					errs[i] = fmt.Errorf("linux/%s: %w", a, err)
					return
				}
				if img, err = b.Cache.Add(own, img, p, nil); err != nil {
					errs[i] = fmt.Errorf("image %s (%s): store in cache: %w", plats[i].Ref, p, err)
					return
				}
			}
			imgs[i] = img
			if plats[i].Digest, err = img.Digest(); err != nil {
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	out := &Result{Ref: r.Repo() + ":" + tag, Latest: r.Repo() + ":latest", Cached: true, Platforms: plats}
	var adds []mutate.IndexAddendum
	for i, img := range imgs {
		p := b.forArch(arches[i]).platform()
		for _, to := range []string{out.Ref, out.Latest} {
			nr := ref
			if to == out.Latest {
				nr = latest
			}
			if _, err := b.Cache.Add(nr, img, p, nil); err != nil {
				return nil, fmt.Errorf("image %s (%s): tag %s: %w", plats[i].Ref, p, to, err)
			}
		}
		out.Cached = out.Cached && plats[i].Cached
		if ls, err := img.Layers(); err == nil {
			for _, l := range ls {
				if s, err := l.Size(); err == nil {
					out.Size += s
				}
			}
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	// the same index, byte for byte, as `pkg push` uploads for the multi-platform tag
	if out.Digest, err = mutate.AppendManifests(empty.Index, adds...).Digest(); err != nil {
		return nil, fmt.Errorf("image %s: index: %w", out.Ref, err)
	}
	b.log().Info("multi-platform image ready", "ref", out.Ref, "index", out.Digest, "platforms", len(plats), "cached", out.Cached, "took", time.Since(start).Round(time.Millisecond))
	return out, nil
}

// preResolved maps an architecture (Debian's name) and a package to what apt would download.
type preResolved map[string]map[string]debInfo

// lookup returns the packages of arch (GOARCH) in order, or nil when one is not known.
func (p preResolved) lookup(arch string, pkgs []string) ([]debInfo, error) {
	m := p[debArch[arch]]
	if m == nil || len(pkgs) == 0 {
		return nil, nil
	}
	out := make([]debInfo, len(pkgs))
	for i, n := range pkgs {
		d, ok := m[n]
		if !ok {
			return nil, nil
		}
		out[i] = d
	}
	return out, nil
}

// resolveDebsAll asks apt in one call what `apt-get download PKG:ARCH` would fetch for every
// architecture: each apt call spends most of its ~1.5 s of CPU loading its package lists, the
// bulk of a multi-platform build's extra time with warm caches. When the call fails (a package
// is Architecture: all, which apt names PKG:all only for a foreign architecture, or is missing)
// it returns nil and each architecture resolves its packages on its own (resolveDebs).
func resolveDebsAll(ctx context.Context, arches, pkgs []string) preResolved {
	if len(pkgs) == 0 || len(arches) < 2 {
		return nil
	}
	args := []string{"download", "--print-uris"}
	want := map[string]bool{}
	for _, a := range arches {
		da, ok := debArch[a]
		if !ok {
			return nil
		}
		want[da] = true
		for _, p := range pkgs {
			args = append(args, p+":"+da)
		}
	}
	out, err := exec.CommandContext(ctx, "apt-get", args...).Output()
	if err != nil {
		return nil
	}
	pre := preResolved{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || !strings.HasPrefix(f[3], "SHA256:") || strings.ContainsAny(f[1], "/\\") || strings.HasPrefix(f[1], ".") {
			continue
		}
		// NAME_VERSION_ARCH.deb
		parts := strings.Split(strings.TrimSuffix(f[1], ".deb"), "_")
		if len(parts) != 3 || !want[parts[2]] {
			continue
		}
		if pre[parts[2]] == nil {
			pre[parts[2]] = map[string]debInfo{}
		}
		pre[parts[2]][parts[0]] = debInfo{Package: parts[0], Arch: parts[2], Filename: f[1], SHA256: strings.TrimPrefix(f[3], "SHA256:")}
	}
	return pre
}
