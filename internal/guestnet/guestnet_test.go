package guestnet

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	c, err := ParseCmdline("console=ttyS0 quiet  mobykit.instance=web-1\tmobykit.ip=10.99.0.10/24\nmobykit.ip=10.99.0.11/24 a=b=c empty=\n")
	if err != nil {
		t.Fatal(err)
	}
	want := Cmdline{"console": "ttyS0", ParamInstance: "web-1", ParamIP: "10.99.0.11/24", "a": "b=c", "empty": ""}
	if len(c) != len(want) {
		t.Errorf("got %v, want %v", c, want)
	}
	for k, v := range want {
		if got, ok := c[k]; !ok || got != v {
			t.Errorf("%s = %q (present %v), want %q", k, got, ok, v)
		}
	}
	if _, ok := c["quiet"]; ok {
		t.Errorf("a word without = is kept: %v", c)
	}

	if _, err := ParseCmdline(strings.Repeat("a=b ", MaxCmdline/4) + "x"); err == nil || !strings.Contains(err.Error(), "kernel command line") {
		t.Errorf("a command line over %d bytes: err %v", MaxCmdline, err)
	}
	if _, err := ParseCmdline(strings.Repeat("a", MaxCmdline)); err != nil {
		t.Errorf("a command line of exactly %d bytes: %v", MaxCmdline, err)
	}
}

func TestGroup(t *testing.T) {
	for _, tc := range []struct {
		line    string
		ok      bool
		addr    string
		mac     string
		wantErr string // substring of the error; "" for none
	}{
		{line: "console=ttyS0", ok: false},
		{line: "mobykit.ip=10.99.0.10/24 mobykit.mac=52:54:00:ab:CD:ef", ok: true, addr: "10.99.0.10/24", mac: "52:54:00:ab:cd:ef"},
		{line: "mobykit.ip=192.168.5.3/32 mobykit.mac=52-54-00-00-00-01", ok: true, addr: "192.168.5.3/32", mac: "52:54:00:00:00:01"},
		{line: "mobykit.ip=10.99.0.10/24", wantErr: `mobykit.ip="10.99.0.10/24" without mobykit.mac`},
		{line: "mobykit.mac=52:54:00:00:00:01", wantErr: `mobykit.mac="52:54:00:00:00:01" without mobykit.ip`},
		{line: "mobykit.ip= mobykit.mac=52:54:00:00:00:01", wantErr: `mobykit.ip="": want an IPv4 address`},
		{line: "mobykit.ip=10.99.0.10 mobykit.mac=52:54:00:00:00:01", wantErr: `mobykit.ip="10.99.0.10": want an IPv4 address with a prefix length`},
		{line: "mobykit.ip=10.99.0.10/33 mobykit.mac=52:54:00:00:00:01", wantErr: "mobykit.ip=\"10.99.0.10/33\""},
		{line: "mobykit.ip=10.99.0.10/0 mobykit.mac=52:54:00:00:00:01", wantErr: "mobykit.ip=\"10.99.0.10/0\": prefix length 0"},
		{line: "mobykit.ip=fd00::1/64 mobykit.mac=52:54:00:00:00:01", wantErr: "mobykit.ip=\"fd00::1/64\": want an IPv4"},
		{line: "mobykit.ip=::ffff:10.0.0.1/120 mobykit.mac=52:54:00:00:00:01", wantErr: "mobykit.ip="},
		{line: "mobykit.ip=0.0.0.0/8 mobykit.mac=52:54:00:00:00:01", wantErr: "0.0.0.0 is not a unicast address"},
		{line: "mobykit.ip=127.0.0.2/8 mobykit.mac=52:54:00:00:00:01", wantErr: "127.0.0.2 is not a unicast address"},
		{line: "mobykit.ip=230.1.2.3/24 mobykit.mac=52:54:00:00:00:01", wantErr: "230.1.2.3 is not a unicast address"},
		{line: "mobykit.ip=255.255.255.255/24 mobykit.mac=52:54:00:00:00:01", wantErr: "255.255.255.255 is not a unicast address"},
		{line: "mobykit.ip=10.99.0.10/24 mobykit.mac=", wantErr: `mobykit.mac="": want an Ethernet MAC`},
		{line: "mobykit.ip=10.99.0.10/24 mobykit.mac=nope", wantErr: `mobykit.mac="nope": want an Ethernet MAC`},
		{line: "mobykit.ip=10.99.0.10/24 mobykit.mac=52:54:00:00:00:01:02:03", wantErr: "mobykit.mac=\"52:54:00:00:00:01:02:03\": want an Ethernet MAC"},
		{line: "mobykit.ip=10.99.0.10/24 mobykit.mac=01:00:5e:00:00:01", wantErr: "01:00:5e:00:00:01 is a multicast MAC"},
		{line: "mobykit.ip=10.99.0.10/24 mobykit.mac=ff:ff:ff:ff:ff:ff", wantErr: "multicast MAC"},
		{line: "mobykit.ip=10.99.0.10/24 mobykit.mac=00:00:00:00:00:00", wantErr: "00:00:00:00:00:00 is not a NIC's MAC"},
		{line: "mobykit.ip=" + strings.Repeat("1", 1000) + " mobykit.mac=52:54:00:00:00:01", wantErr: `mobykit.ip="` + strings.Repeat("1", 64) + `"...: want`},
	} {
		t.Run(tc.line[:min(len(tc.line), 60)], func(t *testing.T) {
			c, err := ParseCmdline(tc.line)
			if err != nil {
				t.Fatal(err)
			}
			g, ok, err := c.Group()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "kernel command line: ") {
					t.Errorf("error %q does not say it is about the kernel command line", err)
				}
				if len(err.Error()) > 300 {
					t.Errorf("error of %d bytes: the value is not cut", len(err.Error()))
				}
				if ok {
					t.Errorf("ok with an error")
				}
				return
			}
			if err != nil || ok != tc.ok {
				t.Fatalf("ok %v err %v, want ok %v", ok, err, tc.ok)
			}
			if !ok {
				return
			}
			if g.Addr != netip.MustParsePrefix(tc.addr) || g.MAC.String() != tc.mac {
				t.Errorf("got %s, want %s (%s)", g, tc.addr, tc.mac)
			}
		})
	}
}

