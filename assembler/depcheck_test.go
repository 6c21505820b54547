package assembler

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDepcheck keeps the arrows one way: the assembler is a library that
// cmd, plugins and the group controller use, never the reverse. The one
// exception is metadata/iso, a leaf using only the standard library: the ISO
// formats reuse its deterministic writer rather than keep a second one.
func TestDepcheck(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./...").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "github.com/mobykit/mobykit/metadata/iso" {
			continue
		}
		for _, bad := range []string{"/cmd/", "/plugins/", "/group", "/vm", "/metadata", "/spi", "/launcher"} {
			if strings.HasPrefix(p, "github.com/mobykit/mobykit") && strings.Contains(strings.TrimPrefix(p, "github.com/mobykit/mobykit"), bad) {
				t.Errorf("assembler depends on %s", p)
			}
		}
	}
}
