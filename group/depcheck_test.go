package group

import (
	"os/exec"
	"strings"
	"testing"
)

// The arrows go one way (docs/design.md): the group controller depends on spi and its own
// sub-packages only, never on cmd, the plugins, the assembler, the VM machinery or the
// launcher (which imports it through cmd, not the other way round). The one shared helper it
// uses is internal/atomicfile (standard library only): the store's crash-safe writes.
func TestDependencies(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}", "github.com/mobykit/mobykit/group/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		rest, ok := strings.CutPrefix(dep, "github.com/mobykit/mobykit/")
		if !ok {
			continue
		}
		if !strings.HasPrefix(rest, "group") && !strings.HasPrefix(rest, "spi") && rest != "internal/atomicfile" {
			t.Errorf("group depends on %s", dep)
		}
	}
}
