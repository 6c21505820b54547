package initrd

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	gzip "github.com/klauspost/pgzip"
	"github.com/pierrec/lz4/v4"
)

// Compression names a compressor for segments.
type Compression string

const (
	// Gzip is the default: parallel gzip at the default level.
	Gzip Compression = "gzip"
	// Zstd is faster to write and to boot; the kernel needs CONFIG_RD_ZSTD.
	Zstd Compression = "zstd"
	// Lz4 is the fastest for the kernel to unpack, a little larger than
	// gzip; the kernel needs CONFIG_RD_LZ4. Segments are written in LZ4's
	// legacy format, the only one the kernel reads for an initramfs.
	Lz4 Compression = "lz4"
	// None writes plain cpio.
	None Compression = "none"
)

// ParseCompression checks a user-given compression name ("" means gzip).
func ParseCompression(s string) (Compression, error) {
	switch Compression(s) {
	case "", Gzip:
		return Gzip, nil
	case Zstd, Lz4, None:
		return Compression(s), nil
	}
	return "", fmt.Errorf("unknown compression %q (want gzip, zstd, lz4 or none)", s)
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
	case Lz4:
		// The legacy format: magic, then chunks of a little-endian compressed
		// size and one LZ4 block of at most 8 MiB of input, and no end mark,
		// so concatenated segments are one valid stream (the kernel's unlz4
		// reads to the end of the initramfs and skips a magic between
		// chunks). One goroutine: segments are compressed in parallel
		// already.
		zw := lz4.NewWriter(w)
		if err := zw.Apply(lz4.LegacyOption(true), lz4.CompressionLevelOption(lz4Level), lz4.ConcurrencyOption(1)); err != nil {
			return nil, err
		}
		return zw, nil
	case None:
		return nopCloser{w}, nil
	}
	return nil, fmt.Errorf("unknown compression %q", c)
}

// lz4Level is the LZ4 high-compression level of Lz4 segments. On the
// 24.2 MB cpio of examples/hello.yml, pierrec/lz4's Level1 gives 12.13 MB in
// 0.79 s and Level9 12.11 MB in 2.32 s (Fast: 13.76 MB, 0.13 s), and
// all three inflate in the same time (LZ4 decoding barely depends on the
// level), so the lowest high-compression level it is.
const lz4Level = lz4.Level1

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// lz4LegacyMagic starts an LZ4 legacy stream (0x184C2102, little-endian).
var lz4LegacyMagic = []byte{0x02, 0x21, 0x4c, 0x18}

// Decompress returns a reader of the uncompressed data of r, detecting
// gzip, zstd, lz4 (legacy format) or plain cpio by magic. Concatenated
// members of the same kind are read as one stream.
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
	case bytes.Equal(magicb, lz4LegacyMagic):
		return io.NopCloser(lz4.NewReader(br)), nil
	}
	return io.NopCloser(br), nil
}
