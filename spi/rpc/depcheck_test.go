package rpc

import (
	"go/build"
	"strings"
	"testing"
)

// TestLayering keeps the arrows one way (docs/design.md): the spi packages import nothing of mobykit
// but spi itself, so plugins, the controller and the CLI can all use them.
func TestLayering(t *testing.T) {
	const module = "github.com/mobykit/mobykit/"
	allowed := func(p string) bool {
		return p == module+"spi" || strings.HasPrefix(p, module+"spi/")
	}
	for _, pkg := range []string{"spi/rpc", "spi/discovery", "spi/goplugin"} {
		t.Run(pkg, func(t *testing.T) {
			seen := map[string]bool{}
			var walk func(string)
			walk = func(path string) {
				if seen[path] {
					return
				}
				seen[path] = true
				p, err := build.Default.Import(path, ".", 0)
				if err != nil {
					t.Fatalf("importing %s: %v", path, err)
				}
				for _, imp := range p.Imports {
					if !strings.HasPrefix(imp, module) {
						continue
					}
					if !allowed(imp) {
						t.Errorf("%s imports %s", path, imp)
					}
					walk(imp)
				}
			}
			walk(module + pkg)
		})
	}
}
