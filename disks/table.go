package disks

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

// SectorSize is the logical sector size the partition tables are written for. Virtual disks
// (virtio, IDE, NVMe on QEMU and the clouds' block stores) use 512-byte sectors.
const SectorSize = 512

// LinuxGUID is the GPT partition type of a Linux file system, as sfdisk spells it.
const LinuxGUID = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

// FirstSector is where the partition this package makes starts: 1 MiB, as fdisk and sfdisk
// align it.
const FirstSector = 2048

const (
	gptEntries   = 128
	gptEntrySize = 128
	gptArrayLBAs = gptEntries * gptEntrySize / SectorSize // 32
	mbrMaxLBA    = 1<<32 - 1
)

// Partition is one entry of a partition table, in sectors.
type Partition struct {
	Number int    // 1-based
	Start  uint64 // first sector
	Size   uint64 // sectors
	Type   string // "83" (DOS) or a GUID in upper case (GPT), as sfdisk -J gives them
}

// IsLinux reports whether p holds a Linux file system by its type, as LinuxKit's mount and
// extend decide which partitions to consider.
func (p Partition) IsLinux() bool { return p.Type == "83" || p.Type == LinuxGUID }

// Table is a disk's partition table.
type Table struct {
	Kind       string // "dos" or "gpt"
	Partitions []Partition
	// LastUsable is the last sector a partition may use: the last sector of the disk (or of
	// the 2 TiB a DOS table can address) for DOS, the header's LastUsableLBA for GPT.
	LastUsable uint64
	diskGUID   [16]byte
	entries    []byte // GPT: the raw entry array, kept to rewrite it when growing
}

// ReadTable reads the partition table of a disk of the given number of sectors. It returns
// nil and no error when the disk has none (no 0x55AA signature).
func ReadTable(r io.ReaderAt, sectors uint64) (*Table, error) {
	mbr := make([]byte, SectorSize)
	if _, err := r.ReadAt(mbr, 0); err != nil {
		return nil, fmt.Errorf("reading the MBR: %w", err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa {
		return nil, nil
	}
	t := &Table{Kind: "dos", LastUsable: min(sectors, mbrMaxLBA) - 1}
	for i := 0; i < 4; i++ {
		e := mbr[446+16*i:]
		typ := e[4]
		if typ == 0xee {
			return readGPT(r, sectors)
		}
		start, size := uint64(binary.LittleEndian.Uint32(e[8:])), uint64(binary.LittleEndian.Uint32(e[12:]))
		if typ == 0 || size == 0 {
			continue
		}
		t.Partitions = append(t.Partitions, Partition{Number: i + 1, Start: start, Size: size, Type: fmt.Sprintf("%x", typ)})
	}
	return t, nil
}

func readGPT(r io.ReaderAt, sectors uint64) (*Table, error) {
	le := binary.LittleEndian
	h := make([]byte, SectorSize)
	if _, err := r.ReadAt(h, SectorSize); err != nil {
		return nil, fmt.Errorf("reading the GPT header: %w", err)
	}
	if string(h[:8]) != "EFI PART" {
		return nil, errors.New("protective MBR without a GPT header at sector 1")
	}
	hsize := le.Uint32(h[12:])
	if hsize < 92 || hsize > SectorSize {
		return nil, fmt.Errorf("GPT header size %d out of range", hsize)
	}
	want := le.Uint32(h[16:])
	hc := append([]byte(nil), h[:hsize]...)
	le.PutUint32(hc[16:], 0)
	if crc32.ChecksumIEEE(hc) != want {
		return nil, errors.New("GPT header checksum mismatch")
	}
	n, esize := le.Uint32(h[80:]), le.Uint32(h[84:])
	if esize != gptEntrySize || n == 0 || n > 1024 {
		return nil, fmt.Errorf("GPT with %d entries of %d bytes: unsupported", n, esize)
	}
	arr := make([]byte, int(n)*gptEntrySize)
	if _, err := r.ReadAt(arr, int64(le.Uint64(h[72:]))*SectorSize); err != nil {
		return nil, fmt.Errorf("reading the GPT entries: %w", err)
	}
	if crc32.ChecksumIEEE(arr) != le.Uint32(h[88:]) {
		return nil, errors.New("GPT entry array checksum mismatch")
	}
	t := &Table{Kind: "gpt", LastUsable: le.Uint64(h[48:]), entries: arr}
	copy(t.diskGUID[:], h[56:72])
	for i := 0; i < int(n); i++ {
		e := arr[i*gptEntrySize:]
		if bytes.Equal(e[:16], make([]byte, 16)) {
			continue
		}
		first, last := le.Uint64(e[32:]), le.Uint64(e[40:])
		if last < first {
			return nil, fmt.Errorf("GPT entry %d ends (%d) before it starts (%d)", i+1, last, first)
		}
		t.Partitions = append(t.Partitions, Partition{Number: i + 1, Start: first, Size: last - first + 1, Type: guidString(e[:16])})
	}
	return t, nil
}

// guidString formats a GUID stored in GPT's mixed-endian layout.
func guidString(b []byte) string {
	return strings.ToUpper(fmt.Sprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%x-%x",
		b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8:10], b[10:16]))
}

