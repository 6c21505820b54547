package golden

import (
	"os"
	"path/filepath"
	"testing"
)

// recorder is a testing.TB that records failures instead of stopping the test.
type recorder struct {
	testing.TB
	failed, fatal bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Fatalf(string, ...any) { r.failed, r.fatal = true, true; panic(r) }
func (r *recorder) Fatal(...any)          { r.failed, r.fatal = true, true; panic(r) }

func check(t *testing.T, path string, got []byte) *recorder {
	r := &recorder{TB: t}
	func() {
		defer func() {
			if v := recover(); v != nil && v != r {
				panic(v)
			}
		}()
		Check(r, path, got)
	}()
	return r
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.golden")
	if r := check(t, p, []byte("a")); !r.fatal {
		t.Error("a missing golden file did not fail the test")
	}
	if err := os.WriteFile(p, []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := check(t, p, []byte("a\n")); r.failed {
		t.Error("equal contents failed")
	}
	if r := check(t, p, []byte("b\n")); !r.failed || r.fatal {
		t.Errorf("different contents: failed=%v fatal=%v, want a non-fatal failure", r.failed, r.fatal)
	}
}

func TestCheckUpdate(t *testing.T) {
	*update = true
	defer func() { *update = false }()
	p := filepath.Join(t.TempDir(), "sub", "x.golden")
	if r := check(t, p, []byte("new\n")); r.failed {
		t.Error("-update failed")
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "new\n" {
		t.Errorf("-update wrote %q, %v", b, err)
	}
}
