package pkgbuild

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/mobykit/mobykit/assembler/image"
)

// Push uploads the cached image ref (ORG/NAME:TAG, as Build returns it in
// Result.Ref) to registry (host[:port][/path]; empty: ref's own registry)
// twice: as REGISTRY/ORG/NAME:TAG and REGISTRY/ORG/NAME:latest. Both name
// the content cached under ref, whatever the cache's own latest is. Blobs
// the registry already holds are not uploaded again, so the second tag
// costs a manifest upload only.
func Push(ctx context.Context, to *image.Resolver, ref, registry string) ([]*image.Pushed, error) {
	pr, err := name.NewTag(ref)
	if err != nil {
		return nil, fmt.Errorf("image %q: want ORG/NAME:TAG: %w", ref, err)
	}
	var out []*image.Pushed
	for _, tag := range []string{pr.TagStr(), "latest"} {
		dst, err := image.Retarget(pr.Context().Tag(tag).String(), registry)
		if err != nil {
			return nil, err
		}
		p, err := to.Push(ctx, ref, dst)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Push pushes the image recipe r builds, which must be in the cache (see
// the package function Push). It computes r's tag as Tag does, so it
// pushes what a build of r here and now would use, never a stale image.
func (b *Builder) Push(ctx context.Context, r *Recipe, to *image.Resolver, registry string) ([]*image.Pushed, error) {
	tag, err := b.Tag(ctx, r)
	if err != nil {
		return nil, err
	}
	ps, err := Push(ctx, to, r.Repo()+":"+tag, registry)
	if err != nil {
		return nil, fmt.Errorf("%w (build it first: mobykit pkg build %s)", err, r.Dir)
	}
	return ps, nil
}
