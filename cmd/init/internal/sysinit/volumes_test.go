package sysinit

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestVolumeLayoutDecidesMounts: the assembler's layout says how each volume is mounted, as
// LinuxKit's init reads it: with tmp/ an overlay of lower with a tmpfs upper, without it a
// read-only bind of lower; a broken volume is reported by name and the others still listed.
func TestVolumeLayoutDecidesMounts(t *testing.T) {
	root := t.TempDir()
	mk := func(p ...string) {
		for _, d := range p {
			if err := os.MkdirAll(filepath.Join(root, VolumesDir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("data/lower", "data/tmp", "data/merged", "conf/lower", "conf/merged", "broken/lower")
	os.WriteFile(filepath.Join(root, VolumesDir, "stray"), nil, 0o644)
	vols, err := findVolumes(root)
	if err == nil || !strings.Contains(err.Error(), "volume broken:") || !strings.Contains(err.Error(), "volume stray:") {
		t.Fatalf("broken volumes not reported: %v", err)
	}
	byName := map[string]volume{}
	for _, v := range vols {
		byName[v.Name] = v
	}
	if len(vols) != 2 || byName["data"].ReadOnly || !byName["conf"].ReadOnly {
		t.Fatalf("volumes %+v", vols)
	}
	base := filepath.Join(root, VolumesDir)
	data := byName["data"].mounts()
	want := []Mount{
		{Destination: base + "/data/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"mode=0755"}},
		{Destination: base + "/data/tmp", Options: []string{"remount", "private"}},
		{Destination: base + "/data/merged", Type: "overlay", Source: "overlay", Options: []string{
			"lowerdir=" + base + "/data/lower", "upperdir=" + base + "/data/tmp/upper", "workdir=" + base + "/data/tmp/work"}},
	}
	if !reflect.DeepEqual(data, want) {
		t.Fatalf("read-write volume mounts\n%+v\nwant\n%+v", data, want)
	}
	conf := byName["conf"].mounts()
	last := conf[len(conf)-1]
	flags, _, _ := ParseMountOptions(last.Options)
	if last.Destination != base+"/conf/merged" || conf[0].Source != base+"/conf/lower" || flags&unix.MS_RDONLY == 0 {
		t.Fatalf("read-only volume mounts %+v", conf)
	}
	if vols, err := findVolumes(t.TempDir()); vols != nil || err != nil {
		t.Fatalf("no volumes folder: %v, %v", vols, err)
	}
}
