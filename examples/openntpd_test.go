package examples

import (
	"regexp"
	"testing"
	"time"

	"github.com/mobykit/mobykit/internal/testenv"
)

// TestOpenNTPDStarts boots examples/openntpd.yml: LinuxKit's `ntpd -d` command starts Debian's
// OpenNTPD from the openntpd image, which reads /etc/ntpd.conf, drops privileges to user ntpd
// in its chroot and reports its ntp engine ready (syncing needs the Internet, which CI has not).
func TestOpenNTPDStarts(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	testenv.RequireQEMU(t)
	v := boot(t, buildExample(t, "openntpd"))
	defer func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("console:\n%s", v.con)
		}
	}()
	at := 0
	for _, re := range []string{`mobykit init: service openntpd started`, `openntpd: .*ntp engine ready`} {
		i, _, err := v.con.expect(at, regexp.MustCompile(re), 120*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		at = i + 1
	}
	v.shutdown(t, at)
}
