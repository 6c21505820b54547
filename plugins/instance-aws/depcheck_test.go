package instanceaws

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the layering of docs/design.md: the plugin and its AMI importer import
// neither cmd, nor the group controller, nor other plugins.
func TestDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not on PATH; skipping the dependency check")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".", "./ami").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const mod = "github.com/mobykit/mobykit/"
	allowed := []string{mod + "spi", mod + "plugins/instance-aws"}
	for _, dep := range strings.Fields(string(out)) {
		if !strings.HasPrefix(dep, mod) {
			continue
		}
		ok := false
		for _, a := range allowed {
			if dep == a || strings.HasPrefix(dep, a+"/") {
				ok = true
			}
		}
		if !ok {
			t.Errorf("instance-aws depends on %s", dep)
		}
	}
}
