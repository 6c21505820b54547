package bundle

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/mobykit/mobykit/assembler/spec"
	"github.com/mobykit/mobykit/internal/golden"
)

type built struct {
	img *spec.Image
	b   *Bundle
}

// buildAll generates every container of testdata/spec.yml the way the
// builder does: LinuxKit's directory names, and one unpacked copy per
// image reference.
func buildAll(t *testing.T) map[string]built {
	t.Helper()
	m, err := spec.Load("testdata/spec.yml")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("testdata/images.json")
	if err != nil {
		t.Fatal(err)
	}
	var cfgs map[string]v1.Config
	if err := json.Unmarshal(raw, &cfgs); err != nil {
		t.Fatal(err)
	}
	out := map[string]built{}
	shared := map[string]string{}
	for _, sec := range []struct {
		name     string
		list     []*spec.Image
		numbered bool
	}{{"onboot", m.Onboot, true}, {"onshutdown", m.Onshutdown, true}, {"services", m.Services, false}} {
		for i, img := range sec.list {
			dir := img.Name
			if sec.numbered {
				dir = fmt.Sprintf("%03d-%s", i, img.Name)
			}
			p := path.Join("containers", sec.name, dir)
			cfg, ok := cfgs[img.Image]
			if !ok {
				t.Fatalf("no image config for %s in images.json", img.Image)
			}
			b, err := Generate(img, cfg, Options{Path: p, SharedRoot: shared[img.Image], IDMap: m.IDMap(), Volumes: m.VolumeMap()})
			if err != nil {
				t.Fatalf("Generate %s: %v", p, err)
			}
			if b.RootDir != "" {
				shared[img.Image] = b.RootDir
			}
			out[p] = built{img, b}
		}
	}
	return out
}

func TestGenerateGolden(t *testing.T) {
	for p, bb := range buildAll(t) {
		t.Run(p, func(t *testing.T) {
			for _, f := range []struct {
				name string
				data []byte
			}{{"config.json", bb.b.Config}, {"runtime.json", bb.b.Runtime}} {
				golden.Check(t, filepath.Join("testdata", "golden", filepath.FromSlash(p), f.name), f.data)
			}
		})
	}
}

