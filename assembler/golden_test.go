package assembler

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// TestLayoutGolden records the whole initramfs listing of the fixture
// (path, mode, owner, size or link target), in archive order. Any change to
// the layout shows up as a diff of testdata/layout.golden; rerun with
// -update after checking it against LinuxKit.
func TestLayoutGolden(t *testing.T) {
	host := memRegistry(t)
	f := newFixture(t, host)
	f.build(t, "out", nil)
	ents, order := readInitrd(t, filepath.Join(f.dir, "out", "test-initrd.img"))
	var b strings.Builder
	for _, n := range order {
		e := ents[n]
		what := fmt.Sprint(e.h.Size)
		if strings.HasSuffix(n, ".json") {
			what = "(json)" // contents are package bundle's, checked there
		}
		if e.h.Linkname != "" {
			what = "-> " + e.h.Linkname
		}
		fmt.Fprintf(&b, "%07o %d:%d %s %s\n", e.h.Mode, e.h.UID, e.h.GID, n, what)
	}
	got := strings.ReplaceAll(b.String(), host, "REGISTRY")
	golden := filepath.Join("testdata", "layout.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("layout differs from %s (rerun with -update if intended):\n%s", golden, got)
	}
}
