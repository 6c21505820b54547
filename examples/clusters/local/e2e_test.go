package local_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mobykit/mobykit/assembler/image"
	"github.com/mobykit/mobykit/internal/clustertest"
	"github.com/mobykit/mobykit/internal/testenv"
	"github.com/mobykit/mobykit/pkgbuild"
	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/rpc"
	"github.com/mobykit/mobykit/vm"
)

// repoRoot is the module root, three levels up from this folder.
func repoRoot(t testing.TB) string {
	r, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// buildImages builds the system images the example spec uses, and the web member image, into
// the default image cache (tagged by input hash, so only the first run pays).
func buildImages(t testing.TB) {
	t.Helper()
	root := repoRoot(t)
	c, err := image.OpenCache(os.Getenv("MOBYKIT_CACHE"))
	if err != nil {
		t.Fatal(err)
	}
	b := &pkgbuild.Builder{Cache: c, WorkDir: pkgbuild.DefaultWorkDir(), Log: slog.Default()}
	for _, d := range []string{"images/kernel", "images/init", "images/runc", "images/sysctl", "images/dhcpcd", "images/metadata", "examples/clusters/local/web"} {
		r, err := pkgbuild.LoadRecipe(filepath.Join(root, d))
		if err != nil {
			t.Fatalf("recipe %s: %v", d, err)
		}
		if _, err := b.Build(context.Background(), r); err != nil {
			t.Fatalf("pkg build %s: %v", d, err)
		}
	}
}

// cluster is the example running in-process (see clustertest), with the web group's view of
// its members.
type cluster struct {
	*clustertest.Cluster
	t testing.TB
}

// commit commits the group.
func (c *cluster) commit() { c.Commit(c.Group()) }

type member struct {
	ID    spi.ID
	Hash  string
	Web   string // host:port of the published port 80
	State string
}

func (c *cluster) members() []member {
	c.t.Helper()
	ms, err := c.list()
	if err != nil {
		c.t.Fatal(err)
	}
	return ms
}

func (c *cluster) list() ([]member, error) {
	ds, err := c.Instances.DescribeInstances(context.Background(), map[string]string{spi.GroupTag: "web"}, true)
	if err != nil {
		return nil, err
	}
	var out []member
	for _, d := range ds {
		var p struct {
			Ports    map[string]string
			StateDir string `json:"state_dir"`
		}
		json.Unmarshal(d.Properties, &p)
		out = append(out, member{ID: d.ID, Hash: d.Tags[spi.ConfigHashTag], Web: p.Ports["80/tcp"], State: p.StateDir})
	}
	return out, nil
}

func get(addr, path string) (string, error) {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%s: %s", path, resp.Status)
	}
	return string(b), err
}

