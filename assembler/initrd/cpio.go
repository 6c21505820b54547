package initrd

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/mobykit/mobykit/assembler/fstree"
)

// Limit is the largest archive the newc format can describe: file sizes and
// the kernel's unpacker both use 32-bit quantities.
const Limit int64 = 1<<32 - 1

// MaxPath is the longest name or symlink target the kernel's unpacker
// accepts: PATH_MAX (4096) less the terminating NUL. It silently skips an
// entry with a longer name.
const MaxPath = 4095

// ErrTooLarge is returned when an archive would exceed Limit.
var ErrTooLarge = errors.New("initramfs exceeds the 4 GiB newc limit")

// Header describes one archive member.
type Header struct {
	// Name is the path relative to the archive root, without a leading
	// slash ("etc/hosts").
	Name string
	// Mode is the full st_mode: type bits (fstree.TypeDir, ...) |
	// permission bits.
	Mode uint32
	UID  uint32
	GID  uint32
	// NLink is the number of names of a regular file in this archive; 0
	// means 1 (2 for directories).
	NLink uint32
	// Ino is the inode number; 0 asks the writer to assign the next one.
	// Names that share an inode are hard links: give each the same Ino,
	// the content to the first one written and Size 0 to the others.
	Ino uint32
	// Size of the data that follows (a regular file's content or a
	// symlink's target, which the writer takes from Linkname).
	Size int64
	// Linkname is the target of a symlink.
	Linkname string
	// DevMajor and DevMinor are the device numbers of device nodes.
	DevMajor, DevMinor uint32
	// MTime is set by the Reader; the Writer ignores it and writes its own
	// fixed time (WithMTime).
	MTime int64
}

// FileMode converts the header mode to an fs.FileMode.
func (h *Header) FileMode() fs.FileMode {
	m := fs.FileMode(h.Mode & 0o777)
	if h.Mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if h.Mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if h.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch h.Mode & fstree.TypeMask {
	case fstree.TypeDir:
		m |= fs.ModeDir
	case fstree.TypeSymlink:
		m |= fs.ModeSymlink
	case fstree.TypeChar:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case fstree.TypeBlock:
		m |= fs.ModeDevice
	case fstree.TypeFifo:
		m |= fs.ModeNamedPipe
	case fstree.TypeSocket:
		m |= fs.ModeSocket
	}
	return m
}

const (
	magic   = "070701"
	trailer = "TRAILER!!!"
	hdrLen  = 110
)

// Writer writes one newc archive (a segment). It is not safe for
// concurrent use.
type Writer struct {
	w       io.Writer
	mtime   uint32
	nextIno uint32
	off     int64 // bytes written so far
	remain  int64 // bytes of data still expected for the current entry
	limit   int64
	base    int64 // bytes already used by earlier segments of the archive
	closed  bool
	hbuf    []byte
	buf     []byte // copy buffer of ReadFrom
}

// Option configures a Writer.
type Option func(*Writer)

// WithMTime sets the modification time of every entry (seconds since the
// epoch). The default is 0.
func WithMTime(sec int64) Option { return func(w *Writer) { w.mtime = uint32(sec) } }

// WithFirstInode sets the first inode number assigned (default 1).
func WithFirstInode(ino uint32) Option { return func(w *Writer) { w.nextIno = ino } }

// WithLimit overrides Limit (tests use it to exercise the size check
// without writing 4 GiB).
func WithLimit(n int64) Option { return func(w *Writer) { w.limit = n } }

// WithOffset tells the writer that base bytes of the archive were written
// before this segment, so the limit applies to the whole archive.
func WithOffset(base int64) Option { return func(w *Writer) { w.base = base } }

// NewWriter returns a writer of one cpio segment to w.
func NewWriter(w io.Writer, opts ...Option) *Writer {
	cw := &Writer{w: w, nextIno: 1, limit: Limit, hbuf: make([]byte, 0, 512)}
	for _, o := range opts {
		o(cw)
	}
	return cw
}

// Written returns the number of bytes written so far.
func (w *Writer) Written() int64 { return w.off }

func pad4(n int64) int64 { return (4 - n%4) % 4 }

func (w *Writer) write(p []byte) error {
	if w.base+w.off+int64(len(p)) > w.limit {
		return fmt.Errorf("%w (%d bytes so far)", ErrTooLarge, w.base+w.off)
	}
	n, err := w.w.Write(p)
	w.off += int64(n)
	return err
}

var zeros [4]byte

func (w *Writer) finishEntry() error {
	if w.remain != 0 {
		return fmt.Errorf("cpio: %d bytes of the previous entry missing", w.remain)
	}
	return nil
}

