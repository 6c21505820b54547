package initrd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/mobykit/mobykit/assembler/fstree"
)

// Reader reads a newc archive, or several concatenated uncompressed ones
// (the zero padding between them is skipped). Next returns io.EOF after the
// last trailer.
type Reader struct {
	r      *bufio.Reader
	off    int64
	remain int64 // unread data of current entry
	pad    int64
}

// NewReader returns a reader of the archive in r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 64<<10)} }

func (r *Reader) skip(n int64) error {
	m, err := r.r.Discard(int(n))
	r.off += int64(m)
	return err
}

// Next advances to the next entry, skipping any unread data.
func (r *Reader) Next() (*Header, error) {
	for {
		h, err := r.next()
		if err != nil || h.Name != trailer {
			return h, err
		}
		// An archive ended; look for another one.
	}
}

func (r *Reader) next() (*Header, error) {
	if err := r.skip(r.remain + r.pad); err != nil {
		return nil, fmt.Errorf("cpio: %w", io.ErrUnexpectedEOF)
	}
	r.remain, r.pad = 0, 0
	for {
		// skip padding between concatenated archives
		b, err := r.r.Peek(1)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, io.EOF
			}
			return nil, err
		}
		if b[0] != 0 {
			break
		}
		if err := r.skip(1); err != nil {
			return nil, err
		}
	}
	if r.off%4 != 0 {
		return nil, fmt.Errorf("cpio: misaligned header at offset %d", r.off)
	}
	var hb [hdrLen]byte
	if _, err := io.ReadFull(r.r, hb[:]); err != nil {
		return nil, fmt.Errorf("cpio: header at %d: %w", r.off, io.ErrUnexpectedEOF)
	}
	r.off += hdrLen
	if string(hb[:6]) != magic {
		return nil, fmt.Errorf("cpio: bad magic %q at offset %d", hb[:6], r.off-hdrLen)
	}
	var f [13]uint32
	for i := range f {
		v, err := strconv.ParseUint(string(hb[6+8*i:14+8*i]), 16, 32)
		if err != nil {
			return nil, fmt.Errorf("cpio: bad header field at offset %d: %w", r.off-hdrLen, err)
		}
		f[i] = uint32(v)
	}
	nameLen := int64(f[11])
	if nameLen == 0 || nameLen > 1<<16 {
		return nil, fmt.Errorf("cpio: bad name length %d", nameLen)
	}
	name := make([]byte, nameLen)
	if _, err := io.ReadFull(r.r, name); err != nil {
		return nil, fmt.Errorf("cpio: name: %w", io.ErrUnexpectedEOF)
	}
	r.off += nameLen
	if err := r.skip(pad4(r.off)); err != nil {
		return nil, io.ErrUnexpectedEOF
	}
	h := &Header{
		Name: string(name[:nameLen-1]), Ino: f[0], Mode: f[1], UID: f[2], GID: f[3], NLink: f[4],
		Size: int64(f[6]), DevMajor: f[9], DevMinor: f[10], MTime: int64(f[5]),
	}
	if h.Name == trailer {
		r.pad = pad4(r.off)
		return h, nil
	}
	if h.Mode&fstree.TypeMask == fstree.TypeSymlink {
		if h.Size > MaxPath {
			return nil, fmt.Errorf("cpio: %s: symlink target of %d bytes", h.Name, h.Size)
		}
		t := make([]byte, h.Size)
		if _, err := io.ReadFull(r.r, t); err != nil {
			return nil, io.ErrUnexpectedEOF
		}
		r.off += h.Size
		h.Linkname = string(t)
		r.pad = pad4(r.off)
		return h, nil
	}
	r.remain = h.Size
	r.pad = pad4(r.off + h.Size)
	return h, nil
}

// Read reads the data of the current entry.
func (r *Reader) Read(p []byte) (int, error) {
	if r.remain == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.remain {
		p = p[:r.remain]
	}
	n, err := r.r.Read(p)
	r.remain -= int64(n)
	r.off += int64(n)
	if err == io.EOF && r.remain > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
