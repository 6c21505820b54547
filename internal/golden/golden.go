// Package golden compares test output with a file under testdata/, and rewrites that file
// when the test binary runs with -update: go test ./pkg -run TestX -update.
package golden

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ instead of comparing")

// Update reports whether the test binary runs with -update.
func Update() bool { return *update }

// Check fails t unless got equals the contents of the file at path. With -update it writes
// got to path first (creating its folder), so the comparison then holds.
func Check(t testing.TB, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s differs (run with -update if intended):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
