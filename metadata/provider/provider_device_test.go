package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kdomanski/iso9660"

	"github.com/mobykit/mobykit/metadata/iso"
)

// fakeMount "mounts" an ISO9660 image file by extracting its root into target with an
// independent reader, recording what was mounted; only iso9660 is accepted.
type fakeMount struct{ mounted, unmounted []string }

func (m *fakeMount) mount(device, target, fstype string) error {
	if fstype != iso.FSISO9660 {
		return fmt.Errorf("fake mount: unsupported fstype %q", fstype)
	}
	f, err := os.Open(device)
	if err != nil {
		return err
	}
	defer f.Close()
	img, err := iso9660.OpenImage(f)
	if err != nil {
		return err
	}
	root, err := img.RootDir()
	if err != nil {
		return err
	}
	children, err := root.GetChildren()
	if err != nil {
		return err
	}
	for _, c := range children {
		b, err := io.ReadAll(c.Reader())
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(target, c.Name()), b, 0o444); err != nil {
			return err
		}
	}
	m.mounted = append(m.mounted, device)
	return nil
}

func (m *fakeMount) unmount(target string) error {
	m.unmounted = append(m.unmounted, target)
	entries, _ := os.ReadDir(target)
	for _, e := range entries {
		os.Remove(filepath.Join(target, e.Name()))
	}
	return nil
}

