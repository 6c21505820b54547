package image

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"golang.org/x/sync/singleflight"

	"github.com/mobykit/mobykit/assembler/sbom"
	"github.com/mobykit/mobykit/internal/atomicfile"
)

// RefAnnotation is the index annotation naming the reference an image was
// stored for (the OCI standard key, as LinuxKit's cache uses it too).
const RefAnnotation = "org.opencontainers.image.ref.name"

// DefaultCacheDir returns $MOBYKIT_CACHE, else ~/.mobykit/cache.
func DefaultCacheDir() string {
	if d := os.Getenv("MOBYKIT_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "mobykit-cache")
	}
	return filepath.Join(home, ".mobykit", "cache")
}

// Cache is a local OCI image layout plus derived data (unpacked layers,
// and whatever else callers keep under Dir).
type Cache struct {
	dir string
	lp  layout.Path

	mu      sync.Mutex // serialises index.json updates
	flights singleflight.Group

	maxUnpacked int64 // see SetMaxUnpacked
}

// OpenCache opens (creating if needed) the cache at dir.
func OpenCache(dir string) (*Cache, error) {
	if dir == "" {
		dir = DefaultCacheDir()
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", dir, err)
	}
	lp, err := layout.FromPath(abs)
	if err != nil {
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return nil, fmt.Errorf("create cache %s: %w", abs, err)
		}
		if lp, err = layout.Write(abs, empty.Index); err != nil {
			return nil, fmt.Errorf("create cache %s: %w", abs, err)
		}
	}
	return &Cache{dir: abs, lp: lp}, nil
}

// Dir is the cache's root directory.
func (c *Cache) Dir() string { return c.dir }

// Entry is one image recorded in the cache.
type Entry struct {
	Ref      string
	Digest   v1.Hash
	Platform string
	Size     int64 // manifest + config + layers, compressed
	// Subject is, for an attestation manifest (an SBOM), the digest of the image it is about.
	Subject string
}

func (c *Cache) index() (*v1.IndexManifest, error) {
	ii, err := c.lp.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", c.dir, err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("cache %s: read index.json: %w", c.dir, err)
	}
	return im, nil
}

func platformString(p *v1.Platform) string {
	if p == nil {
		return ""
	}
	return p.String()
}

func platformMatches(have *v1.Platform, want v1.Platform) bool {
	if have == nil {
		return false
	}
	return have.OS == want.OS && have.Architecture == want.Architecture &&
		(want.Variant == "" || have.Variant == want.Variant)
}

// Lookup returns the cached image for ref and platform if the cache holds
// its manifest, config and every layer blob.
func (c *Cache) Lookup(ref name.Reference, p v1.Platform) (v1.Image, bool) {
	im, err := c.index()
	if err != nil {
		return nil, false
	}
	for _, d := range im.Manifests {
		if d.Annotations[RefAnnotation] != ref.Name() || !platformMatches(d.Platform, p) {
			continue
		}
		img, err := c.lp.Image(d.Digest)
		if err != nil {
			return nil, false
		}
		if !c.complete(img) {
			return nil, false
		}
		return img, true
	}
	return nil, false
}

// platformsOf returns the platforms the cache records ref for, sorted.
func (c *Cache) platformsOf(ref name.Reference) []string {
	im, err := c.index()
	if err != nil {
		return nil
	}
	var out []string
	for _, d := range im.Manifests {
		if d.Annotations[RefAnnotation] == ref.Name() && d.Platform != nil {
			out = append(out, d.Platform.String())
		}
	}
	sort.Strings(out)
	return out
}

func (c *Cache) blobPath(h v1.Hash) string { return filepath.Join(c.dir, "blobs", h.Algorithm, h.Hex) }

func (c *Cache) hasBlob(h v1.Hash, size int64) bool {
	st, err := os.Stat(c.blobPath(h))
	return err == nil && st.Mode().IsRegular() && (size < 0 || st.Size() == size)
}

func (c *Cache) complete(img v1.Image) bool {
	m, err := img.Manifest()
	if err != nil {
		return false
	}
	if !c.hasBlob(m.Config.Digest, m.Config.Size) {
		return false
	}
	for _, l := range m.Layers {
		if !c.hasBlob(l.Digest, l.Size) {
			return false
		}
	}
	return true
}