func TestGenerateSemantics(t *testing.T) {
	all := buildAll(t)
	get := func(p string) *Bundle {
		b, ok := all[p]
		if !ok {
			t.Fatalf("no bundle %s", p)
		}
		return b.b
	}
	mount := func(s *specs.Spec, dst string) *specs.Mount {
		for i := range s.Mounts {
			if s.Mounts[i].Destination == dst {
				return &s.Mounts[i]
			}
		}
		return nil
	}
	nsTypes := func(s *specs.Spec) []string {
		var out []string
		for _, n := range s.Linux.Namespaces {
			out = append(out, string(n.Type)+"="+n.Path)
		}
		return out
	}

	t.Run("label applies under yaml", func(t *testing.T) {
		s := get("containers/onboot/000-sysctl").Spec
		if !s.Root.Readonly || !slices.Equal(s.Process.Capabilities.Effective, []string{"CAP_SYS_ADMIN"}) {
			t.Errorf("label readonly/capabilities not applied: %+v %+v", s.Root, s.Process.Capabilities)
		}
		if got := nsTypes(s); !slices.Equal(got, []string{"mount=", "cgroup="}) {
			t.Errorf("namespaces = %v (host net, pid, ipc from the label)", got)
		}
		if !slices.Equal(s.Process.Args, []string{"/usr/bin/sysctl", "-p"}) {
			t.Errorf("args from entrypoint+cmd = %v", s.Process.Args)
		}
		if s.Process.Cwd != "/" {
			t.Errorf("empty WorkingDir must give cwd /, got %q", s.Process.Cwd)
		}
		if m := mount(s, "/etc/sysctl.d"); m == nil || !slices.Equal(m.Options, []string{"rw", "rbind", "rshared"}) {
			t.Errorf("label bind = %+v", m)
		}
		if m := mount(s, "/dev"); m == nil || !slices.Contains(m.Options, "ro") {
			t.Errorf("read-only root must mount /dev ro: %+v", m)
		}
	})
	t.Run("yaml command replaces image and label", func(t *testing.T) {
		s := get("containers/onboot/001-dhcpcd").Spec
		if !slices.Equal(s.Process.Args, []string{"/sbin/dhcpcd", "--nobackground", "-f", "/dhcpcd.conf", "-1"}) {
			t.Errorf("args = %v", s.Process.Args)
		}
		if len(s.Process.Env) != 1 || !strings.HasPrefix(s.Process.Env[0], "PATH=") {
			t.Errorf("env from the image = %v", s.Process.Env)
		}
		if m := mount(s, "/var/lib/dhcpcd"); m == nil || m.Type != "tmpfs" || m.Options != nil {
			t.Errorf("tmpfs = %+v", m)
		}
		rt := get("containers/onboot/001-dhcpcd").RuntimeConfig
		if !slices.Equal(*rt.Mkdir, []string{"/var/lib/dhcpcd"}) {
			t.Errorf("runtime.mkdir from label = %v", *rt.Mkdir)
		}
	})
	t.Run("binds.add and devices", func(t *testing.T) {
		b := get("containers/onboot/002-format")
		s := b.Spec
		if mount(s, "/dev") == nil || mount(s, "/dev").Type != "bind" || mount(s, "/var/lib") == nil {
			t.Errorf("binds.add must add to the label's binds: %+v", s.Mounts)
		}
		if len(s.Linux.Devices) != 1 || *s.Linux.Devices[0].FileMode != 0o666 {
			t.Errorf("devices = %+v", s.Linux.Devices)
		}
		if len(s.Linux.Resources.Devices) != 2 || s.Linux.Resources.Devices[0].Major != nil || s.Linux.Resources.Devices[1].Access != "rwm" {
			t.Errorf("device cgroup = %+v", s.Linux.Resources.Devices)
		}
		if b.ReadOnly || b.RootDir != "containers/onboot/002-format/lower" ||
			!slices.Equal(b.Dirs, []string{"containers/onboot/002-format/rootfs", "containers/onboot/002-format/tmp"}) {
			t.Errorf("writable root layout: %+v %q %v", b.ReadOnly, b.RootDir, b.Dirs)
		}
		rm := *b.RuntimeConfig.Mounts
		if len(rm) != 3 || rm[2].Type != "overlay" || rm[2].Options[0] != "lowerdir=/containers/onboot/002-format/lower" {
			t.Errorf("overlay mounts = %+v", rm)
		}
	})
	t.Run("one onboot name twice", func(t *testing.T) {
		// LinuxKit's examples run format (and mount) twice: each gets its
		// own bundle, the second sharing the first one's unpacked image.
		first, second := get("containers/onboot/002-format"), get("containers/onboot/003-format")
		if got := second.Spec.Process.Args; !slices.Equal(got, []string{"/usr/bin/format", "-label", "second"}) {
			t.Errorf("second format's args = %q", got)
		}
		if got := first.Spec.Process.Args; slices.Equal(got, second.Spec.Process.Args) {
			t.Errorf("first format's args = %q", got)
		}
		rm := *second.RuntimeConfig.Mounts
		if second.RootDir != "" || rm[len(rm)-1].Options[0] != "lowerdir=/containers/onboot/002-format/lower" {
			t.Errorf("second format does not overlay the first one's copy: %q %+v", second.RootDir, rm)
		}
	})
	t.Run("blockio devices", func(t *testing.T) {
		bio := get("containers/services/everything").Spec.Linux.Resources.BlockIO
		if bio == nil || len(bio.WeightDevice) != 1 || bio.WeightDevice[0].Major != 8 || bio.WeightDevice[0].Minor != 0 ||
			len(bio.ThrottleReadBpsDevice) != 1 || bio.ThrottleReadBpsDevice[0].Minor != 16 ||
			len(bio.ThrottleWriteIOPSDevice) != 1 || bio.ThrottleWriteIOPSDevice[0].Major != 253 {
			t.Errorf("blockIO = %+v", bio)
		}
	})
	t.Run("capabilities all", func(t *testing.T) {
		s := get("containers/services/getty").Spec
		if len(s.Process.Capabilities.Effective) != len(spec.AllCapabilities) || len(s.Process.Capabilities.Bounding) != len(spec.AllCapabilities) {
			t.Errorf("all capabilities: %d effective", len(s.Process.Capabilities.Effective))
		}
		if !slices.IsSorted(s.Process.Capabilities.Bounding) {
			t.Error("bounding set not sorted")
		}
		if s.Linux.RootfsPropagation != "shared" || !slices.Equal(s.Process.Env, []string{"INSECURE=true"}) {
			t.Errorf("rootfsPropagation/env: %q %v", s.Linux.RootfsPropagation, s.Process.Env)
		}
	})
	t.Run("no label", func(t *testing.T) {
		s := get("containers/services/plain").Spec
		if s.Process.Cwd != "/home" || !slices.Equal(s.Process.Args, []string{"/bin/sh"}) {
			t.Errorf("cwd/args from image: %q %v", s.Process.Cwd, s.Process.Args)
		}
		if got := nsTypes(s); !slices.Equal(got, []string{"pid=", "mount=", "cgroup="}) {
			t.Errorf("default namespaces = %v", got)
		}
		if len(s.Process.Capabilities.Effective) != 0 || s.Root.Readonly {
			t.Errorf("defaults: caps %v readonly %v", s.Process.Capabilities.Effective, s.Root.Readonly)
		}
		var dsts []string
		for _, m := range s.Mounts {
			dsts = append(dsts, m.Destination)
		}
		if !slices.Equal(dsts, []string{"/dev", "/dev/pts", "/proc", "/sys", "/sys/fs/cgroup"}) {
			t.Errorf("default mounts = %v", dsts)
		}
	})
	t.Run("yaml binds replace label binds; net new", func(t *testing.T) {
		s := get("containers/services/nginx").Spec
		if got := nsTypes(s); !slices.Equal(got, []string{"network=", "pid=", "mount=", "cgroup="}) {
			t.Errorf("namespaces = %v", got)
		}
		rt := get("containers/services/nginx").RuntimeConfig
		if *rt.BindNS.Net != "/run/netns/nginx" || (*rt.Interfaces)[0].Peer != "veth-nginx" {
			t.Errorf("runtime = %+v", rt)
		}
	})
	t.Run("everything", func(t *testing.T) {
		b := get("containers/services/everything")
		s := b.Spec
		if !slices.Equal(s.Process.Capabilities.Effective, []string{"CAP_CHOWN", "CAP_SYS_TIME"}) {
			t.Errorf("capabilities.add must add to the label's: %v", s.Process.Capabilities.Effective)
		}
		if !slices.Equal(s.Process.Capabilities.Bounding, []string{"CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_TIME"}) {
			t.Errorf("bounding must include ambient: %v", s.Process.Capabilities.Bounding)
		}
		if m := mount(s, "/cache"); m == nil || m.Source != "/containers/volumes/cache/merged" {
			t.Errorf("volume bind = %+v", m)
		}
		if m := mount(s, "/data"); m == nil || m.Source != "/containers/volumes/data/merged" {
			t.Errorf("volume mount = %+v", m)
		}
		if m := mount(s, "/lib/modules"); m == nil || !slices.Equal(m.Options, []string{"ro", "rbind"}) {
			t.Errorf("label bind with options = %+v", m)
		}
		if m := mount(s, "/sys/fs/cgroup"); m == nil || !slices.Equal(m.Options, []string{"rw"}) {
			t.Errorf("mounts replaces the default cgroup mount: %+v", m)
		}
		if s.Hostname != "everything" || !slices.Equal(s.Process.Env, []string{"FROM=label"}) || s.Process.Cwd != "/srv" {
			t.Errorf("hostname/env/cwd = %q %v %q", s.Hostname, s.Process.Env, s.Process.Cwd)
		}
		// uid: getty is the fifth container (four onboot, then getty): 104
		u := s.Process.User
		if u.UID != 104 || u.GID != 1000 || !slices.Equal(u.AdditionalGids, []uint32{10, 100, 0}) {
			t.Errorf("user = %+v", u)
		}
		if got := nsTypes(s); !slices.Equal(got, []string{"ipc=", "uts=/proc/1/ns/uts", "pid=", "user=", "mount=", "cgroup="}) {
			t.Errorf("namespaces = %v", got)
		}
		want := []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: ^uint64(0)}, {Type: "RLIMIT_CORE"}}
		if !reflect.DeepEqual(s.Process.Rlimits, want) {
			t.Errorf("rlimits = %+v", s.Process.Rlimits)
		}
		if !b.ReadOnly || b.RootDir != "containers/services/everything/rootfs" || len(b.Dirs) != 0 {
			t.Errorf("read-only layout: %v %q %v", b.ReadOnly, b.RootDir, b.Dirs)
		}
		rm := *b.RuntimeConfig.Mounts
		if rm[0].Source != "/containers/services/everything/rootfs" || !slices.Equal(rm[0].Options, []string{"bind"}) || rm[1].Destination != "/var/lib/everything" {
			t.Errorf("runtime mounts = %+v", rm)
		}
	})
}

