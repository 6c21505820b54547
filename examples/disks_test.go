package examples

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mobykit/mobykit/assembler"
	"github.com/mobykit/mobykit/internal/testenv"
	mvm "github.com/mobykit/mobykit/vm"
)

// TestDiskPersistsAcrossBoots boots examples/disks.yml three times with the same blank qcow2
// disk. First boot: format makes ext4 labelled DATA, mount mounts it by label, swap makes a
// swap file, the counter writes 1. The disk is then made 64 MiB bigger. Second boot: format
// refuses (the disk is not blank and no -force), extend grows the partition and the file
// system, and the counter reads what the first boot wrote. Third boot, with format
// `-force -type xfs /dev/vda`: the disk is reformatted (XFS, counter back at 1).
func TestDiskPersistsAcrossBoots(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs; skipped with -short")
	}
	testenv.RequireQEMU(t)
	qemuImg := testenv.RequireTool(t, "qemu-img", "qemu-utils")
	prefix := buildExample(t, "disks")
	disk := filepath.Join(t.TempDir(), "data.qcow2")
	if out, err := exec.Command(qemuImg, "create", "-f", "qcow2", disk, "256M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	disks := []mvm.DiskSpec{{Path: disk, Format: "qcow2"}}

	line := regexp.MustCompile(`DISKTEST boots=(\d+) fs=(\S+) kb=(\d+) swaps=(\d+)`)
	run := func(prefix string, want []string) []string {
		t.Helper()
		v := bootWithDisks(t, prefix, disks)
		defer func() {
			if t.Failed() || testing.Verbose() {
				t.Logf("console:\n%s", v.con)
			}
		}()
		at := 0
		for _, re := range want {
			i, _, err := v.con.expect(at, regexp.MustCompile(re), 180*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			at = i + 1
		}
		i, _, err := v.con.expect(0, line, 180*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		v.con.mu.Lock()
		m := line.FindStringSubmatch(v.con.lines[i].text)
		v.con.mu.Unlock()
		v.shutdown(t, at)
		return m
	}

	first := run(prefix, []string{
		`mobykit init: onboot 000-format done`,
		`no free space on device to extend partition`,
		`mobykit init: onboot 002-mount done`,
		`swap enabled`,
	})
	if first[1] != "1" || first[2] != "ext4" || first[4] != "1" {
		t.Fatalf("first boot: %q, want boots=1 on ext4 with one swap area", first[0])
	}

	if out, err := exec.Command(qemuImg, "resize", disk, "320M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img resize: %v\n%s", err, out)
	}
	second := run(prefix, []string{
		`format: no eligible disks found: every disk has content: /dev/vda \(dos\)`,
		`mobykit init: onboot 000-format failed`,
		`successfully resized`,
		`mobykit init: onboot 001-extend done`,
	})
	if second[1] != "2" || second[2] != "ext4" {
		t.Fatalf("second boot: %q, want boots=2 on ext4: the disk was reformatted or not mounted", second[0])
	}
	kb1, _ := strconv.Atoi(first[3])
	kb2, _ := strconv.Atoi(second[3])
	if kb2 < kb1+50*1024 {
		t.Fatalf("file system of %d KiB after extend, %d KiB before: not grown by the 64 MiB added", kb2, kb1)
	}

	// the same spec with a forced format as XFS
	spec, err := os.ReadFile("disks.yml")
	if err != nil {
		t.Fatal(err)
	}
	forced := strings.Replace(string(spec), `["/usr/bin/format", "-label", "DATA"]`,
		`["/usr/bin/format", "-force", "-type", "xfs", "-label", "DATA", "/dev/vda"]`, 1)
	forced = strings.Replace(forced, "image: mobykit/extend:latest", "image: mobykit/extend:latest\n    command: [\"/usr/bin/extend\", \"-type\", \"xfs\"]", 1)
	if forced == string(spec) {
		t.Fatal("disks.yml no longer has the format command this test rewrites")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "forced.yml"), []byte(forced), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := assembler.BuildFiles(context.Background(), []string{filepath.Join(dir, "forced.yml")}, assembler.Options{
		Name: "forced", OutputDir: dir, CacheDir: buildImages(t),
	}); err != nil {
		t.Fatal(err)
	}
	third := run(filepath.Join(dir, "forced"), []string{`mobykit init: onboot 000-format done`})
	if third[1] != "1" || third[2] != "xfs" {
		t.Fatalf("after -force: %q, want boots=1 on a fresh xfs", third[0])
	}
}
