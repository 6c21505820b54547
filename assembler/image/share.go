package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/mobykit/mobykit/assembler/sbom"
	"github.com/mobykit/mobykit/internal/atomicfile"
)

// ErrNotCached is returned when an image to push is not (completely) in the cache.
var ErrNotCached = errors.New("not in the cache")

// Retarget returns ref moved to registry, a host[:port] optionally followed
// by a path ("registry.example.com/team"): the repository path and tag (or
// digest) of ref are kept, so mobykit/kernel:latest becomes
// registry.example.com/team/mobykit/kernel:latest. An empty registry
// returns ref unchanged.
func Retarget(ref, registry string) (string, error) {
	pr, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("image %q: %w", ref, err)
	}
	if registry == "" {
		return pr.Name(), nil
	}
	registry = strings.TrimSuffix(registry, "/")
	if strings.Contains(registry, "://") {
		return "", fmt.Errorf("registry %q: give host[:port][/path], not a URL", registry)
	}
	sep := ":"
	id := pr.Identifier()
	if _, ok := pr.(name.Digest); ok {
		sep = "@"
	}
	out := registry + "/" + pr.Context().RepositoryStr() + sep + id
	if _, err := name.ParseReference(out); err != nil {
		return "", fmt.Errorf("image %s on registry %q: %w", ref, registry, err)
	}
	return out, nil
}

// Pushed describes one image pushed to a registry.
type Pushed struct {
	// Ref is the destination reference.
	Ref string
	// Digest is the digest of what the tag now names: the image manifest
	// when the cache holds one platform, else the index of all of them.
	Digest v1.Hash
	// Platforms are the platforms pushed.
	Platforms []string
	// Images are the image manifest digests pushed, in the order of Platforms.
	Images []v1.Hash
	// SBOMs counts the attestation manifests (SBOMs) pushed with them.
	SBOMs int
}

// cachedPlatforms returns every complete cached image recorded for ref,
// with its platform, in index order (sorted by platform).
func (c *Cache) cachedPlatforms(ref name.Reference) ([]v1.Image, []v1.Platform, error) {
	im, err := c.index()
	if err != nil {
		return nil, nil, err
	}
	var imgs []v1.Image
	var plats []v1.Platform
	for _, d := range im.Manifests {
		if d.Annotations[RefAnnotation] != ref.Name() || d.Platform == nil || sbom.IsAttestation(d) {
			continue
		}
		img, err := c.lp.Image(d.Digest)
		if err != nil || !c.complete(img) {
			return nil, nil, fmt.Errorf("image %s (%s): %w: its blobs are incomplete (pull or build it again)", ref, d.Platform, ErrNotCached)
		}
		imgs = append(imgs, img)
		plats = append(plats, *d.Platform)
	}
	return imgs, plats, nil
}

// Push uploads the cached image src to the registry of dst (a full
// reference), with the resolver's credentials (the docker config and its
// credential helpers) and transport. When the cache holds src for one
// platform its manifest is pushed as is, so dst has the same digest; for
// several platforms an OCI index of them is pushed. Blobs the registry
// already holds in dst's repository are not uploaded again.
func (r *Resolver) Push(ctx context.Context, src, dst string) (*Pushed, error) {
	sr, err := r.ParseReference(src)
	if err != nil {
		return nil, err
	}
	dr, err := r.ParseReference(dst)
	if err != nil {
		return nil, err
	}
	imgs, plats, err := r.cache.cachedPlatforms(sr)
	if err != nil {
		return nil, err
	}
	if len(imgs) == 0 {
		return nil, fmt.Errorf("image %s: %w %s", src, ErrNotCached, r.cache.Dir())
	}
	where := fmt.Sprintf("push image %s to registry %s", sr.Context().RepositoryStr(), dr.Context().RegistryStr())
	opts := r.pushOptions(ctx)
	out := &Pushed{Ref: dr.Name()}
	for _, p := range plats {
		out.Platforms = append(out.Platforms, p.String())
	}
	for _, img := range imgs {
		d, err := img.Digest()
		if err != nil {
			return nil, err
		}
		out.Images = append(out.Images, d)
	}
	atts, subjects := r.cache.attestationsFor(sr, imgs)
	out.SBOMs = len(atts)
	if len(imgs) == 1 && len(atts) == 0 {
		if err := remote.Write(dr, imgs[0], opts...); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		out.Digest = out.Images[0]
	} else {
		// An index of the platforms, with each image's attestation manifest (its SBOM) next
		// to it, as buildkit pushes them.
		var adds []mutate.IndexAddendum
		for i, img := range imgs {
			p := plats[i]
			adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
		}
		for i, att := range atts {
			desc, err := sbom.Descriptor(att, subjects[i])
			if err != nil {
				return nil, err
			}
			adds = append(adds, mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{Platform: desc.Platform, Annotations: desc.Annotations}})
		}
		idx := mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex)
		if err := remote.WriteIndex(dr, idx, opts...); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if out.Digest, err = idx.Digest(); err != nil {
			return nil, err
		}
	}
	slog.Debug("pushed image", "image", sr.Context().RepositoryStr(), "registry", dr.Context().RegistryStr(), "digest", out.Digest)
	return out, nil
}

