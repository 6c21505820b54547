package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesWhole(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "f")
	if err := WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "new" {
		t.Fatalf("read %q, %v; want new", b, err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, want 0644", st.Mode().Perm())
	}
}

func TestFailedFillLeavesOldContentAndNoTemp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := Write(p, 0o644, func(w io.Writer) error {
		io.WriteString(w, "half")
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Fatalf("content %q after failed write, want old", b)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("%d entries left in %s, want only f", len(ents), dir)
	}
}

// recordDirSyncs collects the folders fsynced while the test runs.
func recordDirSyncs(t *testing.T) *[]string {
	t.Helper()
	var synced []string
	TestHookDirSynced = func(dir string) { synced = append(synced, dir) }
	t.Cleanup(func() { TestHookDirSynced = nil })
	return &synced
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// A rename is a change to the folder: without a folder fsync a crash can bring the old file
// back (or lose the new name). WriteFile must sync the folder after the rename, and every
// folder it had to create.
func TestWriteFileSyncsDirAfterRename(t *testing.T) {
	base := t.TempDir()
	synced := recordDirSyncs(t)
	p := filepath.Join(base, "a", "b", "f")
	if err := WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{base, filepath.Join(base, "a"), filepath.Join(base, "a", "b")} {
		if !contains(*synced, dir) {
			t.Errorf("folder %s not synced; synced %q", dir, *synced)
		}
	}
	// The last sync is the one after the rename: of the file's own folder.
	if n := len(*synced); n == 0 || (*synced)[n-1] != filepath.Join(base, "a", "b") {
		t.Errorf("last folder sync %q, want the file's folder after the rename", *synced)
	}
	// Write (caches) stays without fsyncs.
	*synced = nil
	if err := Write(filepath.Join(base, "c", "g"), 0o644, fillWith([]byte("y"))); err != nil {
		t.Fatal(err)
	}
	if len(*synced) != 0 {
		t.Errorf("Write synced %q; it promises no fsync", *synced)
	}
}

func TestRemoveInSyncsDir(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := WriteFileIn(root, "f", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	synced := recordDirSyncs(t)
	if err := RemoveIn(root, "f"); err != nil {
		t.Fatal(err)
	}
	if !contains(*synced, filepath.Join(dir, ".")) {
		t.Errorf("folder not synced after remove; synced %q", *synced)
	}
	if _, err := os.Stat(filepath.Join(dir, "f")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("f still there: %v", err)
	}
	if err := RemoveIn(root, "f"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("second remove: %v, want not-exist", err)
	}
}

// WriteFileIn stays beneath its root: a name that climbs out is refused and nothing is written
// outside.
func TestWriteFileInStaysBeneathRoot(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "root")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := os.Symlink(base, filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"../escaped", "out/escaped"} {
		if err := WriteFileIn(root, name, []byte("x"), 0o600); err == nil {
			t.Errorf("WriteFileIn(%q) succeeded", name)
		}
	}
	if ents, _ := os.ReadDir(base); len(ents) != 1 {
		t.Fatalf("entries outside the root: %v", ents)
	}
}
