// Package iso writes the small ISO9660 images that carry userdata to a VM as a CD-ROM, and
// reads the volume label of ISO9660 and FAT file systems, which is how the in-VM agent finds
// such a disk.
//
// The writer is deliberately minimal: one root directory holding a few regular files, with
// Rock Ridge names so that "user-data" and "meta-data" keep their exact spelling, and fixed
// timestamps so that the same input always gives the same bytes.
package iso

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const sector = 2048

// Well-known names.
const (
	// LabelCIDATA is the NoCloud volume label (cloud-init's "cidata").
	LabelCIDATA = "cidata"
	// LinuxKitFile is the single file LinuxKit's `linuxkit metadata create` writes.
	LinuxKitFile = "config"
	// NoCloudUserdata and NoCloudMetadata are cloud-init NoCloud's file names.
	NoCloudUserdata = "user-data"
	NoCloudMetadata = "meta-data"
)

// File is one regular file in the image's root directory.
type File struct {
	Name string // 1-64 bytes, no '/' or NUL; written as a Rock Ridge name
	Data []byte
}

// Options tune Write. The zero value gives label "cidata" and timestamps at the Unix epoch.
type Options struct {
	// Label is the volume identifier, at most 32 bytes; default LabelCIDATA.
	Label string
	// ModTime is recorded for the volume and every file; default the Unix epoch, so that
	// output is reproducible.
	ModTime time.Time
}

// Metadata returns the files of a metadata CD-ROM for userdata: LinuxKit's single "config"
// file, and NoCloud's "user-data" and "meta-data" (instance-id and, if set, local-hostname),
// so that LinuxKit's agent, mobykit's agent and cloud-init all find the data.
func Metadata(userdata []byte, instanceID, hostname string) []File {
	if instanceID == "" {
		instanceID = "iid-mobykit"
	}
	meta := "instance-id: " + instanceID + "\n"
	if hostname != "" {
		meta += "local-hostname: " + hostname + "\n"
	}
	return []File{
		{Name: LinuxKitFile, Data: userdata},
		{Name: NoCloudMetadata, Data: []byte(meta)},
		{Name: NoCloudUserdata, Data: userdata},
	}
}

