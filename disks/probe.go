package disks

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Content is what Probe recognised at the start of a block device.
type Content struct {
	// Type is a file system ("ext4", "ext3", "ext2", "xfs", "btrfs", "swap", "iso9660",
	// "squashfs", "vfat", "crypto_LUKS") or a partition table ("dos", "gpt"), as blkid names
	// them; "" when nothing was recognised.
	Type  string
	Label string
	UUID  string
}

// IsPartitionTable reports whether c is a partition table rather than a file system.
func (c Content) IsPartitionTable() bool { return c.Type == "dos" || c.Type == "gpt" }

// probeSize is how much of a device Probe reads: enough for btrfs's superblock at 64 KiB and
// a swap header on 64 KiB pages.
const probeSize = 64*1024 + 4096

// Probe recognises the file system or partition table at the start of r (a block device or
// an image file), as blkid does for the types mobykit's images use. File systems are checked
// before partition tables: a file system made on a whole disk can leave an MBR's 0x55AA in
// place (FAT does), and a file system is what counts. A device shorter than the probe window
// is read as far as it goes.
func Probe(r io.ReaderAt) (Content, error) {
	buf := make([]byte, probeSize)
	n, err := r.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return Content{}, fmt.Errorf("reading the first %d bytes: %w", probeSize, err)
	}
	return probeBytes(buf[:n]), nil
}

func at(b []byte, off int, sig string) bool {
	return len(b) >= off+len(sig) && string(b[off:off+len(sig)]) == sig
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.TrimSpace(string(b))
}

func uuidString(u []byte) string {
	if bytes.Equal(u, make([]byte, len(u))) {
		return ""
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

func probeBytes(b []byte) Content {
	le := binary.LittleEndian
	// ext2/3/4: superblock at 1024, magic 0xEF53 at +56
	if len(b) >= 2048 && le.Uint16(b[1024+56:]) == 0xEF53 {
		sb := b[1024:]
		compat, incompat := le.Uint32(sb[92:]), le.Uint32(sb[96:])
		t := "ext2"
		switch {
		case incompat&(0x40|0x80|0x200) != 0: // extents, 64bit, flex_bg
			t = "ext4"
		case compat&0x4 != 0: // has_journal
			t = "ext3"
		}
		return Content{Type: t, Label: cstring(sb[120:136]), UUID: uuidString(sb[104:120])}
	}
	if at(b, 0, "XFSB") && len(b) >= 120 {
		return Content{Type: "xfs", Label: cstring(b[108:120]), UUID: uuidString(b[32:48])}
	}
	if at(b, 65536+64, "_BHRfS_M") {
		sb := b[65536:]
		return Content{Type: "btrfs", Label: cstring(sb[299 : 299+256]), UUID: uuidString(sb[32:48])}
	}
	for _, page := range []int{4096, 8192, 16384, 65536} {
		if at(b, page-10, "SWAPSPACE2") || at(b, page-10, "SWAP-SPACE") {
			return Content{Type: "swap", Label: cstring(b[1052:1068]), UUID: uuidString(b[1036:1052])}
		}
	}
	if at(b, 0, "LUKS\xba\xbe") {
		return Content{Type: "crypto_LUKS"}
	}
	if at(b, 0, "hsqs") {
		return Content{Type: "squashfs"}
	}
	if at(b, 32769, "CD001") {
		return Content{Type: "iso9660", Label: cstring(b[32768+40 : 32768+72])}
	}
	if at(b, 510, "\x55\xaa") && (at(b, 82, "FAT32") || at(b, 54, "FAT1")) {
		return Content{Type: "vfat"}
	}
	if at(b, 512, "EFI PART") {
		return Content{Type: "gpt"}
	}
	if at(b, 510, "\x55\xaa") {
		return Content{Type: "dos"}
	}
	return Content{}
}
