package sysinit

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/mobykit/mobykit/assembler/spec"
)

func TestModulesDepLoadOrder(t *testing.T) {
	md, err := ParseModulesDep(strings.NewReader(`# comment
kernel/virtio_net.ko: kernel/net_failover.ko kernel/failover.ko
kernel/net_failover.ko: kernel/failover.ko
kernel/failover.ko:
kernel/overlay.ko:
`))
	if err != nil {
		t.Fatal(err)
	}
	got := md.LoadOrder()
	want := []string{"kernel/failover.ko", "kernel/net_failover.ko", "kernel/virtio_net.ko", "kernel/overlay.ko"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("load order = %v, want %v", got, want)
	}
}

func TestModulesDepRejects(t *testing.T) {
	for _, in := range []string{"no colon here\n", "../../etc/x.ko:\n", "a.ko: /abs/b.ko\n"} {
		if _, err := ParseModulesDep(strings.NewReader(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// FuzzParseModulesDep: modules.dep comes from the image; a bad one must give an error, and
// every path accepted must stay inside the modules folder.
func FuzzParseModulesDep(f *testing.F) {
	f.Add("a.ko: b.ko\nb.ko:\n")
	f.Add("x.ko: ../y.ko\n")
	f.Fuzz(func(t *testing.T, s string) {
		md, err := ParseModulesDep(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, m := range md.LoadOrder() {
			if strings.Contains(m, "..") || strings.HasPrefix(m, "/") {
				t.Fatalf("path %q accepted", m)
			}
		}
	})
}

func TestParseMountOptions(t *testing.T) {
	for _, tc := range []struct {
		opts  []string
		flags uintptr
		prop  []uintptr
		data  string
	}{
		{[]string{"rbind", "rw", "rprivate"}, unix.MS_BIND | unix.MS_REC, []uintptr{unix.MS_PRIVATE | unix.MS_REC}, ""},
		{[]string{"ro", "nosuid", "nodev", "mode=0755", "size=10%"}, unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV, nil, "mode=0755,size=10%"},
		{[]string{"remount", "private"}, unix.MS_REMOUNT, []uintptr{unix.MS_PRIVATE}, ""},
		{[]string{"lowerdir=/a", "upperdir=/b", "workdir=/c"}, 0, nil, "lowerdir=/a,upperdir=/b,workdir=/c"},
		{[]string{"ro", "rw"}, 0, nil, ""},
	} {
		t.Run(strings.Join(tc.opts, ","), func(t *testing.T) {
			flags, prop, data := ParseMountOptions(tc.opts)
			if flags != tc.flags || !reflect.DeepEqual(prop, tc.prop) || data != tc.data {
				t.Errorf("got %#x %v %q, want %#x %v %q", flags, prop, data, tc.flags, tc.prop, tc.data)
			}
		})
	}
}

// TestRuntimeJSONFromAssembler checks that init reads every field of runtime.json as the
// assembler writes it (spec.Runtime).
func TestRuntimeJSONFromAssembler(t *testing.T) {
	s := func(v string) *string { return &v }
	cg, mk := []string{"podruntime/x"}, []string{"/var/lib/x"}
	mounts := []specs.Mount{{Destination: "/containers/services/x/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nodev"}}}
	ifs := []spec.Interface{{Name: "eth1", Add: "veth", Peer: "veth1", CreateInRoot: true}}
	data, err := json.Marshal(spec.Runtime{
		Cgroups: &cg, Mkdir: &mk, Mounts: &mounts, Interfaces: &ifs,
		BindNS:    spec.Namespaces{Net: s("/run/netns/x"), Uts: s("")},
		Namespace: s("services.linuxkit"),
	})
	if err != nil {
		t.Fatal(err)
	}
	var rt Runtime
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rt); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	want := Runtime{
		Cgroups: cg, Mkdir: mk,
		Mounts:     []Mount{{Destination: "/containers/services/x/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nodev"}}},
		Interfaces: []Interface{{Name: "eth1", Add: "veth", Peer: "veth1", CreateInRoot: true}},
		BindNS:     Namespaces{Net: "/run/netns/x"},
		Namespace:  "services.linuxkit",
	}
	if !reflect.DeepEqual(rt, want) {
		t.Errorf("runtime = %+v\nwant %+v", rt, want)
	}
}

func TestNetlinkAttr(t *testing.T) {
	a := nlAttr{typ: 3, data: cstr("eth0")}.bytes()
	// len 4+5=9, padded to 12
	want := []byte{9, 0, 3, 0, 'e', 't', 'h', '0', 0, 0, 0, 0}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("attr = %v, want %v", a, want)
	}
	nested := nlAttr{typ: 18, kids: []nlAttr{{typ: 1, data: cstr("veth")}}}.bytes()
	if len(nested) != 4+12 || nested[0] != 16 {
		t.Errorf("nested attr = %v", nested)
	}
}

func TestKernelThread(t *testing.T) {
	if !isKernelThread("2 (kthreadd) S 0 0 0") || !isKernelThread("15 (ksoftirqd/0) S 2 0 0") {
		t.Error("kernel threads not recognised")
	}
	if isKernelThread("300 (my (odd) prog) S 1 300 300") {
		t.Error("a process was taken for a kernel thread")
	}
}

func TestLoadAllRespectsDependencies(t *testing.T) {
	md, err := ParseModulesDep(strings.NewReader("c.ko: b.ko a.ko\nb.ko: a.ko\na.ko:\nd.ko:\nx.ko: bad.ko\nbad.ko:\n"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	loaded := map[string]bool{}
	n, err := md.loadAll(func(m string) error {
		mu.Lock()
		defer mu.Unlock()
		for _, d := range md.Deps[m] {
			if !loaded[d] {
				t.Errorf("%s loaded before its dependency %s", m, d)
			}
		}
		if m == "bad.ko" {
			return errors.New("boom")
		}
		loaded[m] = true
		return nil
	})
	if n != 4 || err == nil || !strings.Contains(err.Error(), "bad.ko") || !strings.Contains(err.Error(), "x.ko: dependency bad.ko failed") {
		t.Errorf("loaded %d, err %v", n, err)
	}
	if loaded["x.ko"] {
		t.Error("x.ko loaded although its dependency failed")
	}
}

func TestServiceLogRotates(t *testing.T) {
	old := LogLimit
	LogLimit = 20
	defer func() { LogLimit = old }()
	dir := t.TempDir()
	var con strings.Builder
	c := NewConsole(&con)
	w, done, err := c.logPipe("svc", filepath.Join(dir, "svc.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"line one\n", "line two\n", "line three\n", "four\n"} {
		w.WriteString(l)
	}
	w.Close()
	<-done
	cur, _ := os.ReadFile(filepath.Join(dir, "svc.log"))
	prev, _ := os.ReadFile(filepath.Join(dir, "svc.log.0"))
	if string(prev) != "line one\nline two\n" || string(cur) != "line three\nfour\n" {
		t.Errorf("svc.log.0 = %q, svc.log = %q", prev, cur)
	}
	if !strings.Contains(con.String(), "svc: line one\n") || !strings.Contains(con.String(), "svc: four\n") {
		t.Errorf("console = %q", con.String())
	}
}