// WriteFile writes an image of files to path atomically (temporary file, then rename).
func WriteFile(path string, files []File, opts Options) error {
	var buf bytes.Buffer
	if err := Write(&buf, files, opts); err != nil {
		return fmt.Errorf("iso: %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("iso: %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("iso: write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("iso: chmod %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("iso: close %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("iso: rename into %s: %w", path, err)
	}
	return nil
}

// Write writes an ISO9660 image (with Rock Ridge names and modes) holding files in its root.
//
// Layout: 16 system sectors, the primary volume descriptor (16), the terminator (17), the
// little- and big-endian path tables (18, 19), the root directory (20...), then each file's
// data from a sector boundary, in name order.
func Write(w io.Writer, files []File, opts Options) error {
	label := opts.Label
	if label == "" {
		label = LabelCIDATA
	}
	if len(label) > 32 {
		return fmt.Errorf("volume label %q is longer than 32 bytes", label)
	}
	mt := opts.ModTime
	if mt.IsZero() {
		mt = time.Unix(0, 0)
	}
	mt = mt.UTC()

	files = slices.Clone(files)
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(isoName(a.Name), isoName(b.Name)) })
	seen := map[string]bool{}
	for _, f := range files {
		if f.Name == "" || len(f.Name) > 64 || strings.ContainsAny(f.Name, "/\x00") || f.Name == "." || f.Name == ".." {
			return fmt.Errorf("file name %q: must be 1-64 bytes without '/' or NUL", f.Name)
		}
		if seen[isoName(f.Name)] {
			return fmt.Errorf("file name %q: clashes with another name once mapped to ISO9660 (%s)", f.Name, isoName(f.Name))
		}
		seen[isoName(f.Name)] = true
		if int64(len(f.Data)) > 1<<32-1 {
			return fmt.Errorf("file %q is too large for ISO9660", f.Name)
		}
	}

	date := dirDate(mt)
	const rootLBA = 20

	// Root directory records, packed into sectors (a record never crosses a sector).
	mkRoot := func(rootSectors uint32, fileLBA []uint32) []byte {
		var dir []byte
		add := func(r []byte) {
			used := len(dir) % sector
			if used+len(r) > sector {
				dir = append(dir, make([]byte, sector-used)...)
			}
			dir = append(dir, r...)
		}
		rootSize := rootSectors * sector
		// "." carries SUSP SP and the Rock Ridge ER announcement, then PX.
		dot := susp("SP", []byte{0xBE, 0xEF, 0})
		dot = append(dot, erEntry()...)
		dot = append(dot, pxEntry(0o040755, 2)...)
		add(dirRecord([]byte{0}, rootLBA, rootSize, true, date, dot))
		add(dirRecord([]byte{1}, rootLBA, rootSize, true, date, pxEntry(0o040755, 2)))
		for i, f := range files {
			su := pxEntry(0o100644, 1)
			su = append(su, nmEntry(f.Name)...)
			add(dirRecord([]byte(isoName(f.Name)), fileLBA[i], uint32(len(f.Data)), false, date, su))
		}
		if pad := len(dir) % sector; pad != 0 {
			dir = append(dir, make([]byte, sector-pad)...)
		}
		return dir
	}
	// Two passes: the root's size decides where the files start.
	fileLBA := make([]uint32, len(files))
	root := mkRoot(1, fileLBA)
	rootSectors := uint32(len(root) / sector)
	next := uint32(rootLBA) + rootSectors
	for i, f := range files {
		fileLBA[i] = next
		next += sectors(len(f.Data))
	}
	root = mkRoot(rootSectors, fileLBA)
	total := next

	img := make([]byte, 0, int(total)*sector)
	img = append(img, make([]byte, 16*sector)...)
	img = append(img, pvd(label, total, rootLBA, rootSectors*sector, date, mt)...)
	term := make([]byte, sector)
	term[0] = 255
	copy(term[1:], "CD001")
	term[6] = 1
	img = append(img, term...)
	img = append(img, pathTable(rootLBA, binary.LittleEndian)...)
	img = append(img, pathTable(rootLBA, binary.BigEndian)...)
	img = append(img, root...)
	for _, f := range files {
		img = append(img, f.Data...)
		if pad := len(f.Data) % sector; pad != 0 {
			img = append(img, make([]byte, sector-pad)...)
		}
	}
	if len(img) != int(total)*sector {
		return fmt.Errorf("internal error: image is %d bytes, expected %d sectors", len(img), total)
	}
	_, err := w.Write(img)
	return err
}

func sectors(n int) uint32 { return uint32((n + sector - 1) / sector) }

// isoName maps a name to an ISO9660 level-2 file identifier: upper-case d-characters, the
// name "." extension, and version ";1" (Linux shows these in lower case without Rock Ridge).
func isoName(name string) string {
	base, ext := name, ""
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		base, ext = name[:i], name[i+1:]
	}
	d := func(s string, max int) string {
		var b strings.Builder
		for _, r := range strings.ToUpper(s) {
			if b.Len() >= max {
				break
			}
			if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '_' {
				b.WriteRune(r)
			} else {
				b.WriteByte('_')
			}
		}
		return b.String()
	}
	ext = d(ext, 3)
	return d(base, 30-len(ext)) + "." + ext + ";1"
}

func both16(v uint16) []byte {
	b := make([]byte, 4)
	binary.LittleEndian.PutUint16(b, v)
	binary.BigEndian.PutUint16(b[2:], v)
	return b
}

func both32(v uint32) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, v)
	binary.BigEndian.PutUint32(b[4:], v)
	return b
}

func dirDate(t time.Time) []byte {
	return []byte{byte(t.Year() - 1900), byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second()), 0}
}

func dirRecord(id []byte, lba, size uint32, dir bool, date, su []byte) []byte {
	n := 33 + len(id)
	if len(id)%2 == 0 {
		n++ // padding byte keeps the system use area on an even offset
	}
	r := make([]byte, n, n+len(su)+1)
	r[1] = 0
	copy(r[2:], both32(lba))
	copy(r[10:], both32(size))
	copy(r[18:], date)
	if dir {
		r[25] = 2
	}
	copy(r[28:], both16(1))
	r[32] = byte(len(id))
	copy(r[33:], id)
	r = append(r, su...)
	if len(r)%2 == 1 {
		r = append(r, 0)
	}
	r[0] = byte(len(r))
	return r
}

