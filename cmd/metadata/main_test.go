package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Only file providers are used here: the default list would probe real cloud endpoints.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	ud := filepath.Join(dir, "ud")
	os.WriteFile(ud, []byte(`{"f":{"content":"x"}}`), 0o644)
	missing := "file=" + filepath.Join(dir, "missing")
	for _, tc := range []struct {
		name   string
		strict bool
		args   []string
		rc     int
	}{
		{"found", false, []string{"file=" + ud}, 0},
		{"unknown provider", false, []string{"nosuchcloud"}, 2},
		{"none found is not a failure", false, []string{missing}, 0},
		{"none found with -strict", true, []string{missing}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "config")
			if rc := run(root, time.Second, false, tc.strict, tc.args); rc != tc.rc {
				t.Fatalf("run = %d, want %d", rc, tc.rc)
			}
			if tc.name == "found" {
				if b, err := os.ReadFile(filepath.Join(root, "f")); err != nil || string(b) != "x" {
					t.Fatalf("expanded file: %q %v", b, err)
				}
			}
		})
	}
}