// guidBytes is guidString's inverse.
func guidBytes(s string) ([16]byte, error) {
	var g [16]byte
	raw, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(raw) != 16 {
		return g, fmt.Errorf("GUID %q: not 32 hex digits", s)
	}
	g = [16]byte{raw[3], raw[2], raw[1], raw[0], raw[5], raw[4], raw[7], raw[6]}
	copy(g[8:], raw[8:])
	return g, nil
}

// WriteTable makes a new partition table of kind "dos" or "gpt" on a disk of the given
// number of sectors, with one Linux partition from FirstSector to the end, as LinuxKit's
// format does with fdisk and sfdisk. It first zeroes the disk's first and last MiB so that no
// earlier file system, swap or GPT signature survives next to the new table. random supplies
// the disk identifier and GUIDs.
func WriteTable(w io.WriterAt, kind string, sectors uint64, random io.Reader) error {
	const mib = 1 << 20
	if sectors < FirstSector+2048 {
		return fmt.Errorf("disk of %d sectors is too small for a partition table (at least 2 MiB)", sectors)
	}
	zero := make([]byte, mib)
	if _, err := w.WriteAt(zero, 0); err != nil {
		return fmt.Errorf("clearing the first MiB: %w", err)
	}
	if _, err := w.WriteAt(zero, int64(sectors)*SectorSize-mib); err != nil {
		return fmt.Errorf("clearing the last MiB: %w", err)
	}
	var id [16 * 3]byte
	if _, err := io.ReadFull(random, id[:]); err != nil {
		return fmt.Errorf("random identifiers: %w", err)
	}
	switch kind {
	case "dos":
		end := min(sectors, mbrMaxLBA)
		mbr := protectiveOrDOS(0x83, FirstSector, end-FirstSector)
		copy(mbr[440:444], id[:4])
		_, err := w.WriteAt(mbr, 0)
		return err
	case "gpt":
		t := &Table{Kind: "gpt", entries: make([]byte, gptEntries*gptEntrySize)}
		copy(t.diskGUID[:], id[:16])
		typ, _ := guidBytes(LinuxGUID)
		e := t.entries
		copy(e[0:16], typ[:])
		copy(e[16:32], id[16:32])
		binary.LittleEndian.PutUint64(e[32:], FirstSector)
		binary.LittleEndian.PutUint64(e[40:], sectors-34)
		return t.writeGPT(w, sectors)
	default:
		return fmt.Errorf("unsupported partition table type %q (want dos or gpt)", kind)
	}
}

// protectiveOrDOS is an MBR with one partition entry.
func protectiveOrDOS(typ byte, start, size uint64) []byte {
	mbr := make([]byte, SectorSize)
	e := mbr[446:]
	copy(e[1:4], []byte{0xfe, 0xff, 0xff}) // CHS: beyond what CHS addresses; LBA is used
	e[4] = typ
	copy(e[5:8], []byte{0xfe, 0xff, 0xff})
	binary.LittleEndian.PutUint32(e[8:], uint32(start))
	binary.LittleEndian.PutUint32(e[12:], uint32(min(size, mbrMaxLBA)))
	mbr[510], mbr[511] = 0x55, 0xaa
	return mbr
}

