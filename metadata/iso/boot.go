package iso

import (
	"encoding/binary"
)

// Boot makes an image bootable by a PC BIOS through El Torito, in "no emulation" mode, the way
// `xorriso -as mkisofs -b isolinux.bin -no-emul-boot -boot-load-size 4 -boot-info-table` does,
// and optionally as a disk too (isohybrid).
type Boot struct {
	// File is the name of the boot image among the files (ISOLINUX's isolinux.bin). It must be
	// given as Data: a boot info table is written into its bytes 8-63.
	File string
	// LoadSectors is how many 512-byte sectors of File the BIOS loads; 0 means 4.
	LoadSectors uint16
	// HybridMBR, when set, is the boot code of a master boot record (ISOLINUX's isohdpfx.bin,
	// of which the first 432 bytes are used). Sector 0 then gets it, the location of File and
	// a partition table with one active partition covering the image, and the image is padded
	// to a whole MiB: it boots from a disk (a USB stick, a raw disk of a VM) as well as from a
	// CD-ROM.
	HybridMBR []byte
	// DiskID is the MBR's disk signature. Derive it from the content to keep the image
	// reproducible.
	DiskID uint32
	// EFI makes the catalog's entry one for UEFI (platform 0xEF) instead of a PC BIOS: File is
	// then an EFI system partition image (FAT) that firmware reads EFI/BOOT/BOOTX64.EFI from. It
	// gets no boot info table, so it may be streamed (File.Open), and LoadSectors is its size
	// in 512-byte sectors, or 0 ("to the end of the image") when that does not fit in 16 bits,
	// as xorriso writes it: place it last (name order) in that case.
	EFI bool
	// Node is the boot image's file in a tree written by WriteTree, which takes only EFI boot
	// images (File is then unused).
	Node *Node
}

// cylinder is the unit an isohybrid image is padded to: 64 heads of 32 sectors of 512 bytes,
// the geometry isohybrid uses.
const (
	hybridHeads   = 64
	hybridSectors = 32
	cylinder      = hybridHeads * hybridSectors * 512
)

// bootRecord is the El Torito boot record volume descriptor pointing at the catalog.
func bootRecord(catalogLBA uint32) []byte {
	b := make([]byte, sector)
	b[0] = 0
	copy(b[1:], "CD001")
	b[6] = 1
	copy(b[7:], "EL TORITO SPECIFICATION")
	binary.LittleEndian.PutUint32(b[0x47:], catalogLBA)
	return b
}

// bootCatalog is a catalog with a validation entry and one default entry: no emulation, x86 (or EFI),
// loaded at the default segment.
func bootCatalog(bootLBA uint32, loadSectors uint16, efi bool) []byte {
	if loadSectors == 0 && !efi {
		loadSectors = 4
	}
	b := make([]byte, sector)
	b[0] = 1 // validation entry, platform 0 (x86)
	if efi {
		b[1] = 0xEF
	}
	copy(b[4:28], "MOBYKIT")
	b[30], b[31] = 0x55, 0xAA
	var sum uint16
	for i := 0; i < 32; i += 2 {
		sum += binary.LittleEndian.Uint16(b[i:])
	}
	binary.LittleEndian.PutUint16(b[28:], -sum)
	e := b[32:64]
	e[0] = 0x88 // bootable
	e[1] = 0    // no emulation
	binary.LittleEndian.PutUint16(e[6:], loadSectors)
	binary.LittleEndian.PutUint32(e[8:], bootLBA)
	return b
}

// patchBootInfo writes the boot info table into a boot file placed at lba: the primary volume
// descriptor's sector, the file's, its length and the 32-bit sum of its words from byte 64 on.
func patchBootInfo(b []byte, lba uint32) {
	var sum uint32
	for i := 64; i < len(b); i += 4 {
		var w [4]byte
		copy(w[:], b[i:])
		sum += binary.LittleEndian.Uint32(w[:])
	}
	binary.LittleEndian.PutUint32(b[8:], 16)
	binary.LittleEndian.PutUint32(b[12:], lba)
	binary.LittleEndian.PutUint32(b[16:], uint32(len(b)))
	binary.LittleEndian.PutUint32(b[20:], sum)
	clear(b[24:64])
}

// hybridMBR is sector 0 of an isohybrid image, as isohybrid writes it with its defaults
// (partition type 0x17, starting at sector 0, covering the padded image).
func hybridMBR(b *Boot, l *layout) []byte {
	m := make([]byte, 512)
	copy(m, b.HybridMBR[:432])
	binary.LittleEndian.PutUint32(m[432:], l.fileLBA[l.bootIndex]*4)
	binary.LittleEndian.PutUint32(m[440:], b.DiskID)
	cyls := l.size / cylinder
	if cyls > 1024 {
		cyls = 1024 // CHS cannot say more; the LBA fields hold the truth
	}
	e := m[446:462]
	e[0] = 0x80
	e[1] = 0 // start head
	e[2] = 1 // start sector
	e[3] = 0 // start cylinder
	e[4] = 0x17
	e[5] = hybridHeads - 1
	e[6] = byte(hybridSectors + (((cyls - 1) & 0x300) >> 2))
	e[7] = byte((cyls - 1) & 0xff)
	binary.LittleEndian.PutUint32(e[8:], 0)
	binary.LittleEndian.PutUint32(e[12:], uint32(l.size/512))
	m[510], m[511] = 0x55, 0xAA
	return m
}