func TestInterface(t *testing.T) {
	mac := func(s string) net.HardwareAddr {
		m, err := net.ParseMAC(s)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	ifs := []net.Interface{
		{Name: "lo"},
		{Name: "eth0", HardwareAddr: mac("52:54:00:12:34:56")},
		{Name: "eth1", HardwareAddr: mac("52:54:00:ab:cd:ef")},
		{Name: "ib0", HardwareAddr: mac("00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01")},
	}
	if name, err := Interface(ifs, mac("52:54:00:AB:CD:EF")); err != nil || name != "eth1" {
		t.Errorf("got %q %v, want eth1", name, err)
	}
	if name, err := Interface(ifs, mac("52:54:00:12:34:56")); err != nil || name != "eth0" {
		t.Errorf("got %q %v, want eth0", name, err)
	}
	if _, err := Interface(ifs, mac("52:54:00:00:00:09")); err == nil || !strings.Contains(err.Error(), "no interface with MAC 52:54:00:00:00:09") {
		t.Errorf("absent MAC: %v", err)
	}
	if _, err := Interface(ifs, nil); err == nil {
		t.Errorf("an empty MAC matched an interface without one")
	}
	dup := append(ifs, net.Interface{Name: "br0", HardwareAddr: mac("52:54:00:ab:cd:ef")})
	if _, err := Interface(dup, mac("52:54:00:ab:cd:ef")); err == nil || !strings.Contains(err.Error(), "eth1, br0") {
		t.Errorf("two interfaces with one MAC: %v", err)
	}
}

// FuzzCmdline feeds hostile command lines through ParseCmdline and Group: no panic, and
// whatever Group accepts is an IPv4 unicast address with a prefix and a 6-byte unicast MAC.
func FuzzCmdline(f *testing.F) {
	f.Add("console=ttyS0 mobykit.ip=10.99.0.10/24 mobykit.mac=52:54:00:12:34:56 mobykit.instance=x")
	f.Add("mobykit.ip=10.99.0.10/24 mobykit.mac=52:54:00:12:34:56:78:9a")
	f.Add("mobykit.ip=::ffff:1.2.3.4/120 mobykit.mac=01:00:5e:00:00:01")
	f.Add("mobykit.ip=1.2.3.4/0 mobykit.mac=")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCmdline(s)
		if err != nil {
			if len(s) <= MaxCmdline {
				t.Fatalf("refused %d bytes: %v", len(s), err)
			}
			return
		}
		g, ok, err := c.Group()
		if err != nil || !ok {
			return
		}
		a := g.Addr.Addr()
		if !a.Is4() || g.Addr.Bits() < 1 || g.Addr.Bits() > 32 || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() {
			t.Fatalf("accepted address %s", g.Addr)
		}
		if len(g.MAC) != 6 || g.MAC[0]&1 != 0 {
			t.Fatalf("accepted MAC %s", g.MAC)
		}
	})
}
