package vm

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestFindBoot(t *testing.T) {
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	for _, f := range []string{"a-kernel", "a-initrd.img", "b-kernel", "x.iso", "y.qcow2", "z.raw", "v.vmdk", "h.vhd", "old-bzImage", "old-initrd.img", "h-efi.iso", "h-efi-initrd.img", "h-efi.qcow2", "refi.img"} {
		os.WriteFile(p(f), []byte("x"), 0o644)
	}
	os.WriteFile(p("a-cmdline"), []byte("console=ttyS0 quiet\n"), 0o644)
	for _, tc := range []struct {
		in   string
		want Boot
		err  bool
	}{
		{p("a"), Boot{Kernel: p("a-kernel"), Initrd: p("a-initrd.img"), Cmdline: "console=ttyS0 quiet"}, false},
		{p("b"), Boot{Kernel: p("b-kernel")}, false},
		{p("old"), Boot{Kernel: p("old-bzImage"), Initrd: p("old-initrd.img")}, false},
		{p("x.iso"), Boot{ISO: p("x.iso")}, false},
		{p("y.qcow2"), Boot{Disk: p("y.qcow2"), DiskFormat: "qcow2"}, false},
		{p("z.raw"), Boot{Disk: p("z.raw"), DiskFormat: "raw"}, false},
		{p("v.vmdk"), Boot{Disk: p("v.vmdk"), DiskFormat: "vmdk"}, false},
		{p("h.vhd"), Boot{Disk: p("h.vhd"), DiskFormat: "vpc"}, false},
		{p("h-efi.iso"), Boot{ISO: p("h-efi.iso"), UEFI: true}, false},
		{p("h-efi-initrd.img"), Boot{Disk: p("h-efi-initrd.img"), DiskFormat: "raw", UEFI: true}, false},
		{p("h-efi.qcow2"), Boot{Disk: p("h-efi.qcow2"), DiskFormat: "qcow2", UEFI: true}, false},
		{p("refi.img"), Boot{Disk: p("refi.img"), DiskFormat: "raw"}, false},
		{p("missing"), Boot{}, true},
		{p("missing.iso"), Boot{}, true},
	} {
		t.Run(filepath.Base(tc.in), func(t *testing.T) {
			got, err := FindBoot(tc.in)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v", err)
			}
			if err == nil && got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseDisk(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want DiskSpec
		err  bool
	}{
		{"disk.img", DiskSpec{Path: "disk.img"}, false},
		{"file=d.qcow2,size=1G,format=qcow2", DiskSpec{Path: "d.qcow2", Size: "1G", Format: "qcow2"}, false},
		{"size=512M", DiskSpec{Size: "512M"}, false},
		{"d.img,size=2G", DiskSpec{Path: "d.img", Size: "2G"}, false},
		{"d.img,2G", DiskSpec{}, true},
		{"d.img,colour=red", DiskSpec{}, true},
		{"format=raw", DiskSpec{}, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseDisk(tc.in)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v", err)
			}
			if err == nil && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func FuzzParseDisk(f *testing.F) {
	f.Add("file=d.qcow2,size=1G,format=qcow2")
	f.Fuzz(func(t *testing.T, s string) { ParseDisk(s) })
}

// TestFindBootRootDisk: a prefix with a root file system image and no initrd boots through the
// image's loader with the image as root disk; the loader missing is an error naming it; an
// initrd wins over a root file system image (kernel+initrd beside kernel+squashfs).
func TestFindBootRootDisk(t *testing.T) {
	for _, c := range []struct{ file, fstype string }{{"-squashfs.img", "squashfs"}, {"-erofs.img", "erofs"}, {".iso", "iso9660"}} {
		p := filepath.Join(t.TempDir(), "h")
		os.WriteFile(p+"-kernel", nil, 0o644)
		os.WriteFile(p+c.file, nil, 0o644)
		if _, err := FindBoot(p); err == nil || !strings.Contains(err.Error(), "h-loader.img") {
			t.Errorf("%s without loader: %v", c.file, err)
		}
		os.WriteFile(p+"-loader.img", nil, 0o644)
		b, err := FindBoot(p)
		if err != nil || b.Initrd != p+"-loader.img" || b.RootDisk != p+c.file || b.RootFSType != c.fstype {
			t.Errorf("%s: %+v, %v", c.file, b, err)
		}
		if got := b.RootArgs("/dev/vda"); got != "mobykit.root=/dev/vda mobykit.rootfstype="+c.fstype {
			t.Errorf("%s: RootArgs %q", c.file, got)
		}
		os.WriteFile(p+"-initrd.img", nil, 0o644)
		if b, err := FindBoot(p); err != nil || b.Initrd != p+"-initrd.img" || b.RootDisk != "" {
			t.Errorf("%s with an initrd: %+v, %v", c.file, b, err)
		}
	}
}

// TestBootSource: embedded in a plugin's Properties, BootSource's keys decode as the plugin's
// own (case-insensitively, with unknown keys still refused), and Check counts the sources.
func TestBootSource(t *testing.T) {
	type props struct {
		BootSource
		CPUs int `json:"cpus"`
	}
	decode := func(s string) (props, error) {
		var p props
		d := json.NewDecoder(strings.NewReader(s))
		d.DisallowUnknownFields()
		return p, d.Decode(&p)
	}
	p, err := decode(`{"Moby":"/m","KERNEL":"/k","initrd":"/i","cmdline":"c","iso":"/x.iso","Disk":"/d.img","cpus":2}`)
	if err != nil {
		t.Fatal(err)
	}
	if want := (BootSource{Moby: "/m", Kernel: "/k", Initrd: "/i", Cmdline: "c", ISO: "/x.iso", Disk: "/d.img"}); p.BootSource != want || p.CPUs != 2 {
		t.Errorf("decoded %+v", p)
	}
	if _, err := decode(`{"moby":"/m","publish":["80:80"]}`); err == nil {
		t.Error("unknown key accepted next to an embedded BootSource")
	}
	for _, tc := range []struct {
		b        BootSource
		needBoot bool
		err      string
	}{
		{BootSource{}, false, ""},
		{BootSource{}, true, "exactly one of moby, kernel, iso, disk (got 0"},
		{BootSource{Moby: "/m"}, true, ""},
		{BootSource{Kernel: "/k", Initrd: "/i", Cmdline: "c"}, true, ""},
		{BootSource{Moby: "/m", Cmdline: "c"}, true, ""},
		{BootSource{ISO: "/x.iso", Disk: "/d"}, false, "(got 2"},
		{BootSource{Initrd: "/i"}, false, "initrd and cmdline need a kernel"},
		{BootSource{ISO: "/x.iso", Cmdline: "c"}, true, "initrd and cmdline need a kernel"},
	} {
		err := tc.b.Check(tc.needBoot)
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%+v.Check(%v) = %v, want %q", tc.b, tc.needBoot, err, tc.err)
		}
	}
}