// devices lays out a fake /sys/class/block and /dev: each name maps to the device's bytes.
func devices(t *testing.T, devs map[string][]byte) Config {
	t.Helper()
	block, dev := t.TempDir(), t.TempDir()
	for name, data := range devs {
		os.Mkdir(filepath.Join(block, name), 0o755)
		if err := os.WriteFile(filepath.Join(dev, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := &fakeMount{}
	return Config{BlockDir: block, DevDir: dev, CDROMGlob: filepath.Join(dev, "sr[0-9]*"), Mount: m.mount, Unmount: m.unmount, MountDir: t.TempDir()}
}

func isoBytes(t *testing.T, label string, files []iso.File) []byte {
	t.Helper()
	var b strings.Builder
	if err := iso.Write(&b, files, iso.Options{Label: label}); err != nil {
		t.Fatal(err)
	}
	return []byte(b.String())
}

func TestCDROM(t *testing.T) {
	ud := []byte(`{"svc":{"entries":{"msg":{"content":"from the cd"}}}}`)
	tests := []struct {
		name         string
		devs         map[string][]byte
		wantProvider string
		wantFiles    map[string]string
		wantErr      string
	}{
		{
			name:         "mobykit metadata ISO on a virtio disk",
			devs:         map[string][]byte{"vda": make([]byte, 64<<10), "vdb": isoBytes(t, "cidata", iso.Metadata(ud, "i-42", "cd-host"))},
			wantProvider: "CDROM %s/vdb",
			wantFiles:    map[string]string{"svc/msg": "from the cd", "hostname": "cd-host", "instance_id": "i-42", "userdata": string(ud)},
		},
		{
			name:         "LinuxKit's single config file on /dev/sr0, label CONFIG",
			devs:         map[string][]byte{"sr0": isoBytes(t, "CONFIG", []iso.File{{Name: "config", Data: []byte("plain text")}})},
			wantProvider: "CDROM %s/sr0",
			wantFiles:    map[string]string{"userdata": "plain text"},
		},
		{
			name: "NoCloud user-data preferred over config",
			devs: map[string][]byte{"sr0": isoBytes(t, "CIDATA", []iso.File{
				{Name: "config", Data: []byte("old")}, {Name: "user-data", Data: []byte("new")}, {Name: "meta-data", Data: []byte("instance-id: iid-1\n")}})},
			wantProvider: "CDROM %s/sr0",
			wantFiles:    map[string]string{"userdata": "new", "instance_id": "iid-1"},
		},
		{
			name: "labelled disks before CD-ROMs, loop devices ignored",
			devs: map[string][]byte{
				"loop0": isoBytes(t, "cidata", []iso.File{{Name: "user-data", Data: []byte("from loop")}}),
				"sr0":   isoBytes(t, "other", []iso.File{{Name: "user-data", Data: []byte("from sr0")}}),
				"vdc":   isoBytes(t, "cidata", []iso.File{{Name: "user-data", Data: []byte("from vdc")}}),
			},
			wantProvider: "CDROM %s/vdc",
			wantFiles:    map[string]string{"userdata": "from vdc"},
		},
		{
			name:    "a CD without userdata is not a provider",
			devs:    map[string][]byte{"sr0": isoBytes(t, "cidata", []iso.File{{Name: "README", Data: []byte("x")}})},
			wantErr: "no userdata file",
		},
		{
			name:    "unlabelled disks are not tried",
			devs:    map[string][]byte{"vda": isoBytes(t, "data", []iso.File{{Name: "user-data", Data: []byte("x")}})},
			wantErr: "no providers to try",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := devices(t, tc.devs)
			set, err := Parse([]string{"cdrom"}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			dir, root := openDir(t)
			res, err := Run(context.Background(), set, dir, Options{})
			if tc.wantErr != "" {
				if !errors.Is(err, ErrNoProvider) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Run error %v, want ErrNoProvider mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf(tc.wantProvider, cfg.DevDir); res.Provider != want {
				t.Errorf("provider %q, want %q", res.Provider, want)
			}
			checkFiles(t, root, tc.wantFiles)
			// Every mount was undone and its mount point removed.
			if entries, _ := os.ReadDir(cfg.MountDir); len(entries) != 0 {
				t.Errorf("mount points left: %v", entries)
			}
		})
	}
}

func TestFwCfgProvider(t *testing.T) {
	sysfs := t.TempDir()
	raw := filepath.Join(sysfs, "by_name", "opt", "com.mobykit", "userdata")
	os.MkdirAll(raw, 0o755)
	os.WriteFile(filepath.Join(raw, "raw"), []byte(`{"hostname":{"content":"fw-host"}}`), 0o444)

	cfg := Config{FwCfgSysfs: sysfs}
	set, _ := Parse([]string{"fwcfg"}, cfg)
	dir, root := openDir(t)
	var host string
	res, err := Run(context.Background(), set, dir, Options{SetHostname: func(h []byte) error { host = string(h); return nil }})
	if err != nil || res.Provider != "fw_cfg" || host != "fw-host" {
		t.Fatalf("Run = %+v, %v (hostname set %q)", res, err, host)
	}
	checkFiles(t, root, map[string]string{"provider": "fw_cfg", "hostname": "fw-host"})

	// No module, and DMI says this is not QEMU: a clear "not found", ports untouched.
	dmi := t.TempDir()
	os.WriteFile(filepath.Join(dmi, "sys_vendor"), []byte("Dell Inc.\n"), 0o644)
	set, _ = Parse([]string{"fwcfg"}, Config{FwCfgSysfs: t.TempDir(), DMIDir: dmi})
	dir, _ = openDir(t)
	if _, err := Run(context.Background(), set, dir, Options{}); !errors.Is(err, ErrNoProvider) || !strings.Contains(err.Error(), "not QEMU") {
		t.Fatalf("Run error %v, want ErrNoProvider saying the machine is not QEMU", err)
	}
}

// TestFallThrough: with network providers down, the device is used, then the file.
func TestFallThrough(t *testing.T) {
	down := testConfig("http://127.0.0.1:1")
	file := filepath.Join(t.TempDir(), "userdata")
	os.WriteFile(file, []byte("from file"), 0o644)

	cfg := devices(t, map[string][]byte{"sr0": isoBytes(t, "cidata", iso.Metadata([]byte("from cd"), "", ""))})
	cfg.Endpoints, cfg.Timeout = down.Endpoints, down.Timeout
	set, err := Parse([]string{"aws", "gcp", "cdrom", "file=" + file}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir, root := openDir(t)
	if res, err := Run(context.Background(), set, dir, Options{}); err != nil || !strings.HasPrefix(res.Provider, "CDROM ") {
		t.Fatalf("Run = %+v, %v; want the CD-ROM", res, err)
	}
	checkFiles(t, root, map[string]string{"userdata": "from cd"})

	set, _ = Parse([]string{"aws", "gcp", "cdrom", "file=" + file}, devices(t, nil))
	dir, root = openDir(t)
	if res, err := Run(context.Background(), set, dir, Options{}); err != nil || res.Provider != file {
		t.Fatalf("Run = %+v, %v; want the file", res, err)
	}
	checkFiles(t, root, map[string]string{"userdata": "from file"})
}
