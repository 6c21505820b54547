package assembler

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mobykit/mobykit/internal/golden"
)

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
	golden.Check(t, filepath.Join("testdata", "layout.golden"), []byte(got))
}
