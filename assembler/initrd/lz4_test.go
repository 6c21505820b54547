package initrd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"

	"github.com/pierrec/lz4/v4"

	"github.com/mobykit/mobykit/assembler/fstree"
)

// lz4Chunk is the most one legacy chunk decompresses to: the kernel's
// LZ4_DEFAULT_UNCOMPRESSED_CHUNK_SIZE.
const lz4Chunk = 8 << 20

// kernelUnlz4 decodes b as the kernel's lib/decompress_unlz4.c does an
// initramfs (Linux 6.1): one legacy stream to the end of the buffer, a magic
// between chunks skipped, each chunk at most lz4Chunk once decompressed. It
// is stricter than the kernel where the kernel would accept what mobykit
// must never write: a zero chunk size (the kernel ends the stream there and
// looks for padding), bytes left over after the last chunk. It returns the
// data and the number of chunks.
func kernelUnlz4(b []byte) ([]byte, int, error) {
	if len(b) < 4 || binary.LittleEndian.Uint32(b) != 0x184C2102 {
		return nil, 0, errors.New("invalid header")
	}
	b = b[4:]
	var out []byte
	chunks := 0
	dst := make([]byte, lz4Chunk)
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, chunks, fmt.Errorf("%d stray bytes at the end", len(b))
		}
		size := binary.LittleEndian.Uint32(b)
		b = b[4:]
		if size == 0x184C2102 {
			continue
		}
		if size == 0 {
			return nil, chunks, errors.New("zero chunk size")
		}
		if int64(size) > int64(lz4.CompressBlockBound(lz4Chunk)) {
			return nil, chunks, fmt.Errorf("chunk %d: length %#x is longer than allowed", chunks, size)
		}
		if int64(size) > int64(len(b)) {
			return nil, chunks, fmt.Errorf("chunk %d: data corrupted (%d bytes, %d left)", chunks, size, len(b))
		}
		n, err := lz4.UncompressBlock(b[:size], dst)
		if err != nil {
			return nil, chunks, fmt.Errorf("chunk %d: decoding failed: %w", chunks, err)
		}
		out = append(out, dst[:n]...)
		b = b[size:]
		chunks++
	}
	return out, chunks, nil
}

func compressBytes(t *testing.T, c Compression, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := Compress(&buf, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// bigArchive is a cpio archive of more than two legacy chunks: 9 MiB of
// random bytes, so that a whole chunk is incompressible, then 6 MiB of text.
func bigArchive(t *testing.T) []byte {
	rnd := make([]byte, 9<<20)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(rnd)
	var text strings.Builder
	for i := 0; text.Len() < 6<<20; i++ {
		fmt.Fprintf(&text, "line %d of a compressible file\n", i)
	}
	return writeArchive(t, []ent{
		{h: Header{Name: "random", Mode: fstree.TypeReg | 0o644}, data: string(rnd)},
		{h: Header{Name: "text", Mode: fstree.TypeReg | 0o644}, data: text.String()},
	})
}

// TestLz4Segments compresses segments on their own and concatenates them as
// the assembler does, and reads the result back with Decompress, with a
// decoder following the kernel's rules, and with the lz4 tool if present.
func TestLz4Segments(t *testing.T) {
	big := bigArchive(t)
	small := writeArchive(t, sample)
	segs := [][]byte{small, big, nil, small}
	var cat, want []byte
	for _, s := range segs {
		cat = append(cat, compressBytes(t, Lz4, s)...)
		want = append(want, s...)
	}

	if again := compressBytes(t, Lz4, big); !bytes.Equal(again, compressBytes(t, Lz4, big)) {
		t.Fatal("lz4 compression is not deterministic")
	}

	got, chunks, err := kernelUnlz4(cat)
	if err != nil {
		t.Fatalf("kernel rules: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("kernel rules: concatenated segments did not decompress to the concatenated archives")
	}
	// small, big in two 8 MiB chunks and one more, nothing for the empty
	// segment (its magic only), small.
	if wantChunks := 2 + (len(big)+lz4Chunk-1)/lz4Chunk; chunks != wantChunks {
		t.Errorf("%d chunks; want %d", chunks, wantChunks)
	}

	r, err := Decompress(bytes.NewReader(cat))
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(r)
	if err != nil {
		t.Fatalf("Decompress: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Decompress: %d bytes differ from the %d concatenated", len(got), len(want))
	}

	var names []string
	cr := NewReader(bytes.NewReader(got))
	for {
		h, err := cr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	if len(names) != 2*len(sample)+2 {
		t.Errorf("read back %d entries: %q", len(names), names)
	}

	tool, err := exec.LookPath("lz4")
	if err != nil {
		t.Log("lz4 not installed (apt-get install lz4); not checked with it")
		return
	}
	cmd := exec.Command(tool, "-d", "-c")
	cmd.Stdin = bytes.NewReader(cat)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("lz4 -d: %v\n%s", err, stderr.Bytes())
	}
	if !bytes.Equal(out, want) {
		t.Fatalf("lz4 -d: %d bytes differ from the %d concatenated", len(out), len(want))
	}
}

// TestLz4Empty: a segment with no data is the magic alone, which the kernel
// skips wherever it stands.
func TestLz4Empty(t *testing.T) {
	z := compressBytes(t, Lz4, nil)
	if !bytes.Equal(z, lz4LegacyMagic) {
		t.Fatalf("empty segment = %x; want the magic alone", z)
	}
	got, _, err := kernelUnlz4(append(append([]byte{}, z...), z...))
	if err != nil || len(got) != 0 {
		t.Fatalf("two empty segments: %d bytes, %v", len(got), err)
	}
}
