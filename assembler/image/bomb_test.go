package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestLayerBombRefused: a gzip layer of a few KiB that inflates to 8 MiB
// is refused once it passes the limit, and nothing of it stays in the
// cache.
func TestLayerBombRefused(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Mode: 0o644, Size: 8 << 20})
	tw.Write(make([]byte, 8<<20))
	tw.Close()
	raw := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
	if err != nil {
		t.Fatal(err)
	}
	if size, _ := l.Size(); size > 64<<10 {
		t.Fatalf("compressed layer of %d bytes is no bomb", size)
	}
	diffID, _ := l.DiffID()
	cache, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cache.SetMaxUnpacked(1 << 20)
	_, err = cache.Unpacked(l, diffID)
	if !errors.Is(err, ErrLayerTooLarge) || !bytes.Contains([]byte(err.Error()), []byte(diffID.String())) {
		t.Fatalf("want ErrLayerTooLarge naming %s, got %v", diffID, err)
	}
	left, _ := filepath.Glob(filepath.Join(cache.Dir(), "unpacked", "*"))
	if len(left) != 0 {
		t.Fatalf("left in the cache: %v", left)
	}
	// Under the default limit it unpacks; a later, smaller limit refuses
	// the cached copy too.
	cache.SetMaxUnpacked(0)
	p, err := cache.Unpacked(l, diffID)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(p); err != nil || st.Size() != int64(len(raw)) {
		t.Fatalf("unpacked %v %v", st, err)
	}
	cache.SetMaxUnpacked(1 << 20)
	if _, err := cache.Unpacked(l, diffID); !errors.Is(err, ErrLayerTooLarge) {
		t.Fatalf("cached oversized layer: %v", err)
	}
}
