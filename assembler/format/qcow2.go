package format

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// diskExtent is a range of a disk's bytes that write produces; the disk is zero elsewhere.
type diskExtent struct {
	off, size int64
	write     func(io.Writer) error
}

// writeQcow2 writes a qcow2 (version 2) image of a size-byte disk whose non-zero bytes
// are extents (sorted, not sharing a 64 KiB cluster): only their clusters are allocated, in disk
// order after all the tables, so the image is written front to back.
func writeQcow2(w io.Writer, size int64, extents []diskExtent) error {
	const bits = 16
	const cluster = 1 << bits
	const perTable = cluster / 8
	const perRefBlock = cluster / 2
	l1Entries := (size + cluster*perTable - 1) / (cluster * perTable)
	if l1Entries > perTable {
		return fmt.Errorf("qcow2: %d bytes is more than this writer's one-cluster L1 table covers", size)
	}
	var guest []int64 // allocated guest clusters, in order
	for i, e := range extents {
		first, end := e.off/cluster, (e.off+e.size+cluster-1)/cluster
		if len(guest) > 0 && first <= guest[len(guest)-1] {
			return fmt.Errorf("qcow2: extent %d shares a cluster with the one before", i)
		}
		if e.off+e.size > size {
			return fmt.Errorf("qcow2: extent %d ends beyond the disk", i)
		}
		for c := first; c < end; c++ {
			guest = append(guest, c)
		}
	}
	var tables []int64 // L2 table indices used, in order
	for _, c := range guest {
		if t := c / perTable; len(tables) == 0 || tables[len(tables)-1] != t {
			tables = append(tables, t)
		}
	}
	n, nL2 := int64(len(guest)), int64(len(tables))
	var refBlocks, total int64
	for refBlocks = 1; ; refBlocks++ {
		total = 3 + refBlocks + nL2 + n
		if total <= refBlocks*perRefBlock {
			break
		}
	}
	if refBlocks > perTable {
		return fmt.Errorf("qcow2: %d clusters of data need more refcount blocks than one table holds", n)
	}
	be := binary.BigEndian
	const l1Off, refTableOff = cluster, 2 * cluster
	refBlockOff := int64(3 * cluster)
	l2Off := refBlockOff + refBlocks*cluster
	dataOff := l2Off + nL2*cluster
	const copied = uint64(1) << 63
	var head bytes.Buffer
	hdr := make([]byte, cluster)
	copy(hdr, "QFI\xfb")
	be.PutUint32(hdr[4:], 2)
	be.PutUint32(hdr[20:], bits)
	be.PutUint64(hdr[24:], uint64(size))
	be.PutUint32(hdr[36:], uint32(l1Entries))
	be.PutUint64(hdr[40:], l1Off)
	be.PutUint64(hdr[48:], refTableOff)
	be.PutUint32(hdr[56:], 1)
	head.Write(hdr)
	l1 := make([]byte, cluster)
	slot := map[int64]int64{} // L2 table index → its cluster among the L2 tables
	for i, t := range tables {
		be.PutUint64(l1[8*t:], uint64(l2Off+int64(i)*cluster)|copied)
		slot[t] = int64(i)
	}
	head.Write(l1)
	rt := make([]byte, cluster)
	for i := int64(0); i < refBlocks; i++ {
		be.PutUint64(rt[8*i:], uint64(refBlockOff+i*cluster))
	}
	head.Write(rt)
	rb := make([]byte, refBlocks*cluster)
	for i := int64(0); i < total; i++ {
		be.PutUint16(rb[2*i:], 1)
	}
	head.Write(rb)
	l2 := make([]byte, nL2*cluster)
	for i, c := range guest {
		at := slot[c/perTable]*cluster + 8*(c%perTable)
		be.PutUint64(l2[at:], uint64(dataOff+int64(i)*cluster)|copied)
	}
	head.Write(l2)
	if _, err := w.Write(head.Bytes()); err != nil {
		return err
	}
	for _, e := range extents {
		start := e.off / cluster * cluster
		end := (e.off + e.size + cluster - 1) / cluster * cluster
		if err := writeZeroBytes(w, e.off-start); err != nil {
			return err
		}
		cw := &countWriter{w: w}
		if err := e.write(cw); err != nil {
			return err
		}
		if cw.n != e.size {
			return fmt.Errorf("qcow2: extent at %d: wrote %d bytes, want %d", e.off, cw.n, e.size)
		}
		if err := writeZeroBytes(w, end-e.off-e.size); err != nil {
			return err
		}
	}
	return nil
}
