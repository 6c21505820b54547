package examples

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/mobykit/mobykit/internal/testenv"
	mvm "github.com/mobykit/mobykit/vm"
)

// TestEtcdDataOnPersistentDisk boots examples/etcd-disk.yml twice with the same blank disk:
// the first boot formats it, etcd starts on it and the client writes a key; the second boot
// leaves the disk as it is and etcd, restarted on the same data directory, serves the key.
func TestEtcdDataOnPersistentDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs; skipped with -short")
	}
	testenv.RequireQEMU(t)
	qemuImg := testenv.RequireTool(t, "qemu-img", "qemu-utils")
	prefix := buildExample(t, "etcd-disk")
	disk := filepath.Join(t.TempDir(), "etcd.qcow2")
	if out, err := exec.Command(qemuImg, "create", "-f", "qcow2", disk, "512M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	for _, want := range [][]string{
		{`mobykit init: onboot 000-format done`, `mobykit init: onboot 001-mount done`, `client: ETCDTEST wrote first`},
		{`mobykit init: onboot 000-format failed`, `mobykit init: onboot 001-mount done`, `client: ETCDTEST found first`},
	} {
		v := bootWithDisks(t, prefix, []mvm.DiskSpec{{Path: disk, Format: "qcow2"}})
		at := 0
		for _, re := range want {
			i, _, err := v.con.expect(at, regexp.MustCompile(re), 240*time.Second)
			if err != nil {
				t.Logf("console:\n%s", v.con)
				t.Fatal(err)
			}
			at = i + 1
		}
		if testing.Verbose() {
			t.Logf("console:\n%s", v.con)
		}
		v.shutdown(t, at)
	}
}
