package sysinit

import (
	"strings"
	"testing"
)

// TestParseRootDisk: the loader acts only on a device under /dev and a file system it knows.
func TestParseRootDisk(t *testing.T) {
	for _, c := range []struct {
		cmdline string
		want    RootDisk
		ok      bool
		err     string
	}{
		{"console=ttyS0", RootDisk{}, false, ""},
		{"console=ttyS0 mobykit.root=/dev/vda mobykit.rootfstype=erofs", RootDisk{"/dev/vda", "erofs"}, true, ""},
		{"mobykit.rootfstype=iso9660 mobykit.root=/dev/sr0", RootDisk{"/dev/sr0", "iso9660"}, true, ""},
		{"mobykit.root=/dev/vda", RootDisk{}, true, "want squashfs, erofs or iso9660"},
		{"mobykit.root=/dev/vda mobykit.rootfstype=ext4", RootDisk{}, true, "want squashfs, erofs or iso9660"},
		{"mobykit.root=/etc/passwd mobykit.rootfstype=erofs", RootDisk{}, true, "want a device under /dev"},
		{"mobykit.root=/dev/../etc/x mobykit.rootfstype=erofs", RootDisk{}, true, "want a device under /dev"},
	} {
		d, ok, err := ParseRootDisk(c.cmdline)
		if ok != c.ok || (c.err == "" && (err != nil || d != c.want)) || (c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err))) {
			t.Errorf("%q: %+v %v %v", c.cmdline, d, ok, err)
		}
	}
}
