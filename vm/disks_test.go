package vm

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mobykit/mobykit/spi"
)

func TestInstanceKey(t *testing.T) {
	l, empty := spi.LogicalID("10.0.0.5"), spi.LogicalID("")
	for _, tc := range []struct {
		spec     spi.Spec
		key, lid string
	}{
		{spi.Spec{}, "x-1", ""},
		{spi.Spec{LogicalID: &empty}, "x-1", ""},
		{spi.Spec{LogicalID: &l}, "10.0.0.5", "10.0.0.5"},
	} {
		if key, lid := InstanceKey("x-1", tc.spec); key != tc.key || lid != tc.lid {
			t.Errorf("InstanceKey(x-1, %v) = %q, %q; want %q, %q", tc.spec.LogicalID, key, lid, tc.key, tc.lid)
		}
	}
}

func TestDiskPath(t *testing.T) {
	root := t.TempDir()
	dir := Dir(filepath.Join(root, "instances", "x-1"))
	lid := func(s string) spi.Spec { l := spi.LogicalID(s); return spi.Spec{LogicalID: &l} }
	for _, tc := range []struct {
		name       string
		spec       spi.Spec
		persistent bool
		want, err  string
	}{
		{"ephemeral", spi.Spec{}, false, dir.Path("disks/disk0.img"), ""},
		{"persistent without a logical ID", spi.Spec{}, true, dir.Path("disks/disk0.img"), ""},
		{"persistent with an empty logical ID", lid(""), true, dir.Path("disks/disk0.img"), ""},
		{"not persistent with a logical ID", lid("10.0.0.5"), false, dir.Path("disks/disk0.img"), ""},
		{"persistent", lid("10.0.0.5"), true, filepath.Join(root, "disks", "10.0.0.5", "disk0.img"), ""},
		{"escaping logical ID", lid("../../etc"), true, "", "persistent disk: logical ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DiskPath(root, dir, tc.spec, "disk0.img", tc.persistent)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("DiskPath = %q, %v; want an error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("DiskPath = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestCreateRawDisk(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "disks", "a", "disk.img")
	if err := CreateRawDisk(p, 3<<20); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Size() != 3<<20 || !fi.Mode().IsRegular() {
		t.Fatalf("created disk: %v %v", fi, err)
	}
	if fi, _ := os.Stat(filepath.Dir(p)); fi.Mode().Perm() != 0o700 {
		t.Errorf("disk folder mode %v, want 0700", fi.Mode().Perm())
	}
	// An existing disk is kept as it is: data and size.
	if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CreateRawDisk(p, 3<<20); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "data" {
		t.Errorf("existing disk rewritten: %q", b)
	}
	// A symlink where the disk should be is refused, not followed.
	target := filepath.Join(dir, "secret")
	if err := os.WriteFile(target, []byte("host file"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "disks", "b.img")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := CreateRawDisk(link, 1<<20); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("CreateRawDisk on a symlink: %v, want a refusal", err)
	}
}

// TestOpenInstances: the plugin's backend is made for the absolute root and the Store under
// it (instances/, closed to other users); IDs take the prefix; a nil logger is the default.
func TestOpenInstances(t *testing.T) {
	t.Chdir(t.TempDir())
	var gotRoot string
	var gotStore Store
	be := &shBackend{}
	in, err := OpenInstances("plugin", "sh-", nil, func(root string, st Store, log *slog.Logger) Backend {
		if log == nil {
			t.Error("backend given a nil logger")
		}
		gotRoot, gotStore = root, st
		return be
	})
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if want := filepath.Join(wd, "plugin"); gotRoot != want || gotStore.Root != filepath.Join(want, "instances") || in.Store != gotStore {
		t.Errorf("backend made for root %q, store %q (Instances' %q); want %q and its instances folder", gotRoot, gotStore.Root, in.Store.Root, want)
	}
	if in.Backend != be || in.Prefix != "sh-" || in.Log != slog.Default() {
		t.Errorf("Instances = %+v", in)
	}
	if fi, err := os.Stat(gotStore.Root); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("instances folder: %v %v, want mode 0700", fi, err)
	}
	if _, err := OpenInstances("/dev/null/x", "sh-", nil, func(string, Store, *slog.Logger) Backend { return be }); err == nil {
		t.Error("OpenInstances under a file: no error")
	}
}