// writeBlob stores r under h atomically, verifying the digest. A blob
// already present is not written again; concurrent writers of the same
// blob wait for the first one.
func (c *Cache) writeBlob(h v1.Hash, size int64, open func() (io.ReadCloser, error), progress func(int64)) error {
	if c.hasBlob(h, size) {
		if progress != nil && size > 0 {
			progress(size)
		}
		return nil
	}
	_, err, _ := c.flights.Do("blob:"+h.String(), func() (interface{}, error) {
		if c.hasBlob(h, size) {
			return nil, nil
		}
		rc, err := open()
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return nil, atomicfile.Write(c.blobPath(h), 0o644, func(w io.Writer) error {
			hw := sha256.New()
			var r io.Reader = rc
			if size >= 0 {
				// a registry sending more than the descriptor said is cut off here
				r = io.LimitReader(rc, size+1)
			}
			if progress != nil {
				r = &countReader{r: r, f: progress}
			}
			n, err := io.Copy(io.MultiWriter(w, hw), r)
			if err != nil {
				return err
			}
			if size >= 0 && n != size {
				return fmt.Errorf("blob %s: size differs from the descriptor's %d bytes", h, size)
			}
			if h.Algorithm == "sha256" && hex.EncodeToString(hw.Sum(nil)) != h.Hex {
				return fmt.Errorf("blob %s: digest mismatch", h)
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("store blob %s: %w", h, err)
	}
	return nil
}

type countReader struct {
	r io.Reader
	f func(int64)
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.f(int64(n))
	}
	return n, err
}

// Add stores img in the cache under ref for its platform, fetching only
// the blobs the cache lacks. progress, if set, is told of bytes read. The
// index records the image only once every blob is stored.
func (c *Cache) Add(ref name.Reference, img v1.Image, p v1.Platform, progress func(int64)) (v1.Image, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("%s: manifest: %w", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("%s: layers: %w", ref, err)
	}
	errs := make(chan error, len(layers))
	for i, l := range layers {
		go func() {
			d := m.Layers[i]
			errs <- c.writeBlob(d.Digest, d.Size, l.Compressed, progress)
		}()
	}
	var first error
	for range layers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return nil, fmt.Errorf("%s: %w", ref, first)
	}
	return c.addMeta(ref, img, p)
}

// addLazy records img's manifest and config under ref now and returns an
// image whose layer blobs are fetched into the cache the first time one is
// read, so that work on one layer need not wait for every download. A build
// that stops early leaves an incomplete entry, which Lookup does not trust.
func (c *Cache) addLazy(ref name.Reference, img v1.Image, p v1.Platform, progress func(int64)) (v1.Image, error) {
	cached, err := c.addMeta(ref, img, p)
	if err != nil {
		return nil, err
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("%s: layers: %w", ref, err)
	}
	remote := map[v1.Hash]v1.Layer{}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		remote[d] = l
	}
	return &lazyImage{Image: cached, c: c, remote: remote, progress: progress}, nil
}

type lazyImage struct {
	v1.Image
	c        *Cache
	remote   map[v1.Hash]v1.Layer
	progress func(int64)
}

func (li *lazyImage) Layers() ([]v1.Layer, error) {
	ls, err := li.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for i, l := range ls {
		out[i] = &lazyLayer{Layer: l, img: li}
	}
	return out, nil
}

// lazyLayer is a cached layer whose blob is fetched on first read.
type lazyLayer struct {
	v1.Layer
	img *lazyImage
}

func (l *lazyLayer) fetch() error {
	d, err := l.Layer.Digest()
	if err != nil {
		return err
	}
	size, err := l.Layer.Size()
	if err != nil {
		return err
	}
	r, ok := l.img.remote[d]
	if !ok {
		return fmt.Errorf("layer %s: not in the remote image", d)
	}
	return l.img.c.writeBlob(d, size, r.Compressed, l.img.progress)
}

func (l *lazyLayer) Compressed() (io.ReadCloser, error) {
	if err := l.fetch(); err != nil {
		return nil, err
	}
	return l.Layer.Compressed()
}

func (l *lazyLayer) Uncompressed() (io.ReadCloser, error) {
	if err := l.fetch(); err != nil {
		return nil, err
	}
	return l.Layer.Uncompressed()
}

// addMeta stores the config and manifest blobs and the index entry.
func (c *Cache) addMeta(ref name.Reference, img v1.Image, p v1.Platform) (v1.Image, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("%s: manifest: %w", ref, err)
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("%s: config: %w", ref, err)
	}
	if err := c.writeBlob(m.Config.Digest, m.Config.Size, bytesOpener(rawCfg), nil); err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	rawMf, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("%s: manifest: %w", ref, err)
	}
	dig, err := img.Digest()
	if err != nil {
		return nil, err
	}
	if err := c.writeBlob(dig, int64(len(rawMf)), bytesOpener(rawMf), nil); err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, err
	}
	desc := v1.Descriptor{
		MediaType: mt, Size: int64(len(rawMf)), Digest: dig,
		Annotations: map[string]string{RefAnnotation: ref.Name()},
		Platform:    &p,
	}
	if err := c.setIndex(ref.Name(), p, &desc); err != nil {
		return nil, err
	}
	return c.lp.Image(dig)
}

