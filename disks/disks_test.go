package disks

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mobykit/mobykit/internal/testenv"
)

const mib = 1 << 20

// fakeSys is a sysfs and /dev tree in a temporary folder; disks are image files.
type fakeSys struct {
	Sys
	t *testing.T
}

func newFakeSys(t *testing.T) *fakeSys {
	root := t.TempDir()
	s := &fakeSys{Sys: Sys{SysDir: filepath.Join(root, "sys"), DevDir: filepath.Join(root, "dev"), MountInfo: filepath.Join(root, "mountinfo")}, t: t}
	for _, d := range []string{"block", "class/block"} {
		if err := os.MkdirAll(filepath.Join(s.SysDir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(s.DevDir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.write("mountinfo", "22 1 0:21 / / rw - rootfs rootfs rw\n")
	return s
}

func (s *fakeSys) write(rel, data string) {
	p := filepath.Join(filepath.Dir(s.SysDir), rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// disk adds a whole disk of size bytes (a sparse image file as its /dev node) and returns
// its device path.
func (s *fakeSys) disk(name string, size int64, ro bool) string {
	roFlag := "0"
	if ro {
		roFlag = "1"
	}
	for _, d := range []string{"sys/block/" + name, "sys/class/block/" + name} {
		s.write(d+"/size", fmt.Sprintf("%d\n", size/SectorSize))
		s.write(d+"/ro", roFlag+"\n")
	}
	dev := filepath.Join(s.DevDir, name)
	f, err := os.Create(dev)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		s.t.Fatal(err)
	}
	f.Close()
	return dev
}

// partition adds a partition's sysfs entry and image file holding data at its start.
func (s *fakeSys) partition(name string, data []byte) string {
	s.write("sys/class/block/"+name+"/partition", "1\n")
	s.write("sys/class/block/"+name+"/size", "65536\n")
	dev := filepath.Join(s.DevDir, name)
	if err := os.WriteFile(dev, append(data, make([]byte, probeSize)...), 0o644); err != nil {
		s.t.Fatal(err)
	}
	return dev
}

// ext4Super is a minimal ext4 superblock region as Probe reads it.
func ext4Super(label string, uuid byte) []byte {
	b := make([]byte, 4096)
	sb := b[1024:]
	binary.LittleEndian.PutUint16(sb[56:], 0xEF53)
	binary.LittleEndian.PutUint32(sb[96:], 0x40|0x200)
	for i := 0; i < 16; i++ {
		sb[104+i] = uuid + byte(i)
	}
	copy(sb[120:136], label)
	return b
}

func writeAt(t *testing.T, path string, data []byte, off int64) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

func sum(t *testing.T, path string) [32]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

type fakeTools struct {
	ran      [][]string
	exitCode map[string]int // program → exit status to fake
}

func (f *fakeTools) Run(name string, args ...string) ([]byte, error) {
	f.ran = append(f.ran, append([]string{name}, args...))
	if c := f.exitCode[name]; c != 0 {
		return nil, exec.Command("sh", "-c", fmt.Sprintf("exit %d", c)).Run()
	}
	return nil, nil
}
func (f *fakeTools) Reread(*os.File) error     { return nil }
func (f *fakeTools) WaitFor(path string) error { return nil }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestFirstBlankSkipsDisksWithContent: format's choice without a device is the first disk
// (by name) with neither a file system nor a partition table, skipping read-only devices
// (the metadata CD), loop devices and partitions.
func TestFirstBlankSkipsDisksWithContent(t *testing.T) {
	s := newFakeSys(t)
	s.disk("loop0", 8*mib, false)
	s.disk("sr0", 8*mib, true)
	s.disk("vdz1", 8*mib, false) // a name LinuxKit's rule reads as a partition
	vda := s.disk("vda", 8*mib, false)
	writeAt(t, vda, ext4Super("root", 1), 0)
	vdb := s.disk("vdb", 8*mib, false)
	writeAt(t, vdb, []byte{0x55, 0xaa}, 510)
	s.disk("vdc", 8*mib, false)
	s.disk("vdd", 8*mib, false)
	disks, err := s.Disks()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range disks {
		names = append(names, d.Name)
	}
	if got := strings.Join(names, " "); got != "vda vdb vdc vdd" {
		t.Fatalf("Disks = %s, want vda vdb vdc vdd", got)
	}
	f := &Formatter{Sys: s.Sys, Tools: &fakeTools{}, Log: quiet}
	d, err := f.FirstBlank(disks)
	if err != nil || d.Name != "vdc" {
		t.Fatalf("FirstBlank = %v, %v; want vdc", d.Name, err)
	}
	_, err = f.FirstBlank(disks[:2])
	if err == nil || !strings.Contains(err.Error(), `vda (ext4 labelled "root"`) || !strings.Contains(err.Error(), "vdb (dos)") {
		t.Fatalf("FirstBlank of non-blank disks: %v", err)
	}
}

// TestFormatDoesNotReformatWithoutForce: a second boot runs format again on a disk that now
// holds a file system; without -force it must refuse, touching nothing and running no mkfs.
func TestFormatDoesNotReformatWithoutForce(t *testing.T) {
	s := newFakeSys(t)
	vda := s.disk("vda", 16*mib, false)
	tools := &fakeTools{}
	f := &Formatter{Sys: s.Sys, Tools: tools, Log: quiet}
	opt := FormatOptions{Type: "ext4", Partition: "dos", Label: "data"}
	part, err := f.Run(opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if part != vda+"1" {
		t.Fatalf("partition %q, want %s1", part, vda)
	}
	want := []string{"mkfs.ext4", "-F", "-O", Ext4Features, "-L", "data", vda + "1"}
	if len(tools.ran) != 1 || strings.Join(tools.ran[0], " ") != strings.Join(want, " ") {
		t.Fatalf("ran %q, want %q", tools.ran, want)
	}
	before := sum(t, vda)
	for _, args := range [][]string{nil, {vda}} {
		if _, err := f.Run(opt, args); err == nil || !strings.Contains(err.Error(), "no eligible disks") {
			t.Fatalf("format %q on a partitioned disk: %v, want a refusal", args, err)
		}
	}
	if len(tools.ran) != 1 || sum(t, vda) != before {
		t.Fatalf("a refused format changed the disk or ran %q", tools.ran[1:])
	}
	// -force formats it again
	if _, err := f.Run(FormatOptions{Type: "xfs", Partition: "gpt", Force: true}, []string{vda}); err != nil {
		t.Fatal(err)
	}
	if got := tools.ran[len(tools.ran)-1]; strings.Join(got, " ") != "mkfs.xfs -f "+vda+"1" {
		t.Fatalf("forced format ran %q", got)
	}
}

// TestForceClearsAFileSystemOnTheWholeDisk: a file system made on the whole disk (no
// table) must not survive next to the new table, or blkid-like probes would still see it.
func TestForceClearsAFileSystemOnTheWholeDisk(t *testing.T) {
	s := newFakeSys(t)
	vda := s.disk("vda", 16*mib, false)
	writeAt(t, vda, ext4Super("old", 1), 0)
	f := &Formatter{Sys: s.Sys, Tools: &fakeTools{}, Log: quiet}
	if _, err := f.Run(FormatOptions{Type: "ext4", Partition: "dos"}, []string{vda}); err == nil {
		t.Fatal("formatted a disk holding ext4 without -force")
	}
	if _, err := f.Run(FormatOptions{Type: "ext4", Partition: "dos", Force: true}, []string{vda}); err != nil {
		t.Fatal(err)
	}
	c, err := ProbeDevice(vda)
	if err != nil || c.Type != "dos" {
		t.Fatalf("after -force the disk probes as %+v, %v; want a bare dos table", c, err)
	}
}

// TestFormatOptionsRefusedBeforeTouchingDisks: bad flags name the flag and nothing is written.
func TestFormatOptionsRefusedBeforeTouchingDisks(t *testing.T) {
	s := newFakeSys(t)
	vda := s.disk("vda", 16*mib, false)
	before := sum(t, vda)
	tools := &fakeTools{}
	f := &Formatter{Sys: s.Sys, Tools: tools, Log: quiet}
	for _, c := range []struct {
		opt  FormatOptions
		want string
	}{
		{FormatOptions{Type: "btrfs", Partition: "dos"}, "-type"},
		{FormatOptions{Type: "ext4", Partition: "bsd"}, "-partition"},
		{FormatOptions{Type: "xfs", Partition: "dos", Label: "thirteen-char"}, "-label"},
	} {
		if _, err := f.Run(c.opt, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %s", c.opt, err, c.want)
		}
	}
	if _, err := f.Run(FormatOptions{Type: "ext4", Partition: "dos"}, []string{filepath.Join(s.DevDir, "nope")}); err == nil {
		t.Error("formatted a device the kernel does not know")
	}
	if sum(t, vda) != before || len(tools.ran) != 0 {
		t.Error("a refused format touched the disk")
	}
}

func TestPartitionTablesRoundTripAndGrow(t *testing.T) {
	for _, kind := range []string{"dos", "gpt"} {
		t.Run(kind, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "disk.img")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			const small, big = 32 * mib / SectorSize, 96 * mib / SectorSize
			if err := f.Truncate(small * SectorSize); err != nil {
				t.Fatal(err)
			}
			if err := WriteTable(f, kind, small, bytes.NewReader(make([]byte, 64))); err != nil {
				t.Fatal(err)
			}
			tab, err := ReadTable(f, small)
			if err != nil {
				t.Fatal(err)
			}
			wantType, wantEnd := "83", uint64(small-1)
			if kind == "gpt" {
				wantType, wantEnd = LinuxGUID, small-34
			}
			if tab.Kind != kind || len(tab.Partitions) != 1 || tab.Partitions[0].Start != FirstSector ||
				tab.Partitions[0].Start+tab.Partitions[0].Size-1 != wantEnd || tab.Partitions[0].Type != wantType {
				t.Fatalf("read back %+v", tab)
			}
			if c, _ := Probe(f); c.Type != kind {
				t.Fatalf("Probe = %q, want %q", c.Type, kind)
			}
			if tab.Growable(small) {
				t.Fatal("a partition that fills the disk is growable")
			}
			if grown, err := Grow(f, tab, small); grown || err != nil {
				t.Fatalf("Grow on a full disk: %v, %v", grown, err)
			}
			// the disk grows
			if err := f.Truncate(big * SectorSize); err != nil {
				t.Fatal(err)
			}
			tab, err = ReadTable(f, big)
			if err != nil || !tab.Growable(big) {
				t.Fatalf("after the disk grew: %+v, %v", tab, err)
			}
			if grown, err := Grow(f, tab, big); !grown || err != nil {
				t.Fatalf("Grow: %v, %v", grown, err)
			}
			tab, err = ReadTable(f, big)
			if err != nil {
				t.Fatal(err)
			}
			wantEnd = big - 1
			if kind == "gpt" {
				wantEnd = big - 34
				h := make([]byte, 8)
				if _, err := f.ReadAt(h, (big-1)*SectorSize); err != nil || string(h) != "EFI PART" {
					t.Fatalf("no backup GPT header at the new last sector: %q %v", h, err)
				}
			}
			if p := tab.Partitions[0]; p.Start != FirstSector || p.Start+p.Size-1 != wantEnd {
				t.Fatalf("grown partition %+v, want it to end at %d", p, wantEnd)
			}
			if blkid, err := exec.LookPath("blkid"); err == nil {
				out, err := exec.Command(blkid, "-p", "-o", "value", "-s", "PTTYPE", path).Output()
				if err != nil || strings.TrimSpace(string(out)) != kind {
					t.Fatalf("blkid -p sees %q, %v; want %s", out, err, kind)
				}
			}
		})
	}
}

// TestReadTableRefusesCorruptGPT: a GPT whose checksums do not match is an error, not a
// table extend would rewrite.
func TestReadTableRefusesCorruptGPT(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const n = 16 * mib / SectorSize
	f.Truncate(n * SectorSize)
	if err := WriteTable(f, "gpt", n, bytes.NewReader(make([]byte, 64))); err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{1}, 2*SectorSize+40) // an entry's end
	if _, err := ReadTable(f, n); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("ReadTable of a corrupt GPT: %v", err)
	}
}

func TestGrowRefusesWhatExtendSkips(t *testing.T) {
	for _, c := range []struct {
		name string
		tab  *Table
	}{
		{"two partitions", &Table{Kind: "dos", Partitions: []Partition{{1, 2048, 10, "83"}, {2, 4096, 10, "83"}}}},
		{"not Linux", &Table{Kind: "dos", Partitions: []Partition{{1, 2048, 10, "7"}}}},
	} {
		if _, err := Grow(nil, c.tab, 1<<20); !errors.Is(err, ErrNotGrowable) {
			t.Errorf("%s: %v, want ErrNotGrowable", c.name, err)
		}
	}
}

func TestPartitionDevice(t *testing.T) {
	for disk, want := range map[string]string{"/dev/vda": "/dev/vda1", "/dev/nvme0n1": "/dev/nvme0n1p1", "/dev/sdb": "/dev/sdb1", "/dev/mmcblk0": "/dev/mmcblk0p1"} {
		if got := PartitionDevice(disk, 1); got != want {
			t.Errorf("PartitionDevice(%s) = %s, want %s", disk, got, want)
		}
	}
}

func TestProbeRealExt4AndXFS(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ mkfs, typ, label string }{
		{"mke2fs", "ext4", "data"},
		{"mkfs.xfs", "xfs", "xdata"},
	} {
		pkg := map[string]string{"mke2fs": "e2fsprogs", "mkfs.xfs": "xfsprogs"}[c.mkfs]
		tool := testenv.RequireTool(t, c.mkfs, pkg)
		img := filepath.Join(dir, c.typ+".img")
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Truncate(img, 300*mib)
		args := []string{"-L", c.label, img}
		if c.typ == "ext4" {
			args = append([]string{"-t", "ext4", "-F", "-U", "0fc63daf-8483-4772-8e79-3d69d8477de4"}, args...)
		}
		if out, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", c.mkfs, err, out)
		}
		got, err := ProbeDevice(img)
		if err != nil || got.Type != c.typ || got.Label != c.label {
			t.Fatalf("%s image probes as %+v, %v", c.typ, got, err)
		}
		if c.typ == "ext4" && got.UUID != "0fc63daf-8483-4772-8e79-3d69d8477de4" {
			t.Fatalf("ext4 UUID %q", got.UUID)
		}
	}
}

