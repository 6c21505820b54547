package image

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/mobykit/mobykit/assembler/sbom"
)

// maxAttestationManifest bounds the manifest of an attestation read from a registry.
const maxAttestationManifest = 1 << 20

// AddAttestation stores att, the attestation manifest of the cached image with manifest digest
// subject, under ref: as an index entry with platform unknown/unknown and buildkit's
// annotations, next to the image's own entry. Its layers larger than maxLayer are not stored
// (reading them later fails with sbom.ErrTooLarge from their declared size). An attestation
// stored earlier for the same subject is replaced, and those of ref whose image entry is gone
// are dropped.
func (c *Cache) AddAttestation(ref name.Reference, subject v1.Hash, att v1.Image, maxLayer int64) error {
	m, err := att.Manifest()
	if err != nil {
		return fmt.Errorf("%s: attestation: %w", ref, err)
	}
	for _, d := range m.Layers {
		if d.Size > maxLayer {
			slog.Warn("attestation layer not stored: too large", "image", ref.Name(), "layer", d.Digest, "bytes", d.Size, "limit", maxLayer)
			continue
		}
		l, err := att.LayerByDigest(d.Digest)
		if err != nil {
			return fmt.Errorf("%s: attestation: %w", ref, err)
		}
		if err := c.writeBlob(d.Digest, d.Size, l.Compressed, nil); err != nil {
			return fmt.Errorf("%s: attestation: %w", ref, err)
		}
	}
	rawCfg, err := att.RawConfigFile()
	if err != nil {
		return fmt.Errorf("%s: attestation: %w", ref, err)
	}
	if err := c.writeBlob(m.Config.Digest, m.Config.Size, bytesOpener(rawCfg), nil); err != nil {
		return fmt.Errorf("%s: attestation: %w", ref, err)
	}
	rawMf, err := att.RawManifest()
	if err != nil {
		return fmt.Errorf("%s: attestation: %w", ref, err)
	}
	desc, err := sbom.Descriptor(att, subject)
	if err != nil {
		return fmt.Errorf("%s: attestation: %w", ref, err)
	}
	if err := c.writeBlob(desc.Digest, desc.Size, bytesOpener(rawMf), nil); err != nil {
		return fmt.Errorf("%s: attestation: %w", ref, err)
	}
	desc.Annotations[RefAnnotation] = ref.Name()
	return c.updateIndex(func(ms []v1.Descriptor) []v1.Descriptor {
		images := map[string]bool{subject.String(): true}
		for _, d := range ms {
			if d.Annotations[RefAnnotation] == ref.Name() && !sbom.IsAttestation(d) {
				images[d.Digest.String()] = true
			}
		}
		out := ms[:0]
		for _, d := range ms {
			if d.Annotations[RefAnnotation] == ref.Name() && sbom.IsAttestation(d) {
				s := d.Annotations[sbom.RefDigestAnnotation]
				if s == subject.String() || !images[s] {
					continue
				}
			}
			out = append(out, d)
		}
		return append(out, desc)
	})
}

// Attestation returns the attestation manifest cached under ref for the image with manifest
// digest subject. Its layers may be absent (see AddAttestation).
func (c *Cache) Attestation(ref name.Reference, subject v1.Hash) (v1.Image, bool) {
	im, err := c.index()
	if err != nil {
		return nil, false
	}
	for _, d := range im.Manifests {
		if d.Annotations[RefAnnotation] == ref.Name() && sbom.IsAttestation(d) && d.Annotations[sbom.RefDigestAnnotation] == subject.String() {
			img, err := c.lp.Image(d.Digest)
			if err != nil {
				return nil, false
			}
			return img, true
		}
	}
	return nil, false
}

// SBOM returns the SPDX document attached to the image ref resolved to (manifest digest
// subject), as the cache holds it: nil without error when the image has none. A document
// over max bytes, or one that is not an in-toto SPDX statement, is an error naming ref.
func (r *Resolver) SBOM(ref string, subject v1.Hash, max int64) ([]byte, error) {
	pr, err := r.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	att, ok := r.cache.Attestation(pr, subject)
	if !ok {
		return nil, nil
	}
	doc, err := sbom.Read(att, max)
	if errors.Is(err, sbom.ErrNone) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: SBOM: %w", ref, err)
	}
	return doc, nil
}

// pullAttestation stores the attestation manifest idx holds for the image with manifest
// digest subject, if any. It never fails the pull: an image is usable without its SBOM, and a
// build that wants it says it lacks one.
func (r *Resolver) pullAttestation(ctx context.Context, ref name.Reference, idx v1.ImageIndex, im *v1.IndexManifest, subject v1.Hash) {
	for _, d := range im.Manifests {
		if !sbom.IsAttestation(d) || d.Annotations[sbom.RefDigestAnnotation] != subject.String() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return
		}
		if d.Size > maxAttestationManifest || d.Size < 0 {
			slog.Warn("SBOM attestation not pulled: manifest too large", "image", ref.Name(), "bytes", d.Size)
			return
		}
		att, err := idx.Image(d.Digest)
		if err == nil {
			err = r.cache.AddAttestation(ref, subject, att, sbom.MaxSize)
		}
		if err != nil {
			slog.Warn("SBOM attestation not pulled", "image", ref.Name(), "err", err)
		}
		return
	}
}

// attestationsFor returns the cached attestations of ref for the given image digests.
func (c *Cache) attestationsFor(ref name.Reference, imgs []v1.Image) ([]v1.Image, []v1.Hash) {
	var atts []v1.Image
	var subjects []v1.Hash
	for _, img := range imgs {
		d, err := img.Digest()
		if err != nil {
			continue
		}
		if att, ok := c.Attestation(ref, d); ok && c.complete(att) {
			atts = append(atts, att)
			subjects = append(subjects, d)
		}
	}
	return atts, subjects
}
