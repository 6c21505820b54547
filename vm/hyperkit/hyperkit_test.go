package hyperkit

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mobykit/mobykit/internal/golden"
)

func TestArgsGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"vpnkit-disk-data", Config{CPUs: 2, MemoryMB: 512, Kernel: "/i/k", Initrd: "/i/initrd.img", Cmdline: "console=ttyS0",
			Disks: []string{"/s/disk.img"}, DataISO: "/s/metadata.iso", VPNKitSock: "/v/eth.sock",
			VPNKitUUID: UUID("10.0.0.2"), PreferredIPv4: "192.168.65.20", UUID: UUID("vm"), Console: "/s", PidFile: "/s/hyperkit.pid"}},
		{"minimal-stdio", Config{Kernel: "/i/k"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := tc.cfg.Args()
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", tc.name+".args"), []byte(strings.Join(a, "\n")+"\n"))
		})
	}
}

func TestArgsErrors(t *testing.T) {
	for name, c := range map[string]Config{
		"no kernel":         {},
		"comma in kernel":   {Kernel: "/a,b"},
		"comma in disk":     {Kernel: "/k", Disks: []string{"/d,1"}},
		"ip without vpnkit": {Kernel: "/k", PreferredIPv4: "10.0.0.1"},
		"bad ip":            {Kernel: "/k", VPNKitSock: "/s", PreferredIPv4: "fd00::1"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := c.Args(); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestIPv4UUID(t *testing.T) {
	if got := IPv4UUID("192.168.65.30"); got != "00000000-0000-0000-0000-0000c0a8411e" {
		t.Fatalf("IPv4UUID = %q", got)
	}
	if IPv4UUID("fd00::1") != "" || IPv4UUID("node-1") != "" {
		t.Fatal("IPv4UUID of a non-IPv4 logical ID")
	}
}

func TestUUID(t *testing.T) {
	u := UUID("a")
	if u != UUID("a") || u == UUID("b") || !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(u) {
		t.Fatalf("UUID %q", u)
	}
}
