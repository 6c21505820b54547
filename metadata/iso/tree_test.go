package iso

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

type treeFile struct {
	n    *Node
	data string
}

// sampleTree has nested folders, a hard link, symbolic links (absolute, relative, long),
// devices, a name longer than a directory record holds (continued in a CE area), names that
// clash once mapped to ISO 9660, a folder of 300 entries, and other owners.
func sampleTree() (*Node, []treeFile) {
	var files []treeFile
	reg := func(mode uint32, data string) *Node {
		n := &Node{Mode: sIFREG | mode, Size: int64(len(data))}
		if data != "" {
			files = append(files, treeFile{n, data})
		}
		return n
	}
	dir := func(c ...Child) *Node { return &Node{Mode: sIFDIR | 0o755, Children: c} }
	shared := reg(0o755, "busybox")
	long := strings.Repeat("a-very-long-name-", 14) // 238 bytes
	many := dir()
	for i := range 300 {
		many.Children = append(many.Children, Child{fmt.Sprintf("entry-%d.txt", i), reg(0o644, fmt.Sprint(i))})
	}
	owned := reg(0o600, "secret")
	owned.UID, owned.GID = 1000, 100
	root := dir(
		Child{"bin", dir(Child{"busybox", shared}, Child{"sh", shared})},
		Child{"etc", dir(
			Child{"a.b.c", reg(0o644, "dots")},
			Child{"a_b.c", reg(0o644, "underscore")},
			Child{"Hosts", reg(0o644, "upper")},
			Child{"hosts", reg(0o644, "lower")},
			Child{"owned", owned},
			Child{"empty", reg(0o644, "")},
			Child{long, reg(0o644, "long name")},
			Child{"deep", dir(Child{"er", dir(Child{"est", reg(0o644, "deep")})})},
		)},
		Child{"init", &Node{Mode: sIFLNK | 0o777, Target: "/bin/busybox"}},
		Child{"rel", &Node{Mode: sIFLNK | 0o777, Target: "../etc/./hosts"}},
		Child{"longlink", &Node{Mode: sIFLNK | 0o777, Target: "/" + strings.Repeat("x/", 150) + long}},
		Child{"dev", dir(
			Child{"null", &Node{Mode: sIFCHR | 0o666, DevMajor: 1, DevMinor: 3}},
			Child{"sda", &Node{Mode: sIFBLK | 0o660, DevMajor: 8, DevMinor: 0}},
		)},
		Child{"many", many},
	)
	return root, files
}

func writeTree(t *testing.T) []byte {
	root, files := sampleTree()
	var order []*Node
	for _, f := range files {
		order = append(order, f.n)
	}
	var buf bytes.Buffer
	err := WriteTree(&buf, root, order, Options{Label: "ROOTFS"}, func(put func(*Node, io.Reader) error) error {
		for _, f := range files {
			if err := put(f.n, strings.NewReader(f.data)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestTreeReproducible(t *testing.T) {
	if !bytes.Equal(writeTree(t), writeTree(t)) {
		t.Fatal("two writes of the same tree differ")
	}
}

// TestTreeReadBack extracts the image with xorriso (Rock Ridge) and checks every file.
func TestTreeReadBack(t *testing.T) {
	xorriso, err := exec.LookPath("xorriso")
	if err != nil {
		t.Skip("xorriso not installed (apt-get install xorriso); skipping")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "tree.iso")
	os.WriteFile(img, writeTree(t), 0o644)
	out := filepath.Join(dir, "x")
	if o, err := exec.Command(xorriso, "-osirrox", "on", "-indev", img, "-extract", "/", out).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v\n%s", err, o)
	}
	long := strings.Repeat("a-very-long-name-", 14)
	for p, want := range map[string]string{
		"bin/busybox": "busybox", "bin/sh": "busybox", "etc/a.b.c": "dots", "etc/a_b.c": "underscore",
		"etc/Hosts": "upper", "etc/hosts": "lower", "etc/owned": "secret", "etc/empty": "",
		"etc/" + long: "long name", "etc/deep/er/est": "deep", "many/entry-299.txt": "299", "many/entry-0.txt": "0",
	} {
		got, err := os.ReadFile(filepath.Join(out, p))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", p, got, err, want)
		}
	}
	for p, want := range map[string]string{"init": "/bin/busybox", "rel": "../etc/./hosts", "longlink": "/" + strings.Repeat("x/", 150) + long} {
		if got, err := os.Readlink(filepath.Join(out, p)); got != want {
			t.Errorf("%s -> %q, %v; want %q", p, got, err, want)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(out, "etc/owned"), &st); err != nil || st.Uid != 1000 || st.Gid != 100 || st.Mode&0o7777 != 0o600 {
		t.Errorf("etc/owned: %+v, %v", st, err)
	}
	dev, _ := exec.Command(xorriso, "-indev", img, "-lsl", "/dev").CombinedOutput()
	if !regexp.MustCompile(`crw-rw-rw- +1 0 +0 +1, *3 .*'null'`).Match(dev) || !regexp.MustCompile(`brw-rw---- +1 0 +0 +8, *0 .*'sda'`).Match(dev) {
		t.Errorf("devices:\n%s", dev)
	}
	if ents, _ := os.ReadDir(filepath.Join(out, "many")); len(ents) != 300 {
		t.Errorf("many: %d entries", len(ents))
	}
	lba, _ := exec.Command(xorriso, "-indev", img, "-find", "/bin", "-type", "f", "-exec", "report_lba").CombinedOutput()
	m := regexp.MustCompile(`File data lba: +0 , +(\d+) ,.*'/bin/(busybox|sh)'`).FindAllSubmatch(lba, -1)
	if len(m) != 2 || string(m[0][1]) != string(m[1][1]) {
		t.Errorf("bin/busybox and bin/sh do not share their data:\n%s", lba)
	}
}

func TestTreeRefusals(t *testing.T) {
	noop := func(func(*Node, io.Reader) error) error { return nil }
	f := &Node{Mode: sIFREG | 0o644, Size: 3}
	root := &Node{Mode: sIFDIR | 0o755, Children: []Child{{"f", f}}}
	if err := WriteTree(io.Discard, root, nil, Options{}, noop); err == nil || !strings.Contains(err.Error(), "missing from order") {
		t.Errorf("file missing from order: %v", err)
	}
	root = &Node{Mode: sIFDIR | 0o755, Children: []Child{{"f", f}}}
	if err := WriteTree(io.Discard, root, []*Node{f}, Options{}, noop); err == nil || !strings.Contains(err.Error(), "0 files of 1") {
		t.Errorf("contents not given: %v", err)
	}
	for _, name := range []string{"", "..", "a/b", strings.Repeat("x", 256)} {
		root := &Node{Mode: sIFDIR | 0o755, Children: []Child{{name, &Node{Mode: sIFLNK, Target: "x"}}}}
		if err := WriteTree(io.Discard, root, nil, Options{}, noop); err == nil || !strings.Contains(err.Error(), "bad name") {
			t.Errorf("name %q: %v", name, err)
		}
	}
	big := &Node{Mode: sIFREG | 0o644, Size: 1 << 32}
	root = &Node{Mode: sIFDIR | 0o755, Children: []Child{{"big", big}}}
	if err := WriteTree(io.Discard, root, []*Node{big}, Options{}, noop); err == nil || !strings.Contains(err.Error(), "4 GiB") {
		t.Errorf("4 GiB file: %v", err)
	}
}
