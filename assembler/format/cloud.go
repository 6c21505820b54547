package format

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/klauspost/compress/gzip"
)

func init() {
	Register(awsFormat{})
	Register(vhdFormat{})
	Register(qcow2BIOS{})
	Register(gcpFormat{})
}

// defaultCloudSize is LinuxKit's default --size, for the formats that take it.
const defaultCloudSize = 1 << 30

func sizeOr(in *Input, def int64) int64 {
	if in.DiskSize > 0 {
		return in.DiskSize
	}
	return def
}

// awsFormat writes NAME.raw: the BIOS disk as the raw image an EC2 snapshot import takes
// (`mobykit aws import`), --size bytes (default 1 GiB, as LinuxKit).
type awsFormat struct{}

func (awsFormat) Name() string                { return "aws" }
func (awsFormat) FileName(name string) string { return name + ".raw" }
func (f awsFormat) Write(ctx context.Context, in *Input) ([]string, error) {
	return WriteStreamer(ctx, f, in)
}

func (awsFormat) Stream(ctx context.Context, in *Input, w io.Writer) error {
	d, err := biosDisk(ctx, in, sizeOr(in, defaultCloudSize))
	if err != nil {
		return err
	}
	return d.writeRaw(w)
}

// vhdFormat writes NAME.vhd: the BIOS disk as a fixed VHD (the raw disk and a 512-byte
// footer), sized like raw-bios.
type vhdFormat struct{}

func (vhdFormat) Name() string                { return "vhd" }
func (vhdFormat) FileName(name string) string { return name + ".vhd" }
func (f vhdFormat) Write(ctx context.Context, in *Input) ([]string, error) {
	return WriteStreamer(ctx, f, in)
}

func (vhdFormat) Stream(ctx context.Context, in *Input, w io.Writer) error {
	d, err := biosDisk(ctx, in, in.DiskSize)
	if err != nil {
		return err
	}
	if err := d.writeRaw(w); err != nil {
		return err
	}
	_, err = w.Write(vhdFooter(d.size, d.id, in.MTime))
	return err
}

// vhdFooter is the footer of a fixed VHD, as the Virtual Hard Disk Image Format
// Specification lays it out. Its time stamp is the build's, its unique id derived from the
// content.
func vhdFooter(size int64, id [16]byte, mtime int64) []byte {
	be := binary.BigEndian
	f := make([]byte, 512)
	copy(f, "conectix")
	be.PutUint32(f[8:], 2)           // features: reserved bit
	be.PutUint32(f[12:], 0x00010000) // version 1.0
	be.PutUint64(f[16:], ^uint64(0)) // data offset: none (fixed)
	ts := mtime - 946684800          // seconds since 2000-01-01
	if ts < 0 {
		ts = 0
	}
	be.PutUint32(f[24:], uint32(ts))
	// The creator application tells readers whether the current size or the geometry is the
	// disk's size; qemu's "qem2" (as `qemu-img convert -o force_size` writes) says the size.
	copy(f[28:], "qem2")
	be.PutUint32(f[32:], 0x00010000)
	copy(f[36:], "Wi2k")
	be.PutUint64(f[40:], uint64(size))
	be.PutUint64(f[48:], uint64(size))
	c, h, s := vhdGeometry(size / 512)
	be.PutUint16(f[56:], c)
	f[58], f[59] = h, s
	be.PutUint32(f[60:], 2) // fixed
	copy(f[68:], id[:])
	var sum uint32
	for _, b := range f {
		sum += uint32(b)
	}
	be.PutUint32(f[64:], ^sum)
	return f
}

// vhdGeometry is the CHS geometry the VHD specification derives from a sector count.
func vhdGeometry(total int64) (cyl uint16, heads, spt uint8) {
	if total > 65535*16*255 {
		total = 65535 * 16 * 255
	}
	var h, s, cth int64
	if total >= 65535*16*63 {
		s, h = 255, 16
		cth = total / s
	} else {
		s = 17
		cth = total / s
		h = (cth + 1023) / 1024
		if h < 4 {
			h = 4
		}
		if cth >= h*1024 || h > 16 {
			s, h = 31, 16
			cth = total / s
		}
		if cth >= h*1024 {
			s, h = 63, 16
			cth = total / s
		}
	}
	return uint16(cth / h), uint8(h), uint8(s)
}

// qcow2BIOS writes NAME.qcow2: the BIOS disk as a qcow2 (version 2) image of --size bytes
// (default 1 GiB, as LinuxKit); only the clusters the disk's data covers are allocated. All
// the tables come first, so it is written front to back.
type qcow2BIOS struct{}

