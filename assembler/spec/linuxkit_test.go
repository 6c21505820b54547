package spec

import (
	"path/filepath"
	"strings"
	"testing"
)

// Specs in the shape of LinuxKit's own examples and tests (see
// testdata/linuxkit/README.md) parse and validate: one onboot name used
// twice (dm-crypt-loop's two `mount`s), blockio device entries with
// major/minor, volume formats.
func TestLinuxKitExamplesParse(t *testing.T) {
	files, err := filepath.Glob("testdata/linuxkit/*.yml")
	if err != nil || len(files) < 3 {
		t.Fatalf("testdata/linuxkit: %v, %d files", err, len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			m, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			// What the spec says survives a round trip (--dry-run output).
			out, err := m.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			again, err := Parse("again.yml", out)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if err := again.Validate(); err != nil {
				t.Fatal(err)
			}
			if out2, _ := again.Bytes(); string(out2) != string(out) {
				t.Errorf("round trip changed the spec:\n%s\n---\n%s", out, out2)
			}
		})
	}

	m, err := Load("testdata/linuxkit/format-mount-multiple.yml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, img := range m.Onboot {
		names = append(names, img.Name)
	}
	if got := strings.Join(names, " "); got != "format format mount mount test poweroff" {
		t.Errorf("onboot = %s", got)
	}
	if got := (*m.Onboot[1].Command)[2]; got != "foo" {
		t.Errorf("second format's command = %q", *m.Onboot[1].Command)
	}
	// LinuxKit numbers every container; a name used twice resolves to the
	// later one, as in LinuxKit.
	if id := m.IDMap()["format"]; id != 101 {
		t.Errorf("uid of format = %d, want 101", id)
	}

	m, err = Load("testdata/linuxkit/blockio.yml")
	if err != nil {
		t.Fatal(err)
	}
	bio := m.Services[0].Resources.BlockIO
	if len(bio.WeightDevice) != 1 || bio.WeightDevice[0].Major != 8 || bio.WeightDevice[0].Minor != 0 || *bio.WeightDevice[0].Weight != 800 {
		t.Errorf("weightDevice = %+v", bio.WeightDevice)
	}
	if d := bio.ThrottleWriteBpsDevice; len(d) != 1 || d[0].Major != 8 || d[0].Minor != 16 || d[0].Rate != 52428800 {
		t.Errorf("throttleWriteBpsDevice = %+v", d)
	}
	if d := bio.ThrottleWriteIOPSDevice; len(d) != 1 || d[0].Major != 253 || d[0].Minor != 1 || d[0].Rate != 500 {
		t.Errorf("throttleWriteIOPSDevice = %+v", d)
	}
}

// Service names stay unique, as in LinuxKit (they run side by side).
func TestDuplicateServiceStillRefused(t *testing.T) {
	m, err := Parse("x.yml", []byte("services:\n  - {name: a, image: b}\n  - {name: a, image: c}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := `x.yml:3:5: services[1] (a): duplicate services name "a", first defined at x.yml:2: services[0] (a)`
	if err := m.Validate(); err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
}

// volumes[].format is checked when the spec is parsed, with its place.
func TestVolumeFormatCheckedAtParse(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"volumes:\n  - name: v\n    format: ext4\n", `x.yml:3:13: volumes[0].format: unknown volume format "ext4" (filesystem or oci)`},
		{"volumes:\n  - name: v\n    format: oci\n", `x.yml:3:13: volumes[0].format: volume format "oci" is not supported by mobykit (only filesystem)`},
	} {
		_, err := Parse("x.yml", []byte(tc.yaml))
		if err == nil || err.Error() != tc.want {
			t.Errorf("err = %v\nwant  %s", err, tc.want)
		}
	}
	if _, err := Parse("x.yml", []byte("volumes:\n  - name: v\n    format: filesystem\n")); err != nil {
		t.Error(err)
	}
}