func bytesOpener(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(string(b))), nil }
}

// setIndex replaces the index entry for (ref, platform) with desc, or
// removes it when desc is nil.
func (c *Cache) setIndex(ref string, p v1.Platform, desc *v1.Descriptor) error {
	return c.updateIndex(func(ms []v1.Descriptor) []v1.Descriptor {
		out := ms[:0]
		for _, d := range ms {
			if d.Annotations[RefAnnotation] == ref && platformMatches(d.Platform, p) {
				continue
			}
			out = append(out, d)
		}
		if desc != nil {
			out = append(out, *desc)
		}
		return out
	})
}

// updateIndex replaces the index's entries with what edit makes of them (a copy), under the
// cache's lock, sorted by reference, platform and attested digest.
func (c *Cache) updateIndex(edit func([]v1.Descriptor) []v1.Descriptor) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	unlock, err := c.lockFile()
	if err != nil {
		return err
	}
	defer unlock()
	im, err := c.index()
	if err != nil {
		return err
	}
	out := im.DeepCopy()
	out.Manifests = edit(out.Manifests)
	sort.SliceStable(out.Manifests, func(i, j int) bool {
		a, b := out.Manifests[i], out.Manifests[j]
		if a.Annotations[RefAnnotation] != b.Annotations[RefAnnotation] {
			return a.Annotations[RefAnnotation] < b.Annotations[RefAnnotation]
		}
		if platformString(a.Platform) != platformString(b.Platform) {
			return platformString(a.Platform) < platformString(b.Platform)
		}
		return a.Annotations[sbom.RefDigestAnnotation] < b.Annotations[sbom.RefDigestAnnotation]
	})
	raw, err := jsonIndent(out)
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(c.dir, "index.json"), 0o644, func(w io.Writer) error {
		_, err := w.Write(raw)
		return err
	})
}

// List returns the cached images sorted by reference.
func (c *Cache) List() ([]Entry, error) {
	im, err := c.index()
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, d := range im.Manifests {
		e := Entry{Ref: d.Annotations[RefAnnotation], Digest: d.Digest, Platform: platformString(d.Platform), Size: d.Size}
		if sbom.IsAttestation(d) {
			e.Subject = d.Annotations[sbom.RefDigestAnnotation]
		}
		if img, err := c.lp.Image(d.Digest); err == nil {
			if m, err := img.Manifest(); err == nil {
				e.Size += m.Config.Size
				for _, l := range m.Layers {
					e.Size += l.Size
				}
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// Image returns the cached image with manifest digest d.
func (c *Cache) Image(d v1.Hash) (v1.Image, error) { return c.lp.Image(d) }

// Clean removes everything from the cache (images, blobs and derived
// data) and leaves an empty layout.
func (c *Cache) Clean() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	unlock, err := c.lockFile()
	if err != nil {
		return err
	}
	defer unlock()
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("clean cache %s: %w", c.dir, err)
	}
	var errs []error
	for _, e := range ents {
		if e.Name() != ".index.lock" {
			errs = append(errs, os.RemoveAll(filepath.Join(c.dir, e.Name())))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clean cache %s: %w", c.dir, err)
	}
	lp, err := layout.Write(c.dir, empty.Index)
	if err != nil {
		return fmt.Errorf("clean cache %s: %w", c.dir, err)
	}
	c.lp = lp
	return nil
}

// lockFile takes an exclusive lock shared with other processes using the
// same cache, so concurrent builds never lose each other's index entries.
func (c *Cache) lockFile() (func(), error) {
	f, err := os.OpenFile(filepath.Join(c.dir, ".index.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", c.dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("cache %s: lock: %w", c.dir, err)
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}
