package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/mobykit/mobykit/assembler/sbom"
)

func attach(t *testing.T, c *Cache, ref string, img v1.Image, doc string) {
	t.Helper()
	att, err := sbom.Attestation([]byte(doc), "pkg:docker/"+ref, digestOf(t, img))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddAttestation(pushRef(t, ref), digestOf(t, img), att, sbom.MaxSize); err != nil {
		t.Fatal(err)
	}
}

func attestations(t *testing.T, c *Cache) []Entry {
	t.Helper()
	ents, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []Entry
	for _, e := range ents {
		if e.Subject != "" {
			out = append(out, e)
		}
	}
	return out
}

// TestSBOMTravelsWithImage: an image's attestation in the cache is pushed next to it in an
// index (buildkit's annotations, platform unknown/unknown), pulled with it into an empty
// cache, and the SPDX document read back is the one attached; a second push uploads nothing.
func TestSBOMTravelsWithImage(t *testing.T) {
	host := memRegistry(t)
	img := randomImage(t, "amd64", 2)
	c := cacheWith(t, "mobykit/thing:1", img)
	doc := `{"spdxVersion":"SPDX-2.3","name":"mobykit/thing"}`
	attach(t, c, "mobykit/thing:1", img, doc)
	tr := &counting{}
	r := NewResolver(c, WithArch("amd64"), WithTransport(tr))
	if got, err := r.SBOM("mobykit/thing:1", digestOf(t, img), sbom.MaxSize); err != nil || string(got) != doc {
		t.Fatalf("SBOM from the cache: %q, %v", got, err)
	}
	dst := host + "/team/mobykit/thing:1"
	p, err := r.Push(context.Background(), "mobykit/thing:1", dst)
	if err != nil {
		t.Fatal(err)
	}
	if p.SBOMs != 1 || len(p.Images) != 1 || p.Images[0] != digestOf(t, img) || p.Digest == p.Images[0] {
		t.Fatalf("pushed %+v", p)
	}
	desc, err := remote.Get(pushRef(t, dst))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		t.Fatalf("the pushed tag is not an index: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 || !sbom.IsAttestation(im.Manifests[1]) ||
		im.Manifests[1].Annotations[sbom.RefDigestAnnotation] != digestOf(t, img).String() ||
		im.Manifests[1].Platform == nil || im.Manifests[1].Platform.OS != "unknown" {
		t.Fatalf("pushed index %+v", im.Manifests)
	}

	fresh, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fr := NewResolver(fresh, WithArch("amd64"))
	got, err := fr.Resolve(context.Background(), dst)
	if err != nil {
		t.Fatal(err)
	}
	if digestOf(t, got) != digestOf(t, img) {
		t.Fatal("pulled another image")
	}
	if back, err := fr.SBOM(dst, digestOf(t, img), sbom.MaxSize); err != nil || string(back) != doc {
		t.Fatalf("SBOM after the pull: %q, %v", back, err)
	}
	tr.reset()
	if _, err := r.Push(context.Background(), "mobykit/thing:1", dst); err != nil {
		t.Fatal(err)
	}
	if n := tr.uploads(); n != 0 {
		t.Errorf("second push started %d uploads", n)
	}
}

// TestAttestationReplacedAndRemoved: attaching again replaces the SBOM of the same image; an
// image rebuilt under the same reference drops the old image's SBOM; cache rm removes the
// SBOM and its blobs with the image.
func TestAttestationReplacedAndRemoved(t *testing.T) {
	old := randomImage(t, "amd64", 1)
	c := cacheWith(t, "mobykit/thing:latest", old)
	attach(t, c, "mobykit/thing:latest", old, `{"v":1}`)
	attach(t, c, "mobykit/thing:latest", old, `{"v":2}`)
	if a := attestations(t, c); len(a) != 1 || a[0].Subject != digestOf(t, old).String() {
		t.Fatalf("after attaching twice: %+v", a)
	}
	nu := randomImage(t, "amd64", 1)
	if _, err := c.Add(pushRef(t, "mobykit/thing:latest"), nu, v1.Platform{OS: "linux", Architecture: "amd64"}, nil); err != nil {
		t.Fatal(err)
	}
	attach(t, c, "mobykit/thing:latest", nu, `{"v":3}`)
	if a := attestations(t, c); len(a) != 1 || a[0].Subject != digestOf(t, nu).String() {
		t.Fatalf("after a rebuild: %+v", a)
	}
	att, ok := c.Attestation(pushRef(t, "mobykit/thing:latest"), digestOf(t, nu))
	if !ok {
		t.Fatal("no attestation")
	}
	m, err := att.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.Remove("mobykit/thing:latest", nil)
	if err != nil || n != 2 {
		t.Fatalf("remove: %d entries, %v", n, err)
	}
	if a := attestations(t, c); len(a) != 0 {
		t.Errorf("after rm: %+v", a)
	}
	if _, err := os.Stat(c.blobPath(m.Layers[0].Digest)); !os.IsNotExist(err) {
		t.Errorf("the SBOM's blob outlived cache rm: %v", err)
	}
}

// TestRegistrySendingMoreThanDeclaredIsCutOff: a blob is read up to one byte past the size its
// descriptor declares, so a registry cannot fill the disk behind a small descriptor.
func TestRegistrySendingMoreThanDeclaredIsCutOff(t *testing.T) {
	c, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	small := []byte("small")
	sum := sha256.Sum256(small)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	var read int64
	endless := func() (io.ReadCloser, error) {
		return io.NopCloser(&countingReader{r: io.MultiReader(bytes.NewReader(small), io.LimitReader(zeros{}, 8<<20)), n: &read}), nil
	}
	err = c.writeBlob(h, int64(len(small)), endless, nil)
	if err == nil || !strings.Contains(err.Error(), "size differs") {
		t.Fatalf("endless blob: %v", err)
	}
	if read > 64<<10 {
		t.Errorf("read %d bytes of a %d-byte blob", read, len(small))
	}
	if _, err := os.Stat(c.blobPath(h)); !os.IsNotExist(err) {
		t.Errorf("the blob was stored: %v", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

type countingReader struct {
	r io.Reader
	n *int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}
