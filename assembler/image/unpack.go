package image

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Unpacked returns the path of layer l's uncompressed tar in the cache,
// writing it first if needed. The file is named by the layer's diff ID, so
// images sharing a layer share it.
func (c *Cache) Unpacked(l v1.Layer) (string, error) {
	diffID, err := l.DiffID()
	if err != nil {
		return "", fmt.Errorf("layer diff id: %w", err)
	}
	p := filepath.Join(c.dir, "unpacked", diffID.Algorithm+"-"+diffID.Hex+".tar")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	_, err, _ = c.flights.Do("unpack:"+p, func() (interface{}, error) {
		if _, err := os.Stat(p); err == nil {
			return nil, nil
		}
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return nil, atomicWrite(p, func(w io.Writer) error {
			_, err := io.Copy(w, rc)
			if err != nil {
				return err
			}
			// Uncompressed verifies the diff ID when fully read and closed.
			return rc.Close()
		})
	})
	if err != nil {
		return "", fmt.Errorf("unpack layer %s: %w", diffID, err)
	}
	return p, nil
}
