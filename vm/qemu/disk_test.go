package qemu

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mobykit/mobykit/internal/testenv"
)

// TestStateDiskKeepsExisting: a disk already at the path (a persistent disk from an earlier
// VM) is used as it is, and a missing one is created.
func TestStateDiskKeepsExisting(t *testing.T) {
	testenv.RequireTool(t, "qemu-img", "qemu-utils")
	p := filepath.Join(t.TempDir(), "disk0.qcow2")
	if err := CreateStateDisk(p, "qcow2", "16M"); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(p)
	if err := CreateStateDisk(p, "qcow2", "32M"); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(p)
	if string(before) != string(after) {
		t.Error("an existing disk was rewritten")
	}
}

// TestStateDiskSymlinkRefused: a symlink planted in a state folder where a persistent disk
// goes would hand the VM another file (or a host disk): refused, naming the path.
func TestStateDiskSymlinkRefused(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "secret")
	os.WriteFile(target, []byte("host data"), 0o600)
	p := filepath.Join(dir, "disk0.qcow2")
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	err := CreateStateDisk(p, "qcow2", "16M")
	if err == nil || !strings.Contains(err.Error(), "symlink") || !strings.Contains(err.Error(), p) {
		t.Fatalf("CreateStateDisk over a symlink: %v, want a refusal naming the symlink", err)
	}
	if err := CreateStateDisk(dir, "qcow2", "16M"); err == nil || !strings.Contains(err.Error(), "folder") {
		t.Fatalf("CreateStateDisk over a folder: %v, want a refusal", err)
	}
}

// TestStateDiskBackingFileRefused: a qcow2 image planted where a persistent disk goes, whose
// header names a backing file, would make QEMU open that file for the guest: refused.
func TestStateDiskBackingFileRefused(t *testing.T) {
	testenv.RequireTool(t, "qemu-img", "qemu-utils")
	dir := t.TempDir()
	base := filepath.Join(dir, "host.raw")
	os.WriteFile(base, make([]byte, 1<<20), 0o600)
	p := filepath.Join(dir, "disk0.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", p).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	err := CreateStateDisk(p, "qcow2", "16M")
	if err == nil || !strings.Contains(err.Error(), "backing file") || !strings.Contains(err.Error(), base) {
		t.Fatalf("CreateStateDisk over a qcow2 with a backing file: %v, want a refusal naming it", err)
	}
	// an external data file, likewise
	q := filepath.Join(dir, "disk1.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-o", "data_file="+base+",data_file_raw=on", q, "1M").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	err = CreateStateDisk(q, "qcow2", "16M")
	if err == nil || !strings.Contains(err.Error(), "data file") {
		t.Fatalf("CreateStateDisk over a qcow2 with an external data file: %v, want a refusal", err)
	}
}