func TestSharedRoot(t *testing.T) {
	img := &spec.Image{Name: "a", Image: "x"}
	cfg := v1.Config{Cmd: []string{"/x"}}
	b, err := Generate(img, cfg, Options{Path: "containers/services/a", SharedRoot: "containers/onboot/000-x/rootfs"})
	if err != nil {
		t.Fatal(err)
	}
	if b.RootDir != "" || !strings.Contains(string(b.Runtime), `"lowerdir=/containers/onboot/000-x/rootfs"`) {
		t.Errorf("shared root not used: %q\n%s", b.RootDir, b.Runtime)
	}
	ro := true
	img.Readonly = &ro
	b, err = Generate(img, cfg, Options{Path: "containers/services/a", SharedRoot: "containers/onboot/000-x/rootfs"})
	if err != nil {
		t.Fatal(err)
	}
	if b.RootDir != "" || !slices.Equal(b.Dirs, []string{"containers/services/a/rootfs"}) ||
		(*b.RuntimeConfig.Mounts)[0].Source != "/containers/onboot/000-x/rootfs" {
		t.Errorf("shared read-only root: %q %v %+v", b.RootDir, b.Dirs, *b.RuntimeConfig.Mounts)
	}
}

func TestGenerateErrors(t *testing.T) {
	str := func(s string) *string { return &s }
	_ = str
	for _, tc := range []struct {
		name string
		img  spec.Image
		cfg  v1.Config
		opts Options
		want string
	}{
		{"no path", spec.Image{Name: "a", Image: "x"}, v1.Config{}, Options{}, `bundle path "" must be relative`},
		{"escaping path", spec.Image{Name: "a", Image: "x"}, v1.Config{}, Options{Path: "../a"}, `bundle path "../a"`},
		{"unknown label field", spec.Image{Name: "a", Image: "x"}, v1.Config{Labels: map[string]string{ConfigLabel: `{"capabilites": []}`}}, Options{Path: "p"},
			`image x label org.mobyproject.config:1:2: capabilites: unknown field (did you mean "capabilities"?)`},
		{"name in label", spec.Image{Name: "a", Image: "x"}, v1.Config{Labels: map[string]string{ConfigLabel: `{"name": "n"}`}}, Options{Path: "p"},
			`name cannot be set in the org.mobyproject.config label`},
		{"label not an object", spec.Image{Name: "a", Image: "x"}, v1.Config{Labels: map[string]string{ConfigLabel: `["a"]`}}, Options{Path: "p"},
			`label must be an object`},
		{"wrong type in label", spec.Image{Name: "a", Image: "x"}, v1.Config{Labels: map[string]string{ConfigLabel: `{"readonly": "yes"}`}}, Options{Path: "p"},
			`readonly: must be true or false`},
		{"unknown capability in label", spec.Image{Name: "a", Image: "x"}, v1.Config{Labels: map[string]string{ConfigLabel: `{"capabilities": ["CAP_FLY"]}`}}, Options{Path: "p"},
			`unknown capability "CAP_FLY"`},
		{"unknown uid name", spec.Image{Name: "a", Image: "x", ImageConfig: spec.ImageConfig{UID: ptr[any]("nobody")}}, v1.Config{}, Options{Path: "p"},
			`uid: cannot find id "nobody"`},
		{"unknown volume", spec.Image{Name: "a", Image: "x", ImageConfig: spec.ImageConfig{Binds: &[]string{"v:/v"}}}, v1.Config{}, Options{Path: "p"},
			`binds[0]: volume "v" not found`},
		{"read-only volume", spec.Image{Name: "a", Image: "x", ImageConfig: spec.ImageConfig{BindsAdd: &[]string{"v:/v"}}}, v1.Config{},
			Options{Path: "p", Volumes: map[string]*spec.Volume{"v": {Name: "v", ReadOnly: true}}}, `volume "v" is read-only`},
		{"bad bind in label", spec.Image{Name: "a", Image: "x"}, v1.Config{Labels: map[string]string{ConfigLabel: `{"binds": ["/a"]}`}}, Options{Path: "p"},
			`bad bind`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Generate(&tc.img, tc.cfg, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v\nwant %s", err, tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestGenerateDoesNotModifyInputs(t *testing.T) {
	res := &specs.LinuxResources{Devices: make([]specs.LinuxDeviceCgroup, 0, 4)}
	img := &spec.Image{Name: "a", Image: "x", ImageConfig: spec.ImageConfig{
		Resources: res,
		Devices:   &[]spec.Device{{Path: "all", Type: "c"}},
		Binds:     &[]string{"v:/v"},
	}}
	cfg := v1.Config{Entrypoint: make([]string, 1, 4), Cmd: []string{"b"}}
	cfg.Entrypoint[0] = "a"
	if _, err := Generate(img, cfg, Options{Path: "p", Volumes: map[string]*spec.Volume{"v": {Name: "v"}}}); err != nil {
		t.Fatal(err)
	}
	if len(res.Devices) != 0 || (*img.Binds)[0] != "v:/v" || cfg.Entrypoint[:2][1] != "" {
		t.Errorf("inputs modified: %+v %v %v", res.Devices, *img.Binds, cfg.Entrypoint[:2])
	}
}

// Effective folds the label and image config into the YAML: generating
// from it, with no label, must give the same bundle.
func TestEffectiveGivesSameBundle(t *testing.T) {
	m, err := spec.Load("testdata/spec.yml")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("testdata/images.json")
	if err != nil {
		t.Fatal(err)
	}
	var cfgs map[string]v1.Config
	if err := json.Unmarshal(raw, &cfgs); err != nil {
		t.Fatal(err)
	}
	opts := Options{Path: "containers/services/x", IDMap: m.IDMap(), Volumes: m.VolumeMap()}
	for _, img := range append(append([]*spec.Image{}, m.Onboot...), m.Services...) {
		t.Run(img.Name, func(t *testing.T) {
			want, err := Generate(img, cfgs[img.Image], opts)
			if err != nil {
				t.Fatal(err)
			}
			eff, err := Effective(img, cfgs[img.Image])
			if err != nil {
				t.Fatal(err)
			}
			got, err := Generate(eff, v1.Config{}, opts)
			if err != nil {
				t.Fatal(err)
			}
			if string(got.Config) != string(want.Config) || string(got.Runtime) != string(want.Runtime) {
				t.Errorf("bundle from Effective differs:\n%s\n---\n%s", got.Config, want.Config)
			}
		})
	}
	eff, err := EffectiveSpec(m, func(ref string) (v1.Config, error) { return cfgs[ref], nil })
	if err != nil {
		t.Fatal(err)
	}
	out, err := eff.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := spec.Parse("effective", out); err != nil {
		t.Errorf("effective spec does not parse: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "/usr/bin/rungetty.sh") {
		t.Errorf("effective spec lacks the image's command:\n%s", out)
	}
}

func TestGenerateErrorNamesSpecPlace(t *testing.T) {
	m, err := spec.Parse("x.yml", []byte("services:\n  - name: a\n    image: x\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := v1.Config{Labels: map[string]string{ConfigLabel: "{\n  \"capabilites\": []}"}}
	_, err = Generate(m.Services[0], cfg, Options{Path: "containers/services/a"})
	want := `x.yml:2: services[0] (a): image x: invalid org.mobyproject.config label: image x label org.mobyproject.config:2:3: capabilites: unknown field (did you mean "capabilities"?)`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}
