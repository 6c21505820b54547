package image

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"

	"github.com/mobykit/mobykit/internal/atomicfile"
)

// DefaultMaxUnpacked bounds the uncompressed size of one layer: 4 GiB, the
// most a newc initramfs can hold, so a larger layer could never be used.
// A few kilobytes of gzip can claim far more (a decompression bomb); the
// diff ID does not help, as whoever made the layer computed it.
const DefaultMaxUnpacked int64 = 4 << 30

// ErrLayerTooLarge is wrapped by the error for a layer that uncompresses
// to more than the limit.
var ErrLayerTooLarge = errors.New("layer uncompresses to more than the limit")

// SetMaxUnpacked sets the largest uncompressed layer Unpacked writes or
// returns; n <= 0 means DefaultMaxUnpacked. Set it before using c.
func (c *Cache) SetMaxUnpacked(n int64) { c.maxUnpacked = n }

func (c *Cache) unpackLimit() int64 {
	if c.maxUnpacked <= 0 {
		return DefaultMaxUnpacked
	}
	return c.maxUnpacked
}

// Unpacked returns the path of layer l's uncompressed tar in the cache,
// writing it first if needed. diffID is the layer's diff ID from the image
// config (asking the layer would decompress it to compute it); the file is
// named by it, so images sharing a layer share it, and its content is
// verified against it when written. A layer larger than the limit (see
// SetMaxUnpacked) is refused with ErrLayerTooLarge as soon as the limit
// is passed, and nothing is kept of it.
func (c *Cache) Unpacked(l v1.Layer, diffID v1.Hash) (string, error) {
	p := filepath.Join(c.dir, "unpacked", diffID.Algorithm+"-"+diffID.Hex+".tar")
	limit := c.unpackLimit()
	if st, err := os.Stat(p); err == nil {
		if st.Size() > limit {
			return "", fmt.Errorf("unpack layer %s: %d bytes: %w (%d bytes)", diffID, st.Size(), ErrLayerTooLarge, limit)
		}
		return p, nil
	}
	_, err, _ := c.flights.Do("unpack:"+p, func() (interface{}, error) {
		if _, err := os.Stat(p); err == nil {
			return nil, nil
		}
		rc, err := uncompressed(l)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return nil, atomicfile.Write(p, 0o644, func(w io.Writer) error {
			h := sha256.New()
			n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(rc, limit+1))
			if err != nil {
				return err
			}
			if n > limit {
				return fmt.Errorf("%w (%d bytes)", ErrLayerTooLarge, limit)
			}
			if err := rc.Close(); err != nil {
				return err
			}
			if diffID.Algorithm == "sha256" && hex.EncodeToString(h.Sum(nil)) != diffID.Hex {
				return fmt.Errorf("content does not match diff ID %s", diffID)
			}
			return nil
		})
	})
	if err != nil {
		return "", fmt.Errorf("unpack layer %s: %w", diffID, err)
	}
	return p, nil
}

// uncompressed decompresses a layer with klauspost/compress, about twice as
// fast as the standard library go-containerregistry uses.
func uncompressed(l v1.Layer) (io.ReadCloser, error) {
	mt, err := l.MediaType()
	if err != nil {
		return nil, err
	}
	switch mt {
	case types.OCIUncompressedLayer, types.DockerUncompressedLayer, types.OCIUncompressedRestrictedLayer:
		return l.Compressed()
	case types.DockerLayer, types.OCILayer, types.DockerForeignLayer, types.OCIRestrictedLayer:
	default:
		return l.Uncompressed()
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(rc, 1<<20)
	if magic, _ := br.Peek(2); len(magic) < 2 || magic[0] != 0x1f || magic[1] != 0x8b {
		rc.Close()
		return l.Uncompressed()
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		rc.Close()
		return nil, err
	}
	return &gzipReadCloser{zr: zr, rc: rc}, nil
}

type gzipReadCloser struct {
	zr *gzip.Reader
	rc io.ReadCloser
}

func (g *gzipReadCloser) Read(p []byte) (int, error) { return g.zr.Read(p) }

// Close closes the compressed stream, which verifies its digest.
func (g *gzipReadCloser) Close() error {
	g.zr.Close()
	return g.rc.Close()
}
