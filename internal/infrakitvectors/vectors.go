// Package infrakitvectors locates the InfraKit wire-protocol test vectors committed under
// docs/infrakit/vectors (copied from the real InfraKit implementation's traffic; see
// docs/infrakit/PROTOCOL.md §15), so every test that replays them finds them in any checkout.
package infrakitvectors

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the vectors folder of the repository holding the test's working directory.
// It fails the test (never skips) when the folder is missing: the vectors are part of the
// repository, and a test that replays none proves nothing.
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("infrakitvectors: no go.mod above the test's working directory")
		}
		dir = parent
	}
	v := filepath.Join(dir, "docs", "infrakit", "vectors")
	if _, err := os.Stat(v); err != nil {
		t.Fatalf("infrakitvectors: %v (the vectors are committed under docs/infrakit/vectors)", err)
	}
	return v
}