// waitConverged waits until the group has exactly want members, all at the latest committed
// hash and answering with version, checking at every step that no more than maxVMs QEMU
// processes run. It returns the members.
func (c *cluster) waitConverged(version string, want, maxVMs int, d time.Duration) []member {
	c.t.Helper()
	deadline := time.Now().Add(d)
	peak := 0
	for {
		if n := c.QEMUCount(); n > peak {
			peak = n
			if n > maxVMs {
				c.t.Fatalf("%d QEMU processes running, more than Size+MaxSurge = %d", n, maxVMs)
			}
		}
		ms := c.members()
		ok := len(ms) == want
		hashes := map[string]bool{}
		for _, m := range ms {
			hashes[m.Hash] = true
			body, err := get(m.Web, "/")
			if err != nil || !strings.Contains(body, "version="+version+" ") {
				ok = false
			}
		}
		if ok && len(hashes) == 1 {
			c.t.Logf("converged on version %s, peak %d QEMU processes", version, peak)
			return ms
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("not converged on version %s within %v: %+v", version, d, ms)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestLocalCluster is issue 6's end-to-end check, on the example in this folder: commit the
// 3-VM group and see every member healthy and reaching the others over the group network;
// edit the spec and commit again and watch a rolling update replace every VM with never more
// than Size+MaxSurge running; kill one QEMU and see it replaced; restart the plugins and the
// controller and see the group adopted; destroy the group and find no QEMU process, socket or
// state folder left.
func TestLocalCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("boots 7 VMs under TCG (several minutes); skipped with -short")
	}
	testenv.RequireQEMU(t)
	buildImages(t)
	runCluster(t, nil)
}

// figures are the timings runCluster measures.
type figures struct {
	Boot, Create, Roll, Replace time.Duration
}

// bootOne boots one member outside any group (Prepare, Provision, until it serves HTTP,
// Destroy) and returns the time from Provision to serving: the unit the roll is compared to.
func (c *cluster) bootOne() time.Duration {
	c.t.Helper()
	var g struct {
		Properties struct {
			Instance, Flavor struct{ Properties json.RawMessage }
		}
	}
	json.Unmarshal(c.Group().Properties, &g.Properties)
	fl := rpc.NewFlavorClient(c.Socket("flavor-moby"), "")
	ctx := context.Background()
	spec, err := fl.Prepare(ctx, spi.Any(g.Properties.Flavor.Properties), spi.Spec{Properties: spi.Any(g.Properties.Instance.Properties), Tags: map[string]string{"bench": "one"}}, spi.Allocation{Size: 1}, spi.Index{Group: "bench", Sequence: 1})
	if err != nil {
		c.t.Fatal(err)
	}
	start := time.Now()
	id, err := c.Instances.Provision(ctx, spec)
	if err != nil {
		c.t.Fatal(err)
	}
	defer c.Instances.Destroy(ctx, *id, spi.Context{Reason: spi.ReasonTerminate})
	ds, err := c.Instances.DescribeInstances(ctx, map[string]string{"bench": "one"}, true)
	if err != nil || len(ds) != 1 {
		c.t.Fatalf("bench VM: %v %v", ds, err)
	}
	var p struct{ Ports map[string]string }
	json.Unmarshal(ds[0].Properties, &p)
	for {
		if _, err := get(p.Ports["80/tcp"], "/"); err == nil {
			return time.Since(start)
		}
		if time.Since(start) > 5*time.Minute {
			c.t.Fatal("bench VM did not serve within 5m")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// BenchmarkLocalCluster prints the figures: one VM's boot-to-serving time, creating
// the 3-VM group, rolling it with MaxSurge 1 (target: at most about 3.5x one boot), and
// replacing a killed VM. Run with -benchtime=1x: each iteration boots 8 VMs.
func BenchmarkLocalCluster(b *testing.B) {
	testenv.RequireQEMU(b)
	buildImages(b)
	for i := 0; i < b.N; i++ {
		var f figures
		runCluster(b, &f)
		b.ReportMetric(f.Boot.Seconds(), "boot-s")
		b.ReportMetric(f.Create.Seconds(), "create3-s")
		b.ReportMetric(f.Roll.Seconds(), "roll3-s")
		b.ReportMetric(f.Roll.Seconds()/f.Boot.Seconds(), "roll/boot")
		b.ReportMetric(f.Replace.Seconds(), "replace-s")
	}
}

func runCluster(t testing.TB, fig *figures) {
	c := &cluster{Cluster: clustertest.New(t, "lc"), t: t}
	dir := c.Dir
	spec := c.Example("web.yml", "group.json")
	c.OwnNetwork("web-cluster")
	if !strings.Contains(string(c.GroupDoc), `"spec": "web.yml"`) {
		t.Fatal(`group.json does not name its spec relative to itself ("spec": "web.yml")`)
	}
	c.GroupDoc = []byte(strings.Replace(string(c.GroupDoc), `"shutdown_timeout": "10s"`, `"shutdown_timeout": "3s"`, 1))

	c.StartPlugins()
	c.StartController()

	if fig != nil {
		fig.Boot = c.bootOne()
		t.Logf("FIGURE one VM, Provision to serving: %v", fig.Boot)
	}
	start := time.Now()
	c.commit()
	ms := c.waitConverged("1", 3, 3, 6*time.Minute)
	create := time.Since(start)
	t.Logf("FIGURE create 3-VM group to all serving: %v", create)

	// Each member reaches every member over the group network.
	for _, m := range ms {
		var peers string
		var err error
		for i := 0; i < 20; i++ {
			peers, err = get(m.Web, "/peers")
			if err == nil && strings.Count(peers, "instance=") == 3 {
				break
			}
			time.Sleep(time.Second)
		}
		if strings.Count(peers, "instance=") != 3 {
			t.Fatalf("%s sees %q on the group network, want all 3 members (err %v)", m.ID, peers, err)
		}
		for _, o := range ms {
			if !strings.Contains(peers, "instance="+string(o.ID)+" ") {
				t.Fatalf("%s does not reach %s: %q", m.ID, o.ID, peers)
			}
		}
	}

	// Edit the spec and commit: a rolling update (the inlined content changes the hash).
	os.WriteFile(c.SpecPath, []byte(strings.Replace(string(spec), "VERSION=1", "VERSION=2", 1)), 0o644)
	start = time.Now()
	c.commit()
	ms2 := c.waitConverged("2", 3, 4, 10*time.Minute)
	roll := time.Since(start)
	t.Logf("FIGURE roll 3-VM group (MaxSurge 1): %v", roll)
	for _, a := range ms {
		for _, b := range ms2 {
			if a.ID == b.ID {
				t.Fatalf("%s survived the rolling update", a.ID)
			}
		}
	}

	// Kill one QEMU: the group replaces it.
	victim := ms2[0]
	var p vm.Process
	if err := vm.ReadJSON(filepath.Join(victim.State, vm.ProcessFile), &p); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	syscall.Kill(p.PID, syscall.SIGKILL)
	ms3 := c.waitConverged("2", 3, 4, 6*time.Minute)
	for _, m := range ms3 {
		if m.ID == victim.ID {
			t.Fatalf("killed %s still listed", victim.ID)
		}
	}
	t.Logf("FIGURE replace a killed VM: %v", time.Since(start))
	if fig != nil {
		fig.Create, fig.Roll, fig.Replace = create, roll, time.Since(start)
	}

	// Restart the plugins and the controller: the group is adopted, nobody re-created.
	c.StopController()
	c.StopPlugins()
	c.StartPlugins()
	c.StartController()
	time.Sleep(3 * time.Second)
	ms4 := c.waitConverged("2", 3, 3, time.Minute)
	if fmt.Sprint(ids(ms4)) != fmt.Sprint(ids(ms3)) {
		t.Fatalf("after restart the group has %v, want the same members %v", ids(ms4), ids(ms3))
	}

	// Destroy the group: nothing left.
	if err := c.Ctl.DestroyGroup(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for c.QEMUCount() > 0 || len(c.members()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after DestroyGroup: %d QEMU processes, members %v", c.QEMUCount(), c.members())
		}
		time.Sleep(500 * time.Millisecond)
	}
	c.StopController()
	c.StopPlugins()
	if left, _ := (vm.Store{Root: filepath.Join(dir, "qemu", "instances")}).List(); len(left) != 0 {
		t.Fatalf("state folders left: %v", left)
	}
	if socks, _ := filepath.Glob(filepath.Join(dir, "plugins", "*")); len(socks) != 0 {
		t.Fatalf("sockets left: %v", socks)
	}
	if n := c.QEMUCount(); n != 0 {
		t.Fatalf("%d QEMU processes left", n)
	}
}

// TestGroupDocOwnNetwork checks what the cluster tests commit: group.json with only the
// network's name changed, to one of the run's own.
func TestGroupDocOwnNetwork(t *testing.T) {
	orig, err := os.ReadFile("group.json")
	if err != nil {
		t.Fatal(err)
	}
	type doc = map[string]any
	network := func(d doc) doc {
		return d["Properties"].(doc)["Instance"].(doc)["Properties"].(doc)["network"].(doc)
	}
	var want doc
	if err := json.Unmarshal(orig, &want); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for range 2 {
		var got doc
		c := clustertest.New(t, "lc")
		c.Example("web.yml", "group.json")
		c.OwnNetwork("web-cluster")
		if err := json.Unmarshal(c.GroupDoc, &got); err != nil {
			t.Fatal(err)
		}
		name, _ := network(got)["name"].(string)
		if name == network(want)["name"] || names[name] || !strings.HasPrefix(name, "web-cluster-") {
			t.Fatalf("network named %q: want web-cluster-SOMETHING, new to this test (had %v)", name, names)
		}
		names[name] = true
		network(got)["name"] = network(want)["name"]
		if g, w := fmt.Sprint(got), fmt.Sprint(want); g != w {
			t.Errorf("group.json changed beyond the network's name:\n%s\nwant\n%s", g, w)
		}
	}
}

func ids(ms []member) []spi.ID {
	var out []spi.ID
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}
