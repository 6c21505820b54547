package spec

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mobykit/mobykit/internal/golden"
)

func TestParseGoodSpecs(t *testing.T) {
	for _, name := range []string{"linuxkit.yml", "full.yml", "extra.yml"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", name)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Parse(path, data)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if err := m.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			out, err := m.Defaulted().Bytes()
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", strings.TrimSuffix(name, ".yml")+".dry-run.golden"), out)

			// The dry-run output is itself a spec with the same meaning.
			again, err := Parse("dry-run", out)
			if err != nil {
				t.Fatalf("reparse dry-run output: %v\n%s", err, out)
			}
			out2, err := again.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			if string(out2) != string(out) {
				t.Errorf("dry-run output is not stable:\n%s\n---\n%s", out, out2)
			}
		})
	}
}

func TestParseFields(t *testing.T) {
	path := filepath.Join("testdata", "full.yml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(path, data)
	if err != nil {
		t.Fatal(err)
	}
	s := m.Services[0]
	if s.BindsAdd != nil {
		t.Errorf("binds.add on a service without it: %v", *s.BindsAdd)
	}
	if m.Onboot[0].BindsAdd == nil || (*m.Onboot[0].BindsAdd)[0] != "/dev:/dev" {
		t.Errorf("binds.add not parsed: %+v", m.Onboot[0].BindsAdd)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"kernel.tar", *m.Kernel.Tar, "none"},
		{"kernel.ucode", m.Kernel.UCode, "intel-ucode.cpio"},
		{"uid", *s.UID, 1000},
		{"gid", *s.GID, "format"},
		{"additionalGids", *s.AdditionalGids, []any{10, "format", "root"}},
		{"oomScoreAdj", *s.OOMScoreAdj, -500},
		{"readonly", *s.Readonly, true},
		{"memory.limit", *s.Resources.Memory.Limit, int64(268435456)},
		{"memory.disableOOMKiller", *s.Resources.Memory.DisableOOMKiller, false},
		{"cpu.shares", *s.Resources.CPU.Shares, uint64(512)},
		{"blockIO.weight", *s.Resources.BlockIO.Weight, uint16(10)},
		{"hugepageLimits.pageSize", s.Resources.HugepageLimits[0].Pagesize, "2MB"},
		{"uidMappings.hostID", (*s.UIDMappings)[0].HostID, uint32(100000)},
		{"sysctl", (*s.Sysctl)["net.ipv4.ip_forward"], "1"},
		{"runtime.bindNS.net", *s.Runtime.BindNS.Net, "/run/netns/everything"},
		{"runtime.namespace", *s.Runtime.Namespace, "everything"},
		{"runtime.interfaces", (*s.Runtime.Interfaces)[0].Peer, "veth-everything"},
		{"mounts[0].type", (*s.Mounts)[0].Type, "cgroup"},
		{"devices[1].major", (*m.Onboot[0].Devices)[1].Major, int64(5)},
		{"volumes[0].platforms", m.Volumes[0].Platforms, []string{"linux/amd64"}},
		{"trust.org", m.Trust.Org, []string{"linuxkit"}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", "kernal:\n  image: k\n", `x.yml:1:1: kernal: unknown field (did you mean "kernel"?)`},
		{"unknown image field", "services:\n  - name: a\n    image: b\n    capabilitys: [x]\n", `x.yml:4:5: services[0].capabilitys: unknown field (did you mean "capabilities"?)`},
		{"unknown nested field", "services:\n  - name: a\n    image: b\n    runtime:\n      mkdirs: [/x]\n", `x.yml:5:7: services[0].runtime.mkdirs: unknown field (did you mean "mkdir"?)`},
		{"unknown resources field", "services:\n  - name: a\n    image: b\n    resources:\n      memory:\n        limitt: 1\n", `x.yml:6:9: services[0].resources.memory.limitt: unknown field`},
		{"int for string", "kernel:\n  cmdline: 5\n", `x.yml:2:12: kernel.cmdline: must be a string, not the integer 5`},
		{"unquoted mode", "files:\n  - path: a\n    contents: x\n    mode: 0644\n", `x.yml:4:11: files[0].mode: must be a string, not the integer 0644`},
		{"string for bool", "services:\n  - name: a\n    image: b\n    readonly: \"yes\"\n", `x.yml:4:15: services[0].readonly: must be true or false`},
		{"string for int", "services:\n  - name: a\n    image: b\n    oomScoreAdj: lots\n", `x.yml:4:18: services[0].oomScoreAdj: must be an integer`},
		{"negative for unsigned", "services:\n  - name: a\n    image: b\n    resources:\n      cpu:\n        shares: -1\n", `x.yml:6:17: services[0].resources.cpu.shares: must be a non-negative integer`},
		{"list for string", "services:\n  - name: a\n    image: [b]\n", `x.yml:3:12: services[0].image: must be a string, not a list`},
		{"string for list", "services:\n  - name: a\n    image: b\n    command: /bin/sh\n", `x.yml:4:14: services[0].command: must be a list`},
		{"bool for uid", "services:\n  - name: a\n    image: b\n    uid: true\n", `x.yml:4:10: services[0].uid: must be a name or a number`},
		{"missing name", "onboot:\n  - image: b\n", `x.yml:2:5: onboot[0]: name is required`},
		{"missing image", "onboot:\n  - name: a\n", `x.yml:2:5: onboot[0] (a): image is required`},
		{"duplicate key", "services:\n  - name: a\n    image: b\n    name: c\n", `x.yml:4:5: services[0].name: duplicate key (first at line 2)`},
		{"volume without name", "volumes:\n  - image: alpine\n", `x.yml:2:5: volumes[0]: name is required`},
		{"syntax error", "kernel:\n  image: k\n\tcmdline: x\n", `x.yml:2: invalid YAML: yaml: line 2: found a tab character`},
		{"top level list", "- a\n", `x.yml:1:1: must be a mapping, not a list`},
		{"merge key", "x: &x {name: a}\n", `x.yml:1:1: x: unknown field`},
		{"merge key refused", "services:\n  - <<: {name: a}\n    image: b\n", `x.yml:2:5: services[0]: merge keys (<<) are not supported`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.yml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", tc.yaml)
			}
			var se *Error
			if !errors.As(err, &se) {
				t.Errorf("error %T is not a *spec.Error", err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error\n  %s\nwant prefix\n  %s", err, tc.want)
			}
		})
	}
}