func (qcow2BIOS) Name() string                { return "qcow2-bios" }
func (qcow2BIOS) FileName(name string) string { return name + ".qcow2" }
func (f qcow2BIOS) Write(ctx context.Context, in *Input) ([]string, error) {
	return WriteStreamer(ctx, f, in)
}

func (qcow2BIOS) Stream(ctx context.Context, in *Input, w io.Writer) error {
	d, err := biosDisk(ctx, in, sizeOr(in, defaultCloudSize))
	if err != nil {
		return err
	}
	return writeQcow2(w, d.size, []diskExtent{{off: 0, size: d.data, write: d.write}})
}

// gcpFormat writes NAME.img.tar.gz: the BIOS disk as disk.raw in a gzip'ed tar, what Google
// Compute Engine imports, --size bytes (default 1 GiB; a whole number of GiB, as GCE wants).
type gcpFormat struct{}

func (gcpFormat) Name() string                { return "gcp" }
func (gcpFormat) FileName(name string) string { return name + ".img.tar.gz" }
func (f gcpFormat) Write(ctx context.Context, in *Input) ([]string, error) {
	return WriteStreamer(ctx, f, in)
}

func (gcpFormat) Stream(ctx context.Context, in *Input, w io.Writer) error {
	size := sizeOr(in, defaultCloudSize)
	if size%(1<<30) != 0 {
		return fmt.Errorf("--size %d MiB: a GCE image is a whole number of GiB", size>>20)
	}
	d, err := biosDisk(ctx, in, size)
	if err != nil {
		return err
	}
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: "disk.raw", Mode: 0o644, Size: d.size, ModTime: time.Unix(in.MTime, 0), Format: tar.FormatGNU}); err != nil {
		return err
	}
	if err := d.writeRaw(tw); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

func init() { Register(dynamicVHD{}) }

// dynamicVHD writes NAME.vhd as a dynamic VHD: a copy of the footer, the dynamic disk header,
// the block allocation table, the 2 MiB blocks the disk's data covers (each after its sector
// bitmap), then the footer. Sized like raw-bios. All of it is laid out before the first byte,
// so it is written front to back.
type dynamicVHD struct{}

func (dynamicVHD) Name() string                { return "dynamic-vhd" }
func (dynamicVHD) FileName(name string) string { return name + ".vhd" }
func (f dynamicVHD) Write(ctx context.Context, in *Input) ([]string, error) {
	return WriteStreamer(ctx, f, in)
}

func (dynamicVHD) Stream(ctx context.Context, in *Input, w io.Writer) error {
	d, err := biosDisk(ctx, in, in.DiskSize)
	if err != nil {
		return err
	}
	const block = 2 << 20
	be := binary.BigEndian
	entries := (d.size + block - 1) / block
	used := (d.data + block - 1) / block
	footer := vhdFooter(d.size, d.id, in.MTime)
	be.PutUint64(footer[16:], 512) // data offset: the dynamic header
	be.PutUint32(footer[60:], 3)   // dynamic
	be.PutUint32(footer[64:], 0)
	var sum uint32
	for _, b := range footer {
		sum += uint32(b)
	}
	be.PutUint32(footer[64:], ^sum)

	const batOff = 512 + 1024
	batSize := (entries*4 + 511) / 512 * 512
	hdr := make([]byte, 1024)
	copy(hdr, "cxsparse")
	be.PutUint64(hdr[8:], ^uint64(0))
	be.PutUint64(hdr[16:], batOff)
	be.PutUint32(hdr[24:], 0x00010000)
	be.PutUint32(hdr[28:], uint32(entries))
	be.PutUint32(hdr[32:], block)
	sum = 0
	for _, b := range hdr {
		sum += uint32(b)
	}
	be.PutUint32(hdr[36:], ^sum)

	bat := make([]byte, batSize)
	for i := range bat {
		bat[i] = 0xff
	}
	first := int64(batOff) + batSize
	for i := int64(0); i < used; i++ {
		be.PutUint32(bat[4*i:], uint32((first+i*(512+block))/512))
	}
	head := append(append(append([]byte{}, footer...), hdr...), bat...)
	if _, err := w.Write(head); err != nil {
		return err
	}
	// The data goes out block by block, each after a bitmap saying all its sectors are there.
	bitmap := bytes.Repeat([]byte{0xff}, 512)
	bw := &blockWriter{w: w, block: block, bitmap: bitmap}
	if err := d.write(bw); err != nil {
		return err
	}
	if err := bw.finish(used); err != nil {
		return err
	}
	_, err = w.Write(footer)
	return err
}

// blockWriter writes a stream as VHD blocks: a bitmap before every block, the last block
// filled with zeros.
type blockWriter struct {
	w       io.Writer
	block   int64
	bitmap  []byte
	inBlock int64 // bytes of the current block written; 0 before its bitmap
	blocks  int64
}

