package format

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf16"
)

// A GPT disk with one partition, the EFI system partition, written front to back: protective
// MBR, primary GPT header and entries, the partition from 1 MiB on, zeros, and the backup
// entries and header in the last 33 sectors. go-diskfs writes GPT too, but to a random-access
// file; the layout here is a few hundred bytes of tables, so it is written directly and
// streamed, with the GUIDs derived from the content.

const (
	gptEntries    = 128
	gptEntrySize  = 128
	gptTableBytes = gptEntries * gptEntrySize // 32 sectors
	mib           = 1 << 20
)

// espTypeGUID is C12A7328-F81F-11D2-BA4B-00A0C93EC93B in GPT's mixed-endian encoding.
var espTypeGUID = guidBytes(0xC12A7328, 0xF81F, 0x11D2, [8]byte{0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B})

func guidBytes(a uint32, b, c uint16, d [8]byte) [16]byte {
	var g [16]byte
	binary.LittleEndian.PutUint32(g[0:], a)
	binary.LittleEndian.PutUint16(g[4:], b)
	binary.LittleEndian.PutUint16(g[6:], c)
	copy(g[8:], d[:])
	return g
}

// derivedGUID makes a version 4 variant 1 GUID of the content id and a purpose.
func derivedGUID(id [16]byte, purpose byte) [16]byte {
	g := id
	g[0] ^= purpose
	g[7] = g[7]&0x0f | 0x40 // version 4 (the high nibble of the third field, little-endian)
	g[8] = g[8]&0x3f | 0x80
	return g
}

// gptDisk is a GPT disk holding an EFI system partition.
type gptDisk struct {
	size int64
	head []byte // sectors 0 to the partition's start
	esp  *fatVolume
	tail []byte // backup entries and header: the last 33 sectors
}

// newGPTDisk lays out a disk of size bytes (0: just what it needs) with esp as its only
// partition.
func newGPTDisk(esp *fatVolume, id [16]byte, size int64) (*gptDisk, error) {
	espBytes := alignUp(esp.size, mib)
	need := mib + espBytes + mib
	switch {
	case size == 0:
		size = need
	case size < need:
		return nil, fmt.Errorf("--size %d MiB is too small: the image needs %d bytes (--size %dM)", size>>20, need, need>>20)
	case size%mib != 0:
		return nil, fmt.Errorf("--size of %d bytes is not a whole number of MiB", size)
	}
	le := binary.LittleEndian
	sectors := size / 512
	last := sectors - 1
	entries := make([]byte, gptTableBytes)
	e := entries[:gptEntrySize]
	copy(e[0:], espTypeGUID[:])
	uniq := derivedGUID(id, 1)
	copy(e[16:], uniq[:])
	le.PutUint64(e[32:], mib/512)
	le.PutUint64(e[40:], uint64(mib/512+espBytes/512-1))
	for i, c := range utf16.Encode([]rune("EFI System Partition")) {
		le.PutUint16(e[56+2*i:], c)
	}
	entriesCRC := crc32.ChecksumIEEE(entries)
	diskGUID := derivedGUID(id, 2)
	header := func(my, alt, table int64) []byte {
		h := make([]byte, 512)
		copy(h, "EFI PART")
		le.PutUint32(h[8:], 0x00010000)
		le.PutUint32(h[12:], 92)
		le.PutUint64(h[24:], uint64(my))
		le.PutUint64(h[32:], uint64(alt))
		le.PutUint64(h[40:], 34)
		le.PutUint64(h[48:], uint64(last-33))
		copy(h[56:], diskGUID[:])
		le.PutUint64(h[72:], uint64(table))
		le.PutUint32(h[80:], gptEntries)
		le.PutUint32(h[84:], gptEntrySize)
		le.PutUint32(h[88:], entriesCRC)
		le.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
		return h
	}
	mbr := make([]byte, 512)
	p := mbr[446:462]
	p[1], p[2], p[3] = 0, 2, 0 // CHS of sector 1
	p[4] = 0xEE
	p[5], p[6], p[7] = 0xFF, 0xFF, 0xFF
	le.PutUint32(p[8:], 1)
	le.PutUint32(p[12:], uint32(min(sectors-1, 1<<32-1)))
	mbr[510], mbr[511] = 0x55, 0xAA
	var head bytes.Buffer
	head.Write(mbr)
	head.Write(header(1, last, 2))
	head.Write(entries)
	head.Write(make([]byte, mib-head.Len()))
	tail := append(append([]byte(nil), entries...), header(last, 1, last-32)...)
	return &gptDisk{size: size, head: head.Bytes(), esp: esp, tail: tail}, nil
}

func (d *gptDisk) writeRaw(w io.Writer) error {
	if _, err := w.Write(d.head); err != nil {
		return err
	}
	if err := d.esp.write(w); err != nil {
		return err
	}
	if err := padZeros(w, d.size-int64(len(d.head))-d.esp.used-int64(len(d.tail))); err != nil {
		return err
	}
	_, err := w.Write(d.tail)
	return err
}

// extents are the disk's non-zero byte ranges: the head with the partition's used part, and
// the tail.
func (d *gptDisk) extents() []diskExtent {
	return []diskExtent{
		{off: 0, size: int64(len(d.head)) + d.esp.used, write: func(w io.Writer) error {
			if _, err := w.Write(d.head); err != nil {
				return err
			}
			return d.esp.write(w)
		}},
		{off: d.size - int64(len(d.tail)), size: int64(len(d.tail)), write: func(w io.Writer) error {
			_, err := w.Write(d.tail)
			return err
		}},
	}
}
