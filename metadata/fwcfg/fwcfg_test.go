package fwcfg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/mobykit/mobykit/metadata/config"
)

// fakeDevice implements the fw_cfg selector/data protocol over a set of named files, laid out
// the way QEMU lays them out (signature at 0, file directory at 0x19, files from 0x20).
type fakeDevice struct {
	items map[uint16][]byte
	cur   *bytes.Reader
}

func newFake(sig string, files map[string][]byte) *fakeDevice {
	d := &fakeDevice{items: map[uint16][]byte{keySignature: []byte(sig)}}
	var names []string
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	var dir bytes.Buffer
	binary.Write(&dir, binary.BigEndian, uint32(len(names)))
	for i, n := range names {
		key := uint16(0x20 + i)
		d.items[key] = files[n]
		var name [maxName]byte
		copy(name[:], n)
		binary.Write(&dir, binary.BigEndian, struct {
			Size     uint32
			Select   uint16
			Reserved uint16
			Name     [maxName]byte
		}{uint32(len(files[n])), key, 0, name})
	}
	d.items[keyFileDir] = dir.Bytes()
	return d
}

func (d *fakeDevice) Select(key uint16) { d.cur = bytes.NewReader(d.items[key]) }
func (d *fakeDevice) Read(p []byte) (int, error) {
	if d.cur == nil {
		return 0, errors.New("nothing selected")
	}
	return d.cur.Read(p)
}

func TestReadDevice(t *testing.T) {
	files := map[string][]byte{
		"etc/boot-fail-wait": {0, 0, 0, 0},
		UserdataName:         []byte(`{"hostname":{"content":"vm"}}`),
		"opt/other":          []byte("x"),
	}
	got, err := ReadDevice(newFake("QEMU", files), UserdataName, config.MaxData)
	if err != nil || string(got) != string(files[UserdataName]) {
		t.Fatalf("ReadDevice = %q, %v", got, err)
	}
	if _, err := ReadDevice(newFake("QEMU", files), "opt/missing", config.MaxData); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing entry: error %v, want ErrNotFound", err)
	}
	if _, err := ReadDevice(newFake("\xff\xff\xff\xff", files), UserdataName, config.MaxData); !errors.Is(err, ErrNotFound) {
		t.Errorf("no signature: error %v, want ErrNotFound", err)
	}
}

func TestReadSysfs(t *testing.T) {
	root := t.TempDir()
	if _, err := ReadSysfs(root, UserdataName, config.MaxData); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no by_name: error %v, want ErrNotFound", err)
	}
	dir := filepath.Join(root, "by_name", "opt", "com.mobykit", "userdata")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSysfs(root, UserdataName, config.MaxData); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no raw: error %v, want ErrNotFound", err)
	}
	os.WriteFile(filepath.Join(dir, "raw"), []byte("data"), 0o444)
	got, err := ReadSysfs(root, UserdataName, config.MaxData)
	if err != nil || string(got) != "data" {
		t.Fatalf("ReadSysfs = %q, %v", got, err)
	}
	if _, err := ReadSysfs(root, "../../etc/passwd", config.MaxData); err == nil {
		t.Fatal("a name outside opt/ was accepted")
	}
}

func TestQEMUArgs(t *testing.T) {
	args, err := QEMUArgs(UserdataName, "/tmp/a,b/userdata")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-fw_cfg", "name=opt/com.mobykit/userdata,file=/tmp/a,,b/userdata"}
	if !slices.Equal(args, want) {
		t.Fatalf("QEMUArgs = %q, want %q", args, want)
	}
	for _, bad := range []string{"etc/x", "opt/a,b", "opt/" + string(bytes.Repeat([]byte("x"), 60))} {
		if _, err := QEMUArgs(bad, "/f"); err == nil {
			t.Errorf("QEMUArgs(%q) accepted", bad)
		}
	}
	dir := t.TempDir()
	p, args, err := WritePayload(dir, []byte("ud"))
	if err != nil || args[1] != "name="+UserdataName+",file="+p {
		t.Fatalf("WritePayload = %q %q %v", p, args, err)
	}
	if b, _ := os.ReadFile(p); string(b) != "ud" {
		t.Fatalf("payload holds %q", b)
	}
}

func TestReadPortsRefusesNonQEMU(t *testing.T) {
	dmi := t.TempDir()
	os.WriteFile(filepath.Join(dmi, "sys_vendor"), []byte("Amazon EC2\n"), 0o644)
	if _, err := ReadPorts(dmi, UserdataName, config.MaxData); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ReadPorts on non-QEMU DMI: %v, want ErrNotFound without touching ports", err)
	}
}

// FuzzReadDevice: whatever the fw_cfg file directory holds, the reader neither panics nor
// allocates without bound.
func FuzzReadDevice(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 4, 0, 0x20, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, dir []byte) {
		d := newFake("QEMU", map[string][]byte{UserdataName: []byte("x")})
		d.items[keyFileDir] = dir
		ReadDevice(d, UserdataName, config.MaxData)
	})
}

// TestFwCfgOversizeRefused: the size of an entry is the device's word. One over the limit is
// refused, naming the entry and the limit: through sysfs before it is read, and through the I/O
// ports before a buffer of the claimed size is allocated.
func TestFwCfgOversizeRefused(t *testing.T) {
	const limit = 1 << 20
	want := "over the 1048576-byte limit"

	root := t.TempDir()
	dir := filepath.Join(root, "by_name", "opt", "com.mobykit", "userdata")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "raw"), make([]byte, limit+1), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadSysfs(root, UserdataName, limit)
	if !config.IsTooLarge(err) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), UserdataName) {
		t.Errorf("sysfs: %v", err)
	}

	// The directory claims 60 MiB; the device holds 4 bytes. Nothing near the claim may be
	// allocated.
	d := newFake("QEMU", map[string][]byte{UserdataName: []byte("tiny")})
	dirBytes := d.items[keyFileDir]
	binary.BigEndian.PutUint32(dirBytes[4:], 60<<20)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = ReadDevice(d, UserdataName, limit)
	runtime.ReadMemStats(&after)
	if !config.IsTooLarge(err) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "62914560 bytes") {
		t.Errorf("device: %v", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("ReadDevice allocated %d bytes for an entry it refused", got)
	}
}