func susp(sig string, payload []byte) []byte {
	e := []byte{sig[0], sig[1], byte(4 + len(payload)), 1}
	return append(e, payload...)
}

func pxEntry(mode uint32, nlink uint32) []byte {
	var p []byte
	p = append(p, both32(mode)...)
	p = append(p, both32(nlink)...)
	p = append(p, both32(0)...) // uid
	p = append(p, both32(0)...) // gid
	return susp("PX", p)
}

func nmEntry(name string) []byte {
	return susp("NM", append([]byte{0}, name...))
}

func erEntry() []byte {
	id, des, src := "RRIP_1991A", "ROCK RIDGE 1.09", "MOBYKIT"
	p := []byte{byte(len(id)), byte(len(des)), byte(len(src)), 1}
	p = append(p, id...)
	p = append(p, des...)
	p = append(p, src...)
	return susp("ER", p)
}

func pvdDate(t time.Time) []byte {
	return append([]byte(t.Format("20060102150405")+"00"), 0)
}

func padded(s string, n int) []byte {
	b := bytes.Repeat([]byte{' '}, n)
	copy(b, s)
	return b
}

func pvd(label string, total, rootLBA, rootSize uint32, date []byte, mt time.Time) []byte {
	b := make([]byte, sector)
	b[0] = 1
	copy(b[1:], "CD001")
	b[6] = 1
	copy(b[8:], padded("LINUX", 32))
	copy(b[40:], padded(label, 32))
	copy(b[80:], both32(total))
	copy(b[120:], both16(1))
	copy(b[124:], both16(1))
	copy(b[128:], both16(sector))
	copy(b[132:], both32(10)) // path table: the root only
	binary.LittleEndian.PutUint32(b[140:], 18)
	binary.BigEndian.PutUint32(b[148:], 19)
	copy(b[156:], dirRecord([]byte{0}, rootLBA, rootSize, true, date, nil))
	copy(b[190:], padded("", 128))
	copy(b[318:], padded("", 128))
	copy(b[446:], padded("", 128))
	copy(b[574:], padded("MOBYKIT", 128))
	copy(b[702:], padded("", 37*3))
	copy(b[813:], pvdDate(mt))
	copy(b[830:], pvdDate(mt))
	copy(b[847:], append(bytes.Repeat([]byte{'0'}, 16), 0))
	copy(b[864:], pvdDate(mt))
	b[881] = 1
	return b
}

func pathTable(rootLBA uint32, bo binary.ByteOrder) []byte {
	b := make([]byte, sector)
	b[0] = 1 // identifier length
	bo.PutUint32(b[2:], rootLBA)
	bo.PutUint16(b[6:], 1) // parent: itself
	return b
}

// Label kinds returned by ReadLabel.
const (
	FSISO9660 = "iso9660"
	FSVFAT    = "vfat"
)

// ErrNoLabel is returned by ReadLabel when r holds neither an ISO9660 nor a FAT file system.
var ErrNoLabel = errors.New("no ISO9660 or FAT file system found")

// ReadLabel reads the file system type (FSISO9660 or FSVFAT, the names mount(2) takes) and
// the volume label, with trailing spaces removed, from a disk image or block device.
func ReadLabel(r io.ReaderAt) (fstype, label string, err error) {
	pv := make([]byte, 80)
	if _, err := r.ReadAt(pv, 16*sector); err == nil && pv[0] == 1 && string(pv[1:6]) == "CD001" {
		return FSISO9660, strings.TrimRight(string(pv[40:72]), " \x00"), nil
	}
	bs := make([]byte, 512)
	if _, err := r.ReadAt(bs, 0); err != nil {
		if errors.Is(err, io.EOF) {
			return "", "", ErrNoLabel
		}
		return "", "", fmt.Errorf("read boot sector: %w", err)
	}
	if bs[510] != 0x55 || bs[511] != 0xAA {
		return "", "", ErrNoLabel
	}
	switch {
	case string(bs[0x52:0x57]) == "FAT32" && bs[0x42] == 0x29:
		return FSVFAT, strings.TrimRight(string(bs[0x47:0x52]), " \x00"), nil
	case strings.HasPrefix(string(bs[0x36:0x3B]), "FAT") && bs[0x26] == 0x29:
		return FSVFAT, strings.TrimRight(string(bs[0x2B:0x36]), " \x00"), nil
	}
	return "", "", ErrNoLabel
}
