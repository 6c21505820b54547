// Package iso writes the small ISO9660 images that carry userdata to a VM as a CD-ROM, and
// reads the volume label of ISO9660 and FAT file systems, which is how the in-VM agent finds
// such a disk.
//
// The writer is deliberately minimal: one root directory holding a few regular files, with
// Rock Ridge names so that "user-data" and "meta-data" keep their exact spelling, and fixed
// timestamps so that the same input always gives the same bytes.
package iso

import (
	"bufio"
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
	// Open, when set, streams the content (Size bytes) instead of Data.
	Open func() (io.ReadCloser, error)
	Size int64
}

// Options tune Write. The zero value gives label "cidata" and timestamps at the Unix epoch.
type Options struct {
	// Label is the volume identifier, at most 32 bytes; default LabelCIDATA.
	Label string
	// ModTime is recorded for the volume and every file; default the Unix epoch, so that
	// output is reproducible.
	ModTime time.Time
	// Boot, when set, makes the image bootable (see Boot).
	Boot *Boot
	// Size, when set, pads the image with zeros to that many bytes; an image that needs more
	// is a *TooSmallError.
	Size int64
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
// Layout: 16 system sectors (with Options.Boot.HybridMBR, sector 0 is a master boot record),
// the primary volume descriptor (16), the El Torito boot record (17, with Options.Boot), the
// terminator, the little- and big-endian path tables, the root directory, the boot catalog
// (with Options.Boot), then each file's data from a sector boundary, in name order, and zeros
// up to Options.Size. File contents are streamed: memory stays flat whatever their size.
func Write(w io.Writer, files []File, opts Options) error {
	return write(w, files, opts, false)
}

func write(w io.Writer, files []File, opts Options, dataOnly bool) error {
	l, err := plan(files, opts)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	head := make([]byte, 0, int(l.dataLBA)*sector)
	sys := make([]byte, 16*sector)
	if b := opts.Boot; b != nil && b.HybridMBR != nil {
		copy(sys, hybridMBR(b, l))
	}
	head = append(head, sys...)
	head = append(head, pvd(l.label, l.isoSectors, l.pathLBA, 10, l.rootLBA, l.rootSectors*sector, l.date, l.mt)...)
	if opts.Boot != nil {
		head = append(head, bootRecord(l.catalogLBA)...)
	}
	term := make([]byte, sector)
	term[0] = 255
	copy(term[1:], "CD001")
	term[6] = 1
	head = append(head, term...)
	head = append(head, pathTable(l.rootLBA, binary.LittleEndian)...)
	head = append(head, pathTable(l.rootLBA, binary.BigEndian)...)
	head = append(head, l.root...)
	if opts.Boot != nil {
		load := opts.Boot.LoadSectors
		if opts.Boot.EFI {
			load = 0
			if n := (l.files[l.bootIndex].size() + 511) / 512; n <= 0xFFFF {
				load = uint16(n)
			}
		}
		head = append(head, bootCatalog(l.fileLBA[l.bootIndex], load, opts.Boot.EFI)...)
	}
	if len(head) != int(l.dataLBA)*sector {
		return fmt.Errorf("internal error: head is %d bytes, expected %d sectors", len(head), l.dataLBA)
	}
	if _, err := bw.Write(head); err != nil {
		return err
	}
	for i, f := range l.files {
		if err := writeData(bw, f, opts.Boot != nil && !opts.Boot.EFI && i == l.bootIndex, l); err != nil {
			return fmt.Errorf("file %s: %w", f.Name, err)
		}
	}
	if !dataOnly {
		if err := writeZeros(bw, l.size-int64(l.isoSectors)*sector); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// WriteData is Write without the zeros that pad a hybrid image to a MiB and the image to
// Options.Size: it writes the first DataSize bytes.
func WriteData(w io.Writer, files []File, opts Options) error {
	return write(w, files, opts, true)
}

// Size returns the number of bytes Write would write.
func Size(files []File, opts Options) (int64, error) {
	l, err := plan(files, opts)
	if err != nil {
		return 0, err
	}
	return l.size, nil
}

// DataSize returns the number of bytes WriteData would write.
func DataSize(files []File, opts Options) (int64, error) {
	l, err := plan(files, opts)
	if err != nil {
		return 0, err
	}
	return int64(l.isoSectors) * sector, nil
}

// layout is where everything of an image goes.
type layout struct {
	files                         []File
	label                         string
	mt                            time.Time
	date                          []byte
	pathLBA, rootLBA, rootSectors uint32
	catalogLBA, dataLBA           uint32
	fileLBA                       []uint32
	isoSectors                    uint32
	bootIndex                     int
	size                          int64
	root                          []byte
}

func (f File) size() int64 {
	if f.Open != nil {
		return f.Size
	}
	return int64(len(f.Data))
}

func plan(files []File, opts Options) (*layout, error) {
	label := opts.Label
	if label == "" {
		label = LabelCIDATA
	}
	if len(label) > 32 {
		return nil, fmt.Errorf("volume label %q is longer than 32 bytes", label)
	}
	mt := opts.ModTime
	if mt.IsZero() {
		mt = time.Unix(0, 0)
	}
	mt = mt.UTC()

	files = slices.Clone(files)
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(isoName(a.Name), isoName(b.Name)) })
	seen := map[string]bool{}
	l := &layout{files: files, label: label, mt: mt, date: dirDate(mt), bootIndex: -1}
	for i, f := range files {
		if f.Name == "" || len(f.Name) > 64 || strings.ContainsAny(f.Name, "/\x00") || f.Name == "." || f.Name == ".." {
			return nil, fmt.Errorf("file name %q: must be 1-64 bytes without '/' or NUL", f.Name)
		}
		if seen[isoName(f.Name)] {
			return nil, fmt.Errorf("file name %q: clashes with another name once mapped to ISO9660 (%s)", f.Name, isoName(f.Name))
		}
		seen[isoName(f.Name)] = true
		if f.size() > 1<<32-1 || f.size() < 0 {
			return nil, fmt.Errorf("file %q: %d bytes do not fit ISO9660 (at most 4 GiB - 1)", f.Name, f.size())
		}
		if b := opts.Boot; b != nil && f.Name == b.File {
			if !b.EFI && (f.Open != nil || len(f.Data) < 64) {
				return nil, fmt.Errorf("boot file %q: must be in memory and at least 64 bytes (it gets a boot info table)", f.Name)
			}
			l.bootIndex = i
		}
	}
	next := uint32(17)
	if b := opts.Boot; b != nil {
		if l.bootIndex < 0 {
			return nil, fmt.Errorf("boot file %q is not among the files", b.File)
		}
		if b.HybridMBR != nil && len(b.HybridMBR) < 432 {
			return nil, fmt.Errorf("hybrid MBR: %d bytes, want at least 432", len(b.HybridMBR))
		}
		next++ // the boot record
	}
	next++ // the terminator
	l.pathLBA = next
	l.rootLBA = next + 2
	// Two passes: the root's size decides where the files start.
	l.fileLBA = make([]uint32, len(files))
	root := l.rootDir(1)
	l.rootSectors = uint32(len(root) / sector)
	next = l.rootLBA + l.rootSectors
	if opts.Boot != nil {
		l.catalogLBA = next
		next++
	}
	l.dataLBA = next
	for i, f := range files {
		l.fileLBA[i] = next
		next += uint32((f.size() + sector - 1) / sector)
	}
	l.root = l.rootDir(l.rootSectors)
	l.isoSectors = next
	l.size = int64(next) * sector
	if b := opts.Boot; b != nil && b.HybridMBR != nil {
		l.size = (l.size + cylinder - 1) / cylinder * cylinder
	}
	if opts.Size > 0 {
		if opts.Boot != nil && opts.Boot.HybridMBR != nil && opts.Size%cylinder != 0 {
			return nil, fmt.Errorf("a size of %d bytes is not a whole number of MiB, as a hybrid image must be", opts.Size)
		}
		if opts.Size < l.size {
			return nil, &TooSmallError{Size: opts.Size, Need: l.size}
		}
		l.size = opts.Size
	}
	if opts.Boot != nil && opts.Boot.HybridMBR != nil && l.size/512 > 1<<32-1 {
		return nil, fmt.Errorf("a hybrid image of %d bytes is too large for an MBR partition (2 TiB)", l.size)
	}
	return l, nil
}

// TooSmallError is returned when Options.Size cannot hold the image.
type TooSmallError struct{ Size, Need int64 }

func (e *TooSmallError) Error() string {
	return fmt.Sprintf("a size of %d bytes is too small: the image needs %d bytes (%d MiB)", e.Size, e.Need, (e.Need+1<<20-1)>>20)
}

// rootDir returns the root directory records, packed into sectors (a record never crosses a
// sector).
func (l *layout) rootDir(rootSectors uint32) []byte {
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
	add(dirRecord([]byte{0}, l.rootLBA, rootSize, true, l.date, dot))
	add(dirRecord([]byte{1}, l.rootLBA, rootSize, true, l.date, pxEntry(0o040755, 2)))
	for i, f := range l.files {
		su := pxEntry(0o100644, 1)
		su = append(su, nmEntry(f.Name)...)
		add(dirRecord([]byte(isoName(f.Name)), l.fileLBA[i], uint32(f.size()), false, l.date, su))
	}
	if pad := len(dir) % sector; pad != 0 {
		dir = append(dir, make([]byte, sector-pad)...)
	}
	return dir
}

func writeData(w io.Writer, f File, boot bool, l *layout) error {
	n := f.size()
	switch {
	case boot:
		b := slices.Clone(f.Data)
		patchBootInfo(b, l.fileLBA[l.bootIndex])
		if _, err := w.Write(b); err != nil {
			return err
		}
	case f.Open != nil:
		r, err := f.Open()
		if err != nil {
			return err
		}
		c, err := io.Copy(w, io.LimitReader(r, n))
		r.Close()
		if err != nil {
			return err
		}
		if c != n {
			return fmt.Errorf("read %d bytes, expected %d", c, n)
		}
	default:
		if _, err := w.Write(f.Data); err != nil {
			return err
		}
	}
	if pad := n % sector; pad != 0 {
		return writeZeros(w, sector-pad)
	}
	return nil
}

var zeros = make([]byte, 64<<10)

func writeZeros(w io.Writer, n int64) error {
	for n > 0 {
		c := min(n, int64(len(zeros)))
		if _, err := w.Write(zeros[:c]); err != nil {
			return err
		}
		n -= c
	}
	return nil
}

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

func pvd(label string, total, pathLBA, ptSize, rootLBA, rootSize uint32, date []byte, mt time.Time) []byte {
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
	copy(b[132:], both32(ptSize))
	binary.LittleEndian.PutUint32(b[140:], pathLBA)
	binary.BigEndian.PutUint32(b[148:], pathLBA+(ptSize+sector-1)/sector)
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