// writeGPT writes the protective MBR, the primary header and entries at the start and the
// backup entries and header at the end of a disk of the given size, from t.entries.
func (t *Table) writeGPT(w io.WriterAt, sectors uint64) error {
	le := binary.LittleEndian
	arrCRC := crc32.ChecksumIEEE(t.entries)
	header := func(my, alt, arr uint64) []byte {
		h := make([]byte, SectorSize)
		copy(h, "EFI PART")
		le.PutUint32(h[8:], 0x00010000)
		le.PutUint32(h[12:], 92)
		le.PutUint64(h[24:], my)
		le.PutUint64(h[32:], alt)
		le.PutUint64(h[40:], 2+gptArrayLBAs)
		le.PutUint64(h[48:], sectors-2-gptArrayLBAs)
		copy(h[56:72], t.diskGUID[:])
		le.PutUint64(h[72:], arr)
		le.PutUint32(h[80:], uint32(len(t.entries)/gptEntrySize))
		le.PutUint32(h[84:], gptEntrySize)
		le.PutUint32(h[88:], arrCRC)
		le.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
		return h
	}
	last := sectors - 1
	backupArr := last - gptArrayLBAs
	writes := []struct {
		lba  uint64
		data []byte
	}{
		{0, protectiveOrDOS(0xee, 1, sectors-1)},
		{1, header(1, last, 2)},
		{2, t.entries},
		{backupArr, t.entries},
		{last, header(last, 1, backupArr)},
	}
	for _, x := range writes {
		if _, err := w.WriteAt(x.data, int64(x.lba)*SectorSize); err != nil {
			return fmt.Errorf("writing the GPT at sector %d: %w", x.lba, err)
		}
	}
	t.LastUsable = sectors - 2 - gptArrayLBAs
	return nil
}

// ErrNotGrowable is returned by Grow for a table it will not touch; LinuxKit's extend skips
// such disks.
var ErrNotGrowable = errors.New("not growable")

// Grow extends the table's only partition, a Linux one, to the end of a disk that now has
// the given number of sectors, keeping its start and type, and reports whether it changed
// anything (false: the partition already ends at the last usable sector). For GPT the backup
// header and entries move to the new end of the disk.
func Grow(rw interface {
	io.ReaderAt
	io.WriterAt
}, t *Table, sectors uint64) (bool, error) {
	if len(t.Partitions) != 1 {
		return false, fmt.Errorf("%w: %d partitions, extend handles exactly one", ErrNotGrowable, len(t.Partitions))
	}
	p := t.Partitions[0]
	if !p.IsLinux() {
		return false, fmt.Errorf("%w: partition 1 is not a Linux partition (type %s)", ErrNotGrowable, p.Type)
	}
	switch t.Kind {
	case "dos":
		end := min(sectors, mbrMaxLBA)
		if p.Start+p.Size >= end {
			return false, nil
		}
		mbr := make([]byte, SectorSize)
		if _, err := rw.ReadAt(mbr, 0); err != nil {
			return false, fmt.Errorf("reading the MBR: %w", err)
		}
		binary.LittleEndian.PutUint32(mbr[446+16*(p.Number-1)+12:], uint32(end-p.Start))
		if _, err := rw.WriteAt(mbr, 0); err != nil {
			return false, fmt.Errorf("writing the MBR: %w", err)
		}
		t.Partitions[0].Size = end - p.Start
		t.LastUsable = end - 1
		return true, nil
	case "gpt":
		if sectors < 2+2*gptArrayLBAs+p.Start {
			return false, fmt.Errorf("disk of %d sectors is smaller than its GPT", sectors)
		}
		newLast := sectors - 2 - gptArrayLBAs
		if p.Start+p.Size-1 >= newLast {
			return false, nil
		}
		e := t.entries[(p.Number-1)*gptEntrySize:]
		binary.LittleEndian.PutUint64(e[40:], newLast)
		if err := t.writeGPT(rw, sectors); err != nil {
			return false, err
		}
		t.Partitions[0].Size = newLast - p.Start + 1
		return true, nil
	}
	return false, fmt.Errorf("%w: table type %q", ErrNotGrowable, t.Kind)
}

// Growable reports whether the table's last partition ends before the last sector a
// partition may use on a disk of the given number of sectors.
func (t *Table) Growable(sectors uint64) bool {
	if len(t.Partitions) == 0 {
		return false
	}
	p := t.Partitions[len(t.Partitions)-1]
	end := p.Start + p.Size - 1
	switch t.Kind {
	case "dos":
		return end < min(sectors, mbrMaxLBA)-1
	case "gpt":
		return sectors >= 2+2*gptArrayLBAs && end < sectors-2-gptArrayLBAs
	}
	return false
}

// PartitionDevice names partition n of a disk device: /dev/vda → /dev/vda1, /dev/nvme0n1 →
// /dev/nvme0n1p1, as the kernel names them.
func PartitionDevice(disk string, n int) string {
	if c := disk[len(disk)-1]; c >= '0' && c <= '9' {
		return fmt.Sprintf("%sp%d", disk, n)
	}
	return fmt.Sprintf("%s%d", disk, n)
}
