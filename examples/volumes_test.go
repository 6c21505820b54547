package examples

import (
	"regexp"
	"testing"
	"time"

	"github.com/mobykit/mobykit/internal/testenv"
)

// TestVolumesMountedAtBoot boots examples/volumes.yml: a container binding an image volume
// sees the image's files and can write (to the overlay's tmpfs upper, the image in lower stays
// as built), a blank volume is empty and writable, and a read-only volume refuses writes both
// through the container's ro bind and through the volume's own mount (a container given the
// whole /containers/volumes folder read-write). A service binding the same volume sees the
// onboot container's write: the volume is one mount, not a per-container copy.
func TestVolumesMountedAtBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	testenv.RequireQEMU(t)
	v := boot(t, buildExample(t, "volumes"))
	defer func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("console:\n%s", v.con)
		}
	}()
	at := 0
	for _, re := range []string{
		`mobykit init: volumes mounted: conf \(ro\), scratch, tools`,
		`VOLTEST tools=image write=ok lower=intact scratch=0\+ok conf=image confwrite=refused hostwrite=refused$`,
		`mobykit init: onboot 000-check done`,
		`VOLREAD seen`,
	} {
		i, _, err := v.con.expect(at, regexp.MustCompile(re), 120*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		at = i + 1
	}
	v.shutdown(t, at)
}