func (b *blockWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if b.inBlock == 0 {
			if _, err := b.w.Write(b.bitmap); err != nil {
				return n, err
			}
			b.blocks++
		}
		c := min(int64(len(p)), b.block-b.inBlock)
		if _, err := b.w.Write(p[:c]); err != nil {
			return n, err
		}
		n += int(c)
		p = p[c:]
		b.inBlock = (b.inBlock + c) % b.block
	}
	return n, nil
}

func (b *blockWriter) finish(want int64) error {
	if b.inBlock > 0 {
		if err := padZeros(b.w, b.block-b.inBlock); err != nil {
			return err
		}
		b.inBlock = 0
	}
	if b.blocks != want {
		return fmt.Errorf("vhd: wrote %d blocks, planned %d", b.blocks, want)
	}
	return nil
}

func init() { Register(vmdkFormat{}) }

// vmdkFormat writes NAME.vmdk: the BIOS disk as a monolithic sparse VMDK (a hosted sparse
// extent with its descriptor inside), sized like raw-bios; only the grains the disk's data
// covers are allocated. Header, descriptor and grain tables come first.
type vmdkFormat struct{}

func (vmdkFormat) Name() string                { return "vmdk" }
func (vmdkFormat) FileName(name string) string { return name + ".vmdk" }
func (f vmdkFormat) Write(ctx context.Context, in *Input) ([]string, error) {
	return WriteStreamer(ctx, f, in)
}

func (vmdkFormat) Stream(ctx context.Context, in *Input, w io.Writer) error {
	d, err := biosDisk(ctx, in, in.DiskSize)
	if err != nil {
		return err
	}
	const grain = 128 // sectors: 64 KiB
	const perGT = 512
	le := binary.LittleEndian
	capacity := d.size / 512
	grains := (capacity + grain - 1) / grain
	nGT := (grains + perGT - 1) / perGT
	used := (d.data + grain*512 - 1) / (grain * 512)
	const descOff, descSectors = 1, 20
	gdOff := int64(descOff + descSectors)
	gdSectors := (nGT*4 + 511) / 512
	gtOff := gdOff + gdSectors
	overhead := (gtOff + nGT*4 + grain - 1) / grain * grain

	hdr := make([]byte, 512)
	le.PutUint32(hdr[0:], 0x564d444b)
	le.PutUint32(hdr[4:], 1)
	le.PutUint32(hdr[8:], 1) // valid newline detection test
	le.PutUint64(hdr[12:], uint64(capacity))
	le.PutUint64(hdr[20:], grain)
	le.PutUint64(hdr[28:], descOff)
	le.PutUint64(hdr[36:], descSectors)
	le.PutUint32(hdr[44:], perGT)
	le.PutUint64(hdr[56:], uint64(gdOff))
	le.PutUint64(hdr[64:], uint64(overhead))
	hdr[73], hdr[74], hdr[75], hdr[76] = '\n', ' ', '\r', '\n'

	cyl := min(capacity/(16*63), 16383)
	desc := fmt.Sprintf("# Disk DescriptorFile\nversion=1\nCID=%08x\nparentCID=ffffffff\ncreateType=\"monolithicSparse\"\n\n"+
		"# Extent description\nRW %d SPARSE \"%s\"\n\n# The Disk Data Base\n#DDB\n\n"+
		"ddb.virtualHWVersion = \"4\"\nddb.geometry.cylinders = \"%d\"\nddb.geometry.heads = \"16\"\nddb.geometry.sectors = \"63\"\nddb.adapterType = \"ide\"\n",
		le.Uint32(d.id[4:]), capacity, in.Name+".vmdk", cyl)
	if len(desc) > descSectors*512 {
		return fmt.Errorf("vmdk: descriptor of %d bytes does not fit", len(desc))
	}
	// Header, descriptor and grain directory in memory; the grain tables (up to 128 MiB of
	// them for a 2 TiB disk) one at a time.
	head := make([]byte, gtOff*512)
	copy(head, hdr)
	copy(head[descOff*512:], desc)
	for i := int64(0); i < nGT; i++ {
		le.PutUint32(head[gdOff*512+4*i:], uint32(gtOff+i*4))
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.Write(head)
	gt := make([]byte, perGT*4)
	for i := int64(0); i < nGT; i++ {
		clear(gt)
		for j := int64(0); j < perGT; j++ {
			if g := i*perGT + j; g < used {
				le.PutUint32(gt[4*j:], uint32(overhead+g*grain))
			}
		}
		bw.Write(gt)
	}
	if err := padZeros(bw, (overhead-gtOff-nGT*4)*512); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := d.write(w); err != nil {
		return err
	}
	return padZeros(w, used*grain*512-d.data)
}