func (r *Resolver) pushOptions(ctx context.Context) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(r.keychain)}
	if r.rt != nil {
		opts = append(opts, remote.WithTransport(r.rt))
	}
	return opts
}

// Pull fetches ref for the resolver's platform from its registry into the
// cache, even when the cache already holds it, and returns the image.
func (r *Resolver) Pull(ctx context.Context, ref string) (v1.Image, error) {
	pr, err := r.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	return r.pullImage(ctx, pr, false)
}

// Remove deletes the cache's entries for ref (for platform p only, when p
// is not nil), then the blobs and unpacked layers that only they used. It
// returns how many entries it removed; none is an error naming ref. Do not
// run it while a build uses the same cache: a build may be about to reuse
// a blob it deletes.
func (c *Cache) Remove(ref string, p *v1.Platform) (int, error) {
	pr, err := name.ParseReference(ref)
	if err != nil {
		return 0, fmt.Errorf("image %q: %w", ref, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	unlock, err := c.lockFile()
	if err != nil {
		return 0, err
	}
	defer unlock()
	im, err := c.index()
	if err != nil {
		return 0, err
	}
	out := im.DeepCopy()
	out.Manifests = out.Manifests[:0]
	var gone []v1.Descriptor
	goneImages := map[string]bool{}
	for _, d := range im.Manifests {
		if d.Annotations[RefAnnotation] == pr.Name() && !sbom.IsAttestation(d) && (p == nil || platformMatches(d.Platform, *p)) {
			goneImages[d.Digest.String()] = true
		}
	}
	for _, d := range im.Manifests {
		if d.Annotations[RefAnnotation] == pr.Name() && (p == nil && sbom.IsAttestation(d) || goneImages[d.Digest.String()] ||
			sbom.IsAttestation(d) && goneImages[d.Annotations[sbom.RefDigestAnnotation]]) {
			gone = append(gone, d)
			continue
		}
		out.Manifests = append(out.Manifests, d)
	}
	if len(gone) == 0 {
		return 0, fmt.Errorf("image %s: %w %s", ref, ErrNotCached, c.dir)
	}
	// Read what both sides use before index.json changes: the layout
	// finds images through it.
	keep, keepDiff := c.references(out.Manifests)
	drop, dropDiff := c.references(gone)
	raw, err := jsonIndent(out)
	if err != nil {
		return 0, err
	}
	if err := atomicfile.Write(filepath.Join(c.dir, "index.json"), 0o644, func(w io.Writer) error {
		_, err := w.Write(raw)
		return err
	}); err != nil {
		return 0, fmt.Errorf("cache %s: %w", c.dir, err)
	}
	var errs []error
	for h := range drop {
		if !keep[h] {
			if err := os.Remove(c.blobPath(h)); err != nil && !os.IsNotExist(err) {
				errs = append(errs, err)
			}
		}
	}
	for h := range dropDiff {
		if !keepDiff[h] {
			p := filepath.Join(c.dir, "unpacked", h.Algorithm+"-"+h.Hex+".tar")
			if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return len(gone), fmt.Errorf("remove image %s from cache %s: %w", ref, c.dir, err)
	}
	return len(gone), nil
}

// references returns the blobs (manifests, configs, layers) and layer diff
// IDs the images of descs use, as far as the cache holds them.
func (c *Cache) references(descs []v1.Descriptor) (blobs, diffIDs map[v1.Hash]bool) {
	blobs, diffIDs = map[v1.Hash]bool{}, map[v1.Hash]bool{}
	for _, d := range descs {
		blobs[d.Digest] = true
		img, err := c.lp.Image(d.Digest)
		if err != nil {
			continue
		}
		if m, err := img.Manifest(); err == nil {
			blobs[m.Config.Digest] = true
			for _, l := range m.Layers {
				blobs[l.Digest] = true
			}
		}
		if cf, err := img.ConfigFile(); err == nil {
			for _, h := range cf.RootFS.DiffIDs {
				diffIDs[h] = true
			}
		}
	}
	return blobs, diffIDs
}
