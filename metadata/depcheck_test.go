package metadata

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the layering: the metadata packages and the in-VM agent use only the
// standard library, golang.org/x and each other (plus the ISO reader's tests), so the agent
// stays a small static binary and nothing here reaches into cmd, vm, plugins or group.
func TestDependencies(t *testing.T) {
	pkgs := []string{"./config", "./provider", "./iso", "./fwcfg", "./imds", "../cmd/metadata"}
	out, err := exec.Command("go", append([]string{"list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}"}, pkgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case strings.HasPrefix(dep, "github.com/mobykit/mobykit/metadata"),
			dep == "github.com/mobykit/mobykit/cmd/metadata",
			strings.HasPrefix(dep, "golang.org/x/"):
		default:
			t.Errorf("metadata depends on %s", dep)
		}
	}
}
