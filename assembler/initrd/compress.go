package initrd

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	gzip "github.com/klauspost/pgzip"
)

// Compression names a compressor for segments.
type Compression string

const (
	// Gzip is the default: parallel gzip at the default level.
	Gzip Compression = "gzip"
	// Zstd is faster to write and to boot; the kernel needs CONFIG_RD_ZSTD.
	Zstd Compression = "zstd"
	// None writes plain cpio.
	None Compression = "none"
)

// ParseCompression checks a user-given compression name ("" means gzip).
func ParseCompression(s string) (Compression, error) {
	switch Compression(s) {
	case "", Gzip:
		return Gzip, nil
	case Zstd, None:
		return Compression(s), nil
	}
	return "", fmt.Errorf("unknown compression %q (want gzip, zstd or none)", s)
}

// pgzip block size and count are fixed so the output never depends on the
// machine: the same input always compresses to the same bytes.
const (
	gzipBlock  = 1 << 20
	gzipBlocks = 4
)

// Compress returns a writer that compresses into w; closing it flushes the
// compressed stream but does not close w.
func Compress(w io.Writer, c Compression) (io.WriteCloser, error) {
	switch c {
	case "", Gzip:
		zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
		if err != nil {
			return nil, err
		}
		if err := zw.SetConcurrency(gzipBlock, gzipBlocks); err != nil {
			return nil, err
		}
		return zw, nil
	case Zstd:
		// The fastest level: zstd is asked for speed, and still beats gzip on
		// size. One goroutine per stream: segments are compressed in parallel
		// already, and concurrent blocks cost ~100 MB of buffers each.
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	case None:
		return nopCloser{w}, nil
	}
	return nil, fmt.Errorf("unknown compression %q", c)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Decompress returns a reader of the uncompressed data of r, detecting
// gzip, zstd or plain cpio by magic. Concatenated members of the same kind
// are read as one stream.
func Decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magicb, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magicb, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		return zr, nil
	case bytes.Equal(magicb, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, err
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}
