package assembler

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/mobykit/mobykit/internal/testenv"
)

// TestDockerRegistry builds from Debian's docker-registry on loopback (a
// real registry, spoken to over plain HTTP) and checks the result is
// byte-identical to a build of the same images from the in-memory one.
func TestDockerRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("starts docker-registry")
	}
	real := newFixture(t, testenv.Registry(t))
	res := real.build(t, "out", nil)
	if res.Reused != 0 || len(res.Images) != 4 {
		t.Errorf("first build from docker-registry: reused %d, images %v", res.Reused, res.Images)
	}
	mem := newFixture(t, memRegistry(t))
	mem.build(t, "out", nil)
	// The registry differs; the image contents, and so the outputs, do not.
	for _, n := range []string{"test-kernel", "test-initrd.img", "test-cmdline"} {
		if !bytes.Equal(mustRead(t, filepath.Join(real.dir, "out", n)), mustRead(t, filepath.Join(mem.dir, "out", n))) {
			t.Errorf("%s differs between the docker-registry and in-memory builds", n)
		}
	}
}