func TestParseNullMeansUnset(t *testing.T) {
	m, err := Parse("x.yml", []byte("onboot:\nservices:\n  - name: a\n    image: b\n    capabilities:\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Onboot != nil || m.Services[0].Capabilities != nil {
		t.Errorf("null should leave fields unset: %+v", m)
	}
}

func TestValidateErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"duplicate service", "services:\n  - name: a\n    image: b\n  - name: a\n    image: c\n",
			`x.yml:4:5: services[1] (a): duplicate services name "a", first defined at x.yml:2: services[0] (a)`},
		{"bad service ref", "services:\n  - name: a\n    image: \"UPPER/case:tag\"\n", `x.yml:3:12: services[0].image: bad image reference "UPPER/case:tag"`},
		{"bad kernel ref", "kernel:\n  image: \"linuxkit/kernel:a:b\"\n", `x.yml:2:10: kernel.image: bad image reference`},
		{"bad init ref", "init:\n  - linuxkit/init\n  - \"bad ref\"\n", `x.yml:3:5: init[1]: bad image reference "bad ref"`},
		{"bad volume ref", "volumes:\n  - name: v\n    image: \"a b\"\n", `x.yml:2:5: volumes[0]: bad image reference "a b"`},
		{"bad volume name", "volumes:\n  - name: Data\n", `x.yml:2:5: volumes[0]: invalid volume name "Data"`},
		{"duplicate volume", "volumes:\n  - name: d\n  - name: d\n", `x.yml:3:5: volumes[1]: duplicate volume name "d", first defined at x.yml:2: volumes[0]`},
		{"slash in name", "services:\n  - name: a/b\n    image: b\n", `x.yml:2:5: services[0] (a/b): invalid name "a/b"`},
		{"bad bind", "services:\n  - name: a\n    image: b\n    binds: [/nocolon]\n", `x.yml:2:5: services[0] (a).binds[0]: bad bind: cannot parse bind "/nocolon": missing ':'`},
		{"bind too many colons", "services:\n  - name: a\n    image: b\n    binds.add: [/a:/b:ro:x]\n", `services[0] (a).binds.add[0]: bad bind: cannot parse bind "/a:/b:ro:x": too many ':'`},
		{"undefined volume", "services:\n  - name: a\n    image: b\n    binds: [data:/data]\n", `services[0] (a).binds[0]: volume "data" is not defined`},
		{"read-only volume bound rw", "volumes:\n  - name: data\n    readonly: true\nservices:\n  - name: a\n    image: b\n    binds: [data:/data]\n", `services[0] (a).binds[0]: volume "data" is read-only`},
		{"mount of undefined volume", "services:\n  - name: a\n    image: b\n    mounts:\n      - {type: bind, source: v, destination: /v}\n", `services[0] (a).mounts[0]: volume "v" is not defined`},
		{"mount without type", "services:\n  - name: a\n    image: b\n    mounts:\n      - {destination: /x}\n", `services[0] (a).mounts[0]: bad mount: mount for destination "/x" is missing type`},
		{"tmpfs too many colons", "services:\n  - name: a\n    image: b\n    tmpfs: [/a:b:c]\n", `services[0] (a).tmpfs[0]: bad tmpfs`},
		{"bad rlimit", "services:\n  - name: a\n    image: b\n    rlimits: [\"nofile,1\"]\n", `services[0] (a).rlimits[0]: bad rlimit`},
		{"unknown rlimit", "services:\n  - name: a\n    image: b\n    rlimits: [\"fish,1,2\"]\n", `unknown rlimit "fish"`},
		{"bad rlimit value", "services:\n  - name: a\n    image: b\n    rlimits: [\"nofile,lots,2\"]\n", `cannot parse rlimit value "lots"`},
		{"unknown capability", "services:\n  - name: a\n    image: b\n    capabilities: [CAP_FLY]\n", `x.yml:2:5: services[0] (a).capabilities: bad capabilities: unknown capability "CAP_FLY"`},
		{"bad device mode", "services:\n  - name: a\n    image: b\n    devices:\n      - {path: /dev/x, type: c, major: 1, minor: 2, mode: rw}\n", `services[0] (a).devices[0].mode: device mode must be octal`},
		{"file escapes root", "files:\n  - path: ../../etc/passwd\n    contents: x\n", `x.yml:2:5: files[0].path: bad path: path "../../etc/passwd" must not contain '..'`},
		{"file without contents", "files:\n  - path: etc/x\n", `x.yml:2:5: files[0]: contents of file "etc/x" not specified`},
		{"file with two kinds", "files:\n  - path: etc/x\n    contents: a\n    source: b\n", `only one of contents, source, metadata, symlink and directory`},
		{"directory with contents", "files:\n  - path: etc/x\n    directory: true\n    contents: a\n", `only one of contents`},
		{"bad file mode", "files:\n  - path: etc/x\n    contents: a\n    mode: \"rw\"\n", `x.yml:2:5: files[0].mode: bad mode`},
		{"bad metadata", "files:\n  - path: etc/x\n    metadata: toml\n", `files[0].metadata: unsupported metadata type "toml"`},
		{"unknown uid name", "services:\n  - name: a\n    image: b\n    uid: nobody\n", `x.yml:2:5: services[0] (a).uid: bad id: cannot find id "nobody"`},
		{"unknown additional gid", "services:\n  - name: a\n    image: b\n    additionalGids: [0, a, wheel]\n", `services[0] (a).additionalGids[2]: bad id: cannot find id "wheel"`},
		{"unknown file owner", "files:\n  - path: etc/x\n    contents: a\n    uid: nobody\n", `files[0].uid: bad id: cannot find id "nobody"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse("x.yml", []byte(tc.yaml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			err = m.Validate()
			if err == nil {
				t.Fatalf("Validate accepted:\n%s", tc.yaml)
			}
			var se *Error
			if !errors.As(err, &se) {
				t.Errorf("error %T is not a *spec.Error", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error\n  %s\nwant\n  %s", err, tc.want)
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	for _, tc := range []struct{ name, yaml string }{
		{"same name twice in onboot (LinuxKit's format, mount)", "onboot:\n  - name: a\n    image: b\n  - name: a\n    image: c\nonshutdown:\n  - name: a\n    image: b\n  - name: a\n    image: c\n"},
		{"same name in onboot and services", "onboot:\n  - name: dhcpcd\n    image: linuxkit/dhcpcd\nservices:\n  - name: dhcpcd\n    image: linuxkit/dhcpcd\n"},
		{"short image names", "init: [alpine]\nservices:\n  - name: a\n    image: busybox\n"},
		{"registry with port and digest", "services:\n  - name: a\n    image: 127.0.0.1:5000/x/y@sha256:0123456789012345678901234567890123456789012345678901234567890123\n"},
		{"capabilities in any case", "services:\n  - name: a\n    image: b\n    capabilities: [net_admin, CAP_SYS_ADMIN, sys_time]\n"},
		{"all and none", "services:\n  - name: a\n    image: b\n    capabilities: [ALL]\n    ambient: [none]\n"},
		{"read-only volume bound ro", "volumes:\n  - name: data\n    readonly: true\nservices:\n  - name: a\n    image: b\n    binds: [data:/data:ro]\n"},
		{"file owned by a container", "services:\n  - name: a\n    image: b\nfiles:\n  - path: x\n    contents: y\n    uid: a\n    gid: root\n"},
		{"empty document", ""},
		{"aliases", "x-common: &caps [CAP_NET_ADMIN]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse("x.yml", []byte(tc.yaml))
			if err != nil {
				if tc.name == "aliases" {
					return // an unknown top-level key, even if only an anchor holder
				}
				t.Fatalf("Parse: %v", err)
			}
			if err := m.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

func TestAliasesResolve(t *testing.T) {
	y := "services:\n  - name: a\n    image: b\n    capabilities: &caps [CAP_NET_ADMIN]\n  - name: c\n    image: d\n    capabilities: *caps\n"
	m, err := Parse("x.yml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if got := *m.Services[1].Capabilities; len(got) != 1 || got[0] != "CAP_NET_ADMIN" {
		t.Errorf("alias not resolved: %v", got)
	}
}

func TestMerge(t *testing.T) {
	m, err := Load("testdata/linuxkit.yml", "testdata/extra.yml")
	if err != nil {
		t.Fatal(err)
	}
	if m.Kernel.Image != "linuxkit/kernel:6.6.71" {
		t.Errorf("kernel image from the first file lost: %q", m.Kernel.Image)
	}
	if m.Kernel.Cmdline != "console=ttyS0" {
		t.Errorf("kernel cmdline not replaced by the second file: %q", m.Kernel.Cmdline)
	}
	var names []string
	for _, s := range m.Services {
		names = append(names, s.Name)
	}
	if want := []string{"getty", "rngd", "nginx", "sshd"}; !reflect.DeepEqual(names, want) {
		t.Errorf("services = %v, want %v", names, want)
	}
	if len(m.Init) != 4 || len(m.Files) != 5 {
		t.Errorf("init/files not appended: %d init, %d files", len(m.Init), len(m.Files))
	}
	out, err := m.Defaulted().Bytes()
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/merged.dry-run.golden", out)
}

func TestMergeDoesNotModifyInputs(t *testing.T) {
	a, err := Parse("a.yml", []byte("init: [a]\nservices:\n  - name: a\n    image: a\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse("b.yml", []byte("kernel:\n  image: k\n  tar: none\ninit: [b]\n"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Merge(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Init) != 1 || a.Kernel.Image != "" || len(b.Services) != 0 {
		t.Errorf("inputs modified: %+v %+v", a, b)
	}
	if !reflect.DeepEqual(m.Init, []string{"a", "b"}) || *m.Kernel.Tar != "none" {
		t.Errorf("merge = %+v", m)
	}
}

func TestMergeDuplicateServiceAcrossFiles(t *testing.T) {
	a, _ := Parse("a.yml", []byte("services:\n  - name: getty\n    image: a\n"))
	b, _ := Parse("b.yml", []byte("\nservices:\n  - name: getty\n    image: b\n"))
	_, err := Merge(a, b)
	want := `b.yml:3:5: services[0] (getty): duplicate services name "getty", first defined at a.yml:2: services[0] (getty)`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(); err == nil {
		t.Error("Load() with no files accepted")
	}
	if _, err := Load("testdata/missing.yml"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestImageRefs(t *testing.T) {
	m, err := Load("testdata/full.yml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"alpine:3.20",
		"example.com/org/everything@sha256:0123456789012345678901234567890123456789012345678901234567890123",
		"linuxkit/format:v1.0.0",
		"linuxkit/init:v1.0.0",
		"linuxkit/kernel:6.6.71",
	}
	if got := m.ImageRefs(); !reflect.DeepEqual(got, want) {
		t.Errorf("ImageRefs = %v\nwant %v", got, want)
	}
}

func TestIDMap(t *testing.T) {
	m, err := Load("testdata/linuxkit.yml")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint32{"sysctl": 100, "dhcpcd": 101, "shutdown": 102, "getty": 103, "rngd": 104, "nginx": 105}
	if got := m.IDMap(); !reflect.DeepEqual(got, want) {
		t.Errorf("IDMap = %v, want %v", got, want)
	}
}

func TestBytesWithoutKernel(t *testing.T) {
	m, err := Parse("x.yml", []byte("services: [{name: a, image: b}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Defaulted().Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if want := "services:\n  - name: a\n    image: b\n"; string(out) != want {
		t.Errorf("Bytes = %q, want %q", out, want)
	}
}
