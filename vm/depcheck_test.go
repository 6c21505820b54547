package vm

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLayering keeps the arrows one way: the VM machinery never imports a plugin, the CLI or
// the group controller; each instance plugin uses only its own hypervisor package (shared
// code lives in vm, not copied or imported across); plugins never import each other.
func TestLayering(t *testing.T) {
	const mod = "github.com/mobykit/mobykit/"
	forbidden := map[string][]string{
		"vm/...":                    {"plugins/", "cmd/", "group", "launcher"},
		"plugins/instance-qemu":     {"plugins/instance-hyperkit", "plugins/instance-vfkit", "plugins/flavor-moby", "vm/hyperkit", "vm/vfkit", "cmd/", "group"},
		"plugins/instance-hyperkit": {"plugins/instance-qemu", "plugins/instance-vfkit", "plugins/flavor-moby", "vm/qemu", "vm/qmp", "vm/vfkit", "cmd/", "group"},
		"plugins/instance-vfkit":    {"plugins/instance-qemu", "plugins/instance-hyperkit", "plugins/flavor-moby", "vm/qemu", "vm/qmp", "vm/hyperkit", "cmd/", "group"},
		"plugins/flavor-moby":       {"plugins/instance-", "vm/qemu", "vm/hyperkit", "vm/vfkit", "cmd/", "group"},
	}
	for pkg, bad := range forbidden {
		t.Run(pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "../"+pkg).Output()
			if err != nil {
				t.Fatalf("go list %s: %v", pkg, err)
			}
			for _, dep := range strings.Fields(string(out)) {
				rel, ok := strings.CutPrefix(dep, mod)
				if !ok {
					continue
				}
				for _, b := range bad {
					if strings.HasPrefix(rel, b) {
						t.Errorf("%s imports %s", pkg, dep)
					}
				}
			}
		})
	}
}