// WriteHeader starts a new entry. For a symlink the target is written from
// Linkname; for a regular file exactly Size bytes must follow through Write.
func (w *Writer) WriteHeader(h *Header) error {
	if w.closed {
		return errors.New("cpio: write after close")
	}
	if err := w.finishEntry(); err != nil {
		return err
	}
	name := strings.TrimPrefix(h.Name, "/")
	if name == "" || name == trailer {
		return fmt.Errorf("cpio: invalid entry name %q", h.Name)
	}
	if len(name) > MaxPath {
		return fmt.Errorf("cpio: name %.64q... is %d bytes, longer than the kernel's limit of %d", name, len(name), MaxPath)
	}
	if h.Mode&fstree.TypeMask == fstree.TypeSymlink && len(h.Linkname) > MaxPath {
		return fmt.Errorf("cpio: %s: symlink target is %d bytes, longer than the kernel's limit of %d", name, len(h.Linkname), MaxPath)
	}
	size := h.Size
	var body []byte
	switch h.Mode & fstree.TypeMask {
	case fstree.TypeSymlink:
		body = []byte(h.Linkname)
		size = int64(len(body))
	case fstree.TypeReg:
	default:
		size = 0
	}
	if size > int64(^uint32(0)) {
		return fmt.Errorf("cpio: %s: %w", name, ErrTooLarge)
	}
	ino := h.Ino
	if ino == 0 {
		ino = w.nextIno
		w.nextIno++
	} else if ino >= w.nextIno {
		w.nextIno = ino + 1
	}
	nlink := h.NLink
	if nlink == 0 {
		nlink = 1
		if h.Mode&fstree.TypeMask == fstree.TypeDir {
			nlink = 2
		}
	}
	if err := w.header(name, ino, h.Mode, h.UID, h.GID, nlink, uint32(size), h.DevMajor, h.DevMinor); err != nil {
		return fmt.Errorf("cpio: %s: %w", name, err)
	}
	if body != nil {
		if err := w.write(body); err != nil {
			return fmt.Errorf("cpio: %s: %w", name, err)
		}
		return w.write(zeros[:pad4(size)])
	}
	w.remain = size
	if size == 0 {
		return nil
	}
	return nil
}

func (w *Writer) header(name string, ino, mode, uid, gid, nlink, size, major, minor uint32) error {
	b := w.hbuf[:0]
	b = append(b, magic...)
	for _, v := range [...]uint32{ino, mode, uid, gid, nlink, w.mtime, size, 0, 0, major, minor, uint32(len(name) + 1), 0} {
		b = appendHex8(b, v)
	}
	b = append(b, name...)
	b = append(b, 0)
	b = append(b, zeros[:pad4(int64(len(b)))]...)
	w.hbuf = b
	return w.write(b)
}

func appendHex8(b []byte, v uint32) []byte {
	const hexd = "0123456789abcdef"
	for i := 28; i >= 0; i -= 4 {
		b = append(b, hexd[(v>>uint(i))&0xf])
	}
	return b
}

// Write writes data of the current regular file.
func (w *Writer) Write(p []byte) (int, error) {
	if int64(len(p)) > w.remain {
		return 0, fmt.Errorf("cpio: write of %d bytes exceeds the entry size (%d left)", len(p), w.remain)
	}
	if err := w.write(p); err != nil {
		return 0, err
	}
	w.remain -= int64(len(p))
	if w.remain == 0 {
		// pad now: the total written so far tells how much.
		if err := w.write(zeros[:pad4(w.off)]); err != nil {
			return len(p), err
		}
	}
	return len(p), nil
}

// ReadFrom copies the content of the current regular file from r.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	if w.buf == nil {
		w.buf = make([]byte, 256<<10)
	}
	buf := w.buf
	var total int64
	for w.remain > 0 {
		n := int64(len(buf))
		if n > w.remain {
			n = w.remain
		}
		m, err := io.ReadFull(r, buf[:n])
		if m > 0 {
			if _, werr := w.Write(buf[:m]); werr != nil {
				return total, werr
			}
			total += int64(m)
		}
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return total, fmt.Errorf("cpio: content ended %d bytes early: %w", w.remain, io.ErrUnexpectedEOF)
			}
			return total, err
		}
	}
	return total, nil
}

// Close writes the trailer record. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	if err := w.finishEntry(); err != nil {
		return err
	}
	w.closed = true
	if err := w.header(trailer, 0, 0, 0, 0, 1, 0, 0, 0); err != nil {
		return err
	}
	return nil
}
