package assembler

import (
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/mobykit/mobykit/assembler/fstree"
	"github.com/mobykit/mobykit/assembler/initrd"
	"github.com/mobykit/mobykit/assembler/sbom"
	"github.com/mobykit/mobykit/assembler/spec"
)

// DefaultSBOMOutput is where the merged SBOM goes in the image, as linuxkit build puts it.
const DefaultSBOMOutput = "sbom.spdx.json"

// sbomSegment merges the SBOMs attached to the images of the spec (see package sbom) into one
// SPDX document at o.SBOMOutput: one package per image, in the order the spec first uses them,
// holding what the image's own SBOM lists. An image without an SBOM is listed as such. The
// document is the same bytes for the same images wherever they were pulled from: no
// reference, clock or random ID goes into it, its creation time is the build's time stamp.
func (b *builder) sbomSegment() (*segment, error) {
	out := b.o.SBOMOutput
	if out == "" {
		out = DefaultSBOMOutput
	}
	out = strings.TrimPrefix(path.Clean("/"+out), "/")
	if out == "" || out == "." {
		return nil, fmt.Errorf("SBOM output %q: not a file path", b.o.SBOMOutput)
	}
	users := b.imageUsers()
	var m sbom.Merger
	var missing []string
	for _, ref := range b.specOrder() {
		r := b.imgs[ref]
		if r == nil {
			continue
		}
		where := users[ref]
		d, err := v1.NewHash(r.digest)
		if err != nil {
			return nil, fmt.Errorf("%s: image %s: %w", where, ref, err)
		}
		doc, err := b.res.SBOM(ref, d, sbom.MaxSize)
		if err != nil {
			return nil, fmt.Errorf("%s: %w (--no-sbom builds without the SBOM)", where, err)
		}
		if doc == nil {
			missing = append(missing, ref)
		}
		if err := m.Add(sbom.Image{Where: where, Digest: r.digest, SPDX: doc}); err != nil {
			return nil, fmt.Errorf("image %s: %w (--no-sbom builds without the SBOM)", ref, err)
		}
	}
	if len(missing) > 0 {
		slog.Info("images without an SBOM, listed as such in "+out, "images", missing)
	}
	data, err := m.Merge("sbom", time.Unix(b.mtime, 0))
	if err != nil {
		return nil, fmt.Errorf("merge SBOMs: %w (--no-sbom builds without the SBOM)", err)
	}
	return memSegment("SBOM", b.mtime, b.limit, func(cw *initrd.Writer) error {
		if err := cw.WriteHeader(&initrd.Header{Name: out, Mode: fstree.TypeReg | 0o644, Size: int64(len(data))}); err != nil {
			return err
		}
		_, err := cw.Write(data)
		return err
	})
}

// specOrder lists the spec's image references in the order the spec first uses them.
func (b *builder) specOrder() []string {
	var out []string
	seen := map[string]bool{}
	add := func(r string) {
		if r != "" && !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	m := b.m
	add(m.Kernel.Image)
	for _, r := range m.Init {
		add(r)
	}
	for _, l := range [][]*spec.Image{m.Onboot, m.Onshutdown, m.Services} {
		for _, i := range l {
			add(i.Image)
		}
	}
	for _, v := range m.Volumes {
		add(v.Image)
	}
	return out
}