func TestProbeSyntheticSignatures(t *testing.T) {
	xfs := make([]byte, 4096)
	copy(xfs, "XFSB")
	copy(xfs[108:], "xl")
	swap := make([]byte, 4096)
	if err := WriteSwapHeader(sliceWriter(swap), 40960, 4096, bytes.NewReader(make([]byte, 16))); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		b     []byte
		typ   string
		label string
	}{
		{xfs, "xfs", "xl"},
		{swap, "swap", ""},
		{ext4Super("e", 0), "ext4", "e"},
		{make([]byte, 4096), "", ""},
		{[]byte("short"), "", ""},
	} {
		got := probeBytes(c.b)
		if got.Type != c.typ || got.Label != c.label {
			t.Errorf("probe %q...: %+v, want %s %q", c.b[:4], got, c.typ, c.label)
		}
	}
}

type sliceWriter []byte

func (s sliceWriter) WriteAt(p []byte, off int64) (int, error) {
	if int(off)+len(p) > len(s) {
		return 0, io.ErrShortWrite
	}
	return copy(s[off:], p), nil
}

// TestMountFindsByLabelUUIDAndFirstUnmounted follows mountie's choices on a fake tree.
func TestMountFindsByLabelUUIDAndFirstUnmounted(t *testing.T) {
	s := newFakeSys(t)
	vda := s.disk("vda", 16*mib, false)
	vdb := s.disk("vdb", 16*mib, false)
	for _, d := range []string{vda, vdb} {
		f, _ := os.OpenFile(d, os.O_RDWR, 0)
		if err := WriteTable(f, "dos", 16*mib/SectorSize, bytes.NewReader(make([]byte, 64))); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	s.partition("vda1", ext4Super("root", 0x10))
	s.partition("vdb1", ext4Super("etcd", 0x20))
	if d, err := s.FindBy("etcd", ""); err != nil || d != vdb+"1" {
		t.Fatalf("FindBy label: %q, %v", d, err)
	}
	if d, err := s.FindBy("", "10111213-1415-1617-1819-1A1B1C1D1E1F"); err != nil || d != vda+"1" {
		t.Fatalf("FindBy UUID: %q, %v", d, err)
	}
	if _, err := s.FindBy("missing", ""); err == nil || !strings.Contains(err.Error(), `"missing"`) {
		t.Fatalf("FindBy a missing label: %v", err)
	}
	s.write("mountinfo", "22 1 0:21 / / rw - rootfs rootfs rw\n30 22 254:1 / /var/lib rw,relatime shared:1 - ext4 "+vda+"1 rw\n")
	if d, err := s.FirstLinuxPartition(quiet); err != nil || d != vdb+"1" {
		t.Fatalf("FirstLinuxPartition with vda1 mounted: %q, %v", d, err)
	}
	if err := s.DevLinks(); err != nil {
		t.Fatal(err)
	}
	if l, err := os.Readlink(filepath.Join(s.DevDir, "disk", "by-label", "etcd")); err != nil || l != "../../vdb1" {
		t.Fatalf("by-label link %q, %v", l, err)
	}
	pts, err := s.MountPoints()
	if err != nil || !pts["/var/lib"] {
		t.Fatalf("MountPoints %v, %v", pts, err)
	}
}

func TestSwapArgs(t *testing.T) {
	o, err := ParseSwapArgs([]string{"--path", "/var/external/swap", "--size", "2M", "--condition", "part:/var/external", "--condition", "partsize:/var/external:1G:true"})
	if err != nil || o.Size != 2*mib || len(o.Conditions) != 2 {
		t.Fatalf("%+v, %v", o, err)
	}
	mounted := map[string]bool{"/var/external": true}
	size := func(string) (int64, error) { return 2 << 30, nil }
	if ok, err := o.CheckConditions(mounted, size); !ok || err != nil {
		t.Fatalf("conditions met: %v, %v", ok, err)
	}
	if ok, err := o.CheckConditions(map[string]bool{}, size); ok || err != nil {
		t.Fatalf("unmet optional condition: %v, %v; want no swap and no error", ok, err)
	}
	if ok, err := o.CheckConditions(mounted, func(string) (int64, error) { return mib, nil }); ok || err == nil {
		t.Fatalf("unmet required condition: %v, %v; want an error", ok, err)
	}
	for _, bad := range [][]string{
		{"--path", "/etc/swap", "--size", "1G"},
		{"--path", "/var/../etc/swap", "--size", "1G"},
		{"--path", "/var/swap"},
		{"--path", "/var/swap", "--size", "1T"},
		{"--path", "/var/swap", "--size", "-1"},
		{"--path", "/var/swap", "--size", "1G", "--encrypt"},
		{"--path", "/var/swap", "--size", "1G", "--condition", "disk:/x"},
		{"--path", "/var/swap", "--size", "1G", "--bogus"},
		{"--path"},
	} {
		if _, err := ParseSwapArgs(bad); err == nil {
			t.Errorf("ParseSwapArgs(%q) accepted", bad)
		}
	}
}

func TestMakeSwapFileKeepsAFileOfTheRightSize(t *testing.T) {
	p := filepath.Join(t.TempDir(), "swap")
	made, err := MakeSwapFile(p, mib, 4096, nil)
	if err != nil || !made {
		t.Fatalf("%v %v", made, err)
	}
	c, err := ProbeDevice(p)
	if err != nil || c.Type != "swap" || c.UUID == "" {
		t.Fatalf("swap file probes as %+v, %v", c, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if made, err := MakeSwapFile(p, mib, 4096, nil); made || err != nil {
		t.Fatalf("second MakeSwapFile: %v %v, want the file kept", made, err)
	}
	if made, err := MakeSwapFile(p, 2*mib, 4096, nil); !made || err != nil {
		t.Fatalf("MakeSwapFile with a new size: %v %v", made, err)
	}
	if mkswap, err := exec.LookPath("swaplabel"); err == nil {
		if out, err := exec.Command(mkswap, p).CombinedOutput(); err != nil {
			t.Fatalf("swaplabel does not read the header: %v %s", err, out)
		}
	}
}

// TestExtendGrowsAfterTheDiskGrew runs extend's whole path on an image file whose disk grew:
// e2fsck before and after, the table rewritten to the new end, resize2fs on partition 1; a
// second run finds no free space and runs nothing.
func TestExtendGrowsAfterTheDiskGrew(t *testing.T) {
	s := newFakeSys(t)
	vda := s.disk("vda", 32*mib, false)
	f := &Formatter{Sys: s.Sys, Tools: &fakeTools{}, Log: quiet}
	if _, err := f.Run(FormatOptions{Type: "ext4", Partition: "gpt"}, nil); err != nil {
		t.Fatal(err)
	}
	s.partition("vda1", ext4Super("data", 1))
	if err := os.Truncate(vda, 64*mib); err != nil {
		t.Fatal(err)
	}
	s.write("sys/block/vda/size", fmt.Sprint(64*mib/SectorSize))
	s.write("sys/class/block/vda/size", fmt.Sprint(64*mib/SectorSize))
	tools := &fakeTools{exitCode: map[string]int{"e2fsck": 1}} // 1: errors fixed, still success
	e := &Extender{Sys: s.Sys, Tools: tools, Log: quiet}
	if err := e.Run("ext4", true, nil); err != nil {
		t.Fatal(err)
	}
	var ran []string
	for _, r := range tools.ran {
		ran = append(ran, strings.Join(r, " "))
	}
	p := vda + "1"
	want := []string{"e2fsck -p " + p, "e2fsck -p -f " + p, "resize2fs " + p, "e2fsck -p " + p}
	if strings.Join(ran, "; ") != strings.Join(want, "; ") {
		t.Fatalf("ran %q, want %q", ran, want)
	}
	fd, _ := os.Open(vda)
	defer fd.Close()
	tab, err := ReadTable(fd, 64*mib/SectorSize)
	if err != nil || tab.Partitions[0].Start+tab.Partitions[0].Size-1 != 64*mib/SectorSize-34 {
		t.Fatalf("table after extend: %+v, %v", tab, err)
	}
	tools.ran = nil
	if err := e.Run("ext4", true, []string{vda}); err != nil || len(tools.ran) != 0 {
		t.Fatalf("second extend: %v, ran %q", err, tools.ran)
	}
	if err := e.Run("xfs", true, nil); err != nil {
		t.Fatalf("-type xfs on a full disk: %v (LinuxKit checks free space first)", err)
	}
	os.Truncate(vda, 96*mib)
	s.write("sys/block/vda/size", fmt.Sprint(96*mib/SectorSize))
	if err := e.Run("xfs", true, nil); err == nil || !strings.Contains(err.Error(), `holds "ext4", not xfs`) {
		t.Fatalf("-type xfs on ext4: %v", err)
	}
}

func TestMountSource(t *testing.T) {
	s := newFakeSys(t)
	if d, err := s.MountSource("/dev/vdq", "x", "", quiet); d != "/dev/vdq" || err != nil {
		t.Fatalf("an explicit device: %q %v", d, err)
	}
	if _, err := s.MountSource("", "", "", quiet); err == nil || !strings.Contains(err.Error(), "no eligible disks") {
		t.Fatalf("no disks: %v", err)
	}
}
