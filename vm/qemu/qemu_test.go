package qemu

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/mobykit/mobykit/internal/golden"
)

func TestArgsGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"kernel-user-net", Config{
			Name: "vm-1", Accel: "tcg", CPUs: 2, MemoryMB: 512,
			Kernel: "/i/k", Initrd: "/i/initrd.img", Cmdline: "console=ttyS0",
			Disks:   []Disk{{Path: "/s/disk0.qcow2"}, {Path: "/s/d,1.img", Format: "raw"}},
			DataISO: "/s/metadata.iso",
			FwCfg:   []FwCfg{{Name: "opt/com.mobykit/userdata", File: "/s/userdata.fwcfg"}},
			NICs: []NIC{
				{Kind: NICUser, MAC: "52:54:00:12:34:56", Forwards: []Forward{{HostPort: 8080, GuestPort: 80}, {Proto: "udp", HostAddr: "0.0.0.0", HostPort: 5353, GuestPort: 53}}},
				{Kind: NICMcast, MAC: "52:54:00:12:34:57", Addr: "230.0.0.1:1234"},
			},
			Console: "/s/console.log", QMP: "/s/qmp.sock", NoReboot: true,
		}},
		{"raw-netdev", Config{Accel: "tcg", Kernel: "/k", NICs: []NIC{{Kind: NICUser, MAC: "52:54:00:00:00:01", Netdev: "user,id=net0,net=169.254.169.0/24,guestfwd=tcp:169.254.169.254:80-cmd:relay 127.0.0.1:1"}}, Console: "stdio-plain"}},
		{"disk-uefi-vars", Config{Accel: "tcg", Disks: []Disk{{Path: "/i/x-efi.img", Boot: true}}, UEFI: "/usr/share/OVMF/OVMF_CODE_4M.fd", UEFIVars: "/s/OVMF_VARS.fd", Console: "stdio-plain"}},
		{"iso-uefi-vde", Config{Accel: "tcg", ISO: "/i/x.iso", UEFI: "/usr/share/OVMF/OVMF_CODE.fd",
			NICs: []NIC{{Kind: NICVDE, Addr: "/s/switch"}}, Console: "stdio"}},
		{"disk-boot-aarch64", Config{Arch: "aarch64", Accel: "tcg", Disks: []Disk{{Path: "/i/d.qcow2", Boot: true}}, Console: "stdio-plain"}},
		{"kernel-aarch64-uefi", Config{Arch: "aarch64", Accel: "tcg", MemoryMB: 512,
			Kernel: "/i/k", Initrd: "/i/initrd.img", Cmdline: "console=ttyAMA0",
			UEFI: "/usr/share/AAVMF/AAVMF_CODE.fd", UEFIVars: "/s/uefi-vars.fd",
			Disks: []Disk{{Path: "/s/disk0.qcow2"}}, DataISO: "/s/metadata.iso",
			NICs:    []NIC{{Kind: NICUser, MAC: "52:54:00:12:34:56"}},
			Console: "stdio-plain", QMP: "/s/qmp.sock", NoReboot: true}},
		{"iso-aarch64", Config{Arch: "aarch64", Accel: "tcg", ISO: "/i/x.iso", UEFI: "/usr/share/AAVMF/AAVMF_CODE.fd", Console: "stdio-plain"}},
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
		"nothing to boot":    {Accel: "tcg"},
		"two boot sources":   {Accel: "tcg", Kernel: "k", ISO: "x.iso"},
		"initrd alone":       {Accel: "tcg", Initrd: "i", ISO: "x.iso"},
		"bad accel":          {Accel: "xen", Kernel: "k"},
		"bad fw_cfg name":    {Accel: "tcg", Kernel: "k", FwCfg: []FwCfg{{Name: "etc/x", File: "f"}}},
		"bad mac":            {Accel: "tcg", Kernel: "k", NICs: []NIC{{Kind: NICUser, MAC: "zz"}}},
		"forward on mcast":   {Accel: "tcg", Kernel: "k", NICs: []NIC{{Kind: NICMcast, Addr: "230.0.0.1:1", Forwards: []Forward{{HostPort: 1, GuestPort: 1}}}}},
		"mcast without port": {Accel: "tcg", Kernel: "k", NICs: []NIC{{Kind: NICMcast, Addr: "230.0.0.1"}}},
		"unknown nic":        {Accel: "tcg", Kernel: "k", NICs: []NIC{{Kind: "tap"}}},
		"unknown arch":       {Arch: "mips", Accel: "tcg", Kernel: "k"},
		"vars without code":  {Accel: "tcg", Kernel: "k", UEFIVars: "v.fd"},
		"netdev without id":  {Accel: "tcg", Kernel: "k", NICs: []NIC{{Kind: NICUser, Netdev: "user,id=net1"}}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := c.Args(); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestParseForward(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Forward
		err  bool
	}{
		{"8080:80", Forward{Proto: "tcp", HostPort: 8080, GuestPort: 80}, false},
		{"127.0.0.2:53:53/udp", Forward{Proto: "udp", HostAddr: "127.0.0.2", HostPort: 53, GuestPort: 53}, false},
		{"80", Forward{}, true},
		{"0:80", Forward{}, true},
		{"a:1:2", Forward{}, true},
		{"1:2/sctp", Forward{}, true},
		{"1:70000", Forward{}, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseForward(tc.in)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v", err)
			}
			if err == nil && got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func FuzzParseForward(f *testing.F) {
	f.Add("127.0.0.1:8080:80/tcp")
	f.Fuzz(func(t *testing.T, s string) { ParseForward(s) })
}

func TestMACStable(t *testing.T) {
	a, b := MAC("vm-1/0"), MAC("vm-1/0")
	if a != b || MAC("vm-2/0") == a || !strings.HasPrefix(a, "52:54:00:") {
		t.Fatalf("MAC not stable and distinct: %s %s %s", a, b, MAC("vm-2/0"))
	}
}

// TestUserNICRestrict: a restricted user-mode NIC gets restrict=on (no guest-opened connection,
// so no way to the host's loopback through 10.0.2.2) and keeps its published ports.
func TestUserNICRestrict(t *testing.T) {
	nic := NIC{Kind: NICUser, Restrict: true, Forwards: []Forward{{HostPort: 8080, GuestPort: 80}}}
	a, err := Config{Accel: "tcg", Kernel: "/k", NICs: []NIC{nic}, Console: "stdio"}.Args()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(a, " "); !strings.Contains(got, "-netdev user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:8080-:80 ") {
		t.Errorf("restricted user NIC: %s", got)
	}
	if _, err := (Config{Accel: "tcg", Kernel: "/k", NICs: []NIC{{Kind: NICMcast, Addr: "230.0.0.1:1", Restrict: true}}}).Args(); err == nil {
		t.Error("restrict on a multicast NIC accepted")
	}
}
