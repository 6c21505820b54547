package format

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A unified kernel image (UKI) is systemd's EFI stub with the kernel, the initramfs and the
// command line appended as PE sections (.linux, .initrd, .cmdline): firmware runs it as any EFI
// application, and the stub hands the kernel its initramfs and command line. ukify and objcopy
// build one; here the sections are appended in Go, so the result depends only on the inputs and
// the payloads are streamed, not held in memory.

// ukiSection is one section appended to the stub.
type ukiSection struct {
	name string
	size int64
	data []byte                        // in memory, or
	open func() (io.ReadCloser, error) // streamed
}

// uki is a stub with sections laid out after its own.
type uki struct {
	head     []byte // the stub with its headers patched, padded to the first new section
	sections []ukiSection
	size     int64 // total bytes
}

// PE header offsets (PE/COFF specification).
const (
	peSectionHeader = 40
	scnInitData     = 0x00000040
	scnMemRead      = 0x40000000
)

// newUKI lays out the stub with the sections appended: their file data after the stub's bytes
// (aligned to its FileAlignment), their virtual addresses after its image (aligned to 4 KiB).
func newUKI(stub []byte, sections []ukiSection) (*uki, error) {
	le := binary.LittleEndian
	bad := func(what string) error { return fmt.Errorf("EFI stub: %s", what) }
	if len(stub) < 0x40 || string(stub[:2]) != "MZ" {
		return nil, bad("not a PE image (no MZ header)")
	}
	pe := int(le.Uint32(stub[0x3c:]))
	if pe < 0 || pe+24 > len(stub) || string(stub[pe:pe+4]) != "PE\x00\x00" {
		return nil, bad("not a PE image (no PE signature)")
	}
	coff := pe + 4
	nsec := int(le.Uint16(stub[coff+2:]))
	optSize := int(le.Uint16(stub[coff+16:]))
	opt := coff + 20
	if opt+optSize > len(stub) || optSize < 64 || le.Uint16(stub[opt:]) != 0x20b {
		return nil, bad("not a PE32+ image")
	}
	secAlign, fileAlign := int64(le.Uint32(stub[opt+32:])), int64(le.Uint32(stub[opt+36:]))
	headers := int(le.Uint32(stub[opt+60:]))
	if secAlign == 0 || fileAlign == 0 || secAlign&(secAlign-1) != 0 || fileAlign&(fileAlign-1) != 0 {
		return nil, bad("bad section or file alignment")
	}
	table := opt + optSize
	end := table + nsec*peSectionHeader
	if end > len(stub) || headers > len(stub) {
		return nil, bad("section table beyond the file")
	}
	var vend int64
	for i := 0; i < nsec; i++ {
		s := stub[table+i*peSectionHeader:]
		name := string(trimNUL(s[:8]))
		for _, n := range sections {
			if name == n.name {
				return nil, bad("already has a " + name + " section")
			}
		}
		vend = max(vend, int64(le.Uint32(s[12:]))+int64(le.Uint32(s[8:])))
	}
	if end+len(sections)*peSectionHeader > headers {
		return nil, bad(fmt.Sprintf("no room in its headers for %d more sections", len(sections)))
	}
	head := append([]byte(nil), stub...)
	off := alignUp(int64(len(stub)), fileAlign)
	va := alignUp(vend, max(secAlign, 4096))
	var initData uint64 = uint64(le.Uint32(head[opt+8:]))
	for i, s := range sections {
		if len(s.name) > 8 {
			return nil, bad("section name " + s.name + " is longer than 8 bytes")
		}
		raw := alignUp(s.size, fileAlign)
		if off+raw > 1<<32-1 || va+s.size > 1<<32-1 {
			return nil, fmt.Errorf("unified kernel image: %d bytes of %s make it larger than PE allows (4 GiB)", s.size, s.name)
		}
		h := head[end+i*peSectionHeader:]
		clear(h[:peSectionHeader])
		copy(h, s.name)
		le.PutUint32(h[8:], uint32(s.size))
		le.PutUint32(h[12:], uint32(va))
		le.PutUint32(h[16:], uint32(raw))
		le.PutUint32(h[20:], uint32(off))
		le.PutUint32(h[36:], scnInitData|scnMemRead)
		initData += uint64(raw)
		off += raw
		va = alignUp(va+s.size, max(secAlign, 4096))
	}
	le.PutUint16(head[coff+2:], uint16(nsec+len(sections)))
	le.PutUint32(head[opt+8:], uint32(min(initData, 1<<32-1)))
	le.PutUint32(head[opt+56:], uint32(va)) // SizeOfImage
	le.PutUint32(head[opt+64:], 0)          // CheckSum: not checked by firmware, stale once patched
	head = append(head, make([]byte, alignUp(int64(len(stub)), fileAlign)-int64(len(stub)))...)
	return &uki{head: head, sections: sections, size: off}, nil
}

// write streams the image: the patched stub, then each section padded to the file alignment.
func (u *uki) write(w io.Writer) error {
	if _, err := w.Write(u.head); err != nil {
		return err
	}
	written := int64(len(u.head))
	for i, s := range u.sections {
		if s.open == nil {
			if _, err := w.Write(s.data); err != nil {
				return err
			}
		} else {
			r, err := s.open()
			if err != nil {
				return err
			}
			n, err := io.Copy(w, io.LimitReader(r, s.size))
			r.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			if n != s.size {
				return fmt.Errorf("%s: %d bytes, want %d (changed while writing?)", s.name, n, s.size)
			}
		}
		next := u.size
		if i+1 < len(u.sections) {
			next = int64(binary.LittleEndian.Uint32(u.sectionHeader(i + 1)[20:]))
		}
		written += s.size
		if err := writeZeroBytes(w, next-written); err != nil {
			return err
		}
		written = next
	}
	return nil
}

func (u *uki) sectionHeader(i int) []byte {
	le := binary.LittleEndian
	pe := int(le.Uint32(u.head[0x3c:]))
	opt := pe + 24
	nsec := int(le.Uint16(u.head[pe+6:]))
	table := opt + int(le.Uint16(u.head[pe+20:]))
	first := nsec - len(u.sections)
	return u.head[table+(first+i)*peSectionHeader:]
}

func writeZeroBytes(w io.Writer, n int64) error {
	if n < 0 {
		return errors.New("layout overlap")
	}
	_, err := io.CopyN(w, zeroReader{}, n)
	return err
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func alignUp(n, a int64) int64 { return (n + a - 1) / a * a }

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}
