// Package clustertest runs a cluster example (examples/clusters/...) inside a test as
// `mobykit plugin start` runs it: instance-qemu and flavor-moby served on unix sockets in a
// folder of the test's, a group controller reaching them through those sockets, and the
// example's group file inlined as `mobykit group commit` sends it.
package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mobykit/mobykit/group"
	"github.com/mobykit/mobykit/group/store"
	flavormoby "github.com/mobykit/mobykit/plugins/flavor-moby"
	instanceqemu "github.com/mobykit/mobykit/plugins/instance-qemu"
	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/rpc"
	"github.com/mobykit/mobykit/vm"
)

// Cluster is one example's plugins, controller and files in a temporary folder.
type Cluster struct {
	T testing.TB
	// Dir is a short temporary folder (QMP socket paths must be short): the plugins' sockets
	// (plugins/), their state (qemu/, flavor/), the controller's (groups/) and the example's
	// spec, copied next to the group file as the file names it.
	Dir string
	// Cache is flavor-moby's image cache; "" is MOBYKIT_CACHE's.
	Cache string
	// SpecPath is the copied spec; GroupDoc the group file.
	SpecPath string
	GroupDoc []byte

	Flavor       *flavormoby.Plugin
	Instances    spi.Instance // instance-qemu, through its socket
	FlavorClient spi.Flavor   // flavor-moby, through its socket
	Ctl          *group.Controller
	servers      []*rpc.Server
}

// New makes the cluster's folder (prefix names it) and registers its cleanup: whatever
// happened, every VM the plugin knows is destroyed, any VM still recorded is killed by its
// process record, the plugins and the controller are stopped and the folder removed.
func New(t testing.TB, prefix string) *Cluster {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{T: t, Dir: dir}
	t.Cleanup(func() {
		if c.Instances != nil {
			if ds, err := c.Instances.DescribeInstances(context.Background(), map[string]string{}, false); err == nil {
				for _, d := range ds {
					c.Instances.Destroy(context.Background(), d.ID, spi.Context{Reason: spi.ReasonTerminate})
				}
			}
		}
		c.StopController()
		c.StopPlugins()
		recs, _ := filepath.Glob(filepath.Join(dir, "qemu", "instances", "*", vm.ProcessFile))
		for _, r := range recs {
			var p vm.Process
			if vm.ReadJSON(r, &p) == nil {
				p.Stop(context.Background(), nil, 0)
			}
		}
		os.RemoveAll(dir)
	})
	return c
}

// Example copies the example's spec (in the working folder) into the cluster's folder and
// reads its group file, and returns the spec's contents.
func (c *Cluster) Example(spec, groupFile string) []byte {
	c.T.Helper()
	b, err := os.ReadFile(spec)
	if err != nil {
		c.T.Fatal(err)
	}
	c.SpecPath = filepath.Join(c.Dir, filepath.Base(spec))
	if err := os.WriteFile(c.SpecPath, b, 0o644); err != nil {
		c.T.Fatal(err)
	}
	if c.GroupDoc, err = os.ReadFile(groupFile); err != nil {
		c.T.Fatal(err)
	}
	return b
}

// OwnNetwork renames the group network called name in GroupDoc to one of this run's own (after
// the cluster's folder, which no other run has). instance-qemu derives a network's segment
// from its name, so two runs on one machine naming the same network would share a segment,
// hand out the same addresses on it and see each other's members. The subnet stays: separate
// segments do not see each other's addresses.
func (c *Cluster) OwnNetwork(name string) {
	c.T.Helper()
	named := fmt.Sprintf(`"network": { "name": %q, `, name)
	if strings.Count(string(c.GroupDoc), named) != 1 {
		c.T.Fatalf("the group file does not name its network once as %s", named)
	}
	own := fmt.Sprintf(`"network": { "name": %q, `, name+"-"+filepath.Base(c.Dir))
	c.GroupDoc = []byte(strings.Replace(string(c.GroupDoc), named, own, 1))
}

// Socket is the path of the plugin called name.
func (c *Cluster) Socket(name string) string { return filepath.Join(c.Dir, "plugins", name) }

// StartPlugins serves instance-qemu and flavor-moby on their sockets.
func (c *Cluster) StartPlugins() {
	c.T.Helper()
	if err := os.MkdirAll(filepath.Join(c.Dir, "plugins"), 0o755); err != nil {
		c.T.Fatal(err)
	}
	iq, err := instanceqemu.New(filepath.Join(c.Dir, "qemu"), nil)
	if err != nil {
		c.T.Fatal(err)
	}
	cache := c.Cache
	if cache == "" {
		cache = os.Getenv("MOBYKIT_CACHE")
	}
	fm, err := flavormoby.New(filepath.Join(c.Dir, "flavor"), flavormoby.AssemblerBuilder{CacheDir: cache}, nil)
	if err != nil {
		c.T.Fatal(err)
	}
	c.Flavor = fm
	for name, p := range map[string]rpc.Plugin{"instance-qemu": rpc.Instance(iq), "flavor-moby": rpc.Flavor(fm)} {
		s, err := rpc.Start(c.Socket(name), p)
		if err != nil {
			c.T.Fatal(err)
		}
		c.servers = append(c.servers, s)
	}
	c.Instances = rpc.NewInstanceClient(c.Socket("instance-qemu"), "")
	c.FlavorClient = rpc.NewFlavorClient(c.Socket("flavor-moby"), "")
}

// StopPlugins stops serving the plugins (their VMs keep running).
func (c *Cluster) StopPlugins() {
	for _, s := range c.servers {
		s.Close()
	}
	c.servers = nil
	if c.Flavor != nil {
		c.Flavor.Close()
		c.Flavor = nil
	}
}

// Find is how the controller finds a plugin: its socket, if it exists.
func (c *Cluster) Find(lookup string) (string, error) {
	p := c.Socket(lookup)
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	return p, nil
}

// StartController starts a group controller on a file store in the cluster's folder, with
// the default settings (the examples' figures are for those).
func (c *Cluster) StartController() {
	c.T.Helper()
	st, err := store.NewFileStore(filepath.Join(c.Dir, "groups"))
	if err != nil {
		c.T.Fatal(err)
	}
	c.Ctl = group.New(group.RPCPlugins{Find: c.Find}, st, group.Options{})
	if err := c.Ctl.Start(context.Background()); err != nil {
		c.T.Fatal(err)
	}
}

// StopController stops the controller (its groups' VMs keep running).
func (c *Cluster) StopController() {
	if c.Ctl != nil {
		c.Ctl.Stop()
		c.Ctl = nil
	}
}

// Group is the group file as `mobykit group commit` sends it: its spec, named relative to
// the group file, read from the cluster's folder and sent inline, so that an edit of the
// spec changes the config hash.
func (c *Cluster) Group() spi.GroupSpec { return c.GroupOf(c.GroupDoc) }

// GroupOf is Group for another group file, doc.
func (c *Cluster) GroupOf(doc []byte) spi.GroupSpec {
	c.T.Helper()
	var g spi.GroupSpec
	if err := json.Unmarshal(doc, &g); err != nil {
		c.T.Fatalf("group file: %v", err)
	}
	g, err := flavormoby.InlineGroup(g, filepath.Dir(c.SpecPath), "flavor-moby")
	if err != nil {
		c.T.Fatal(err)
	}
	return g
}

// Commit commits g through the controller and logs what it said.
func (c *Cluster) Commit(g spi.GroupSpec) {
	c.T.Helper()
	details, err := c.Ctl.CommitGroup(context.Background(), g, false)
	if err != nil {
		c.T.Fatal(err)
	}
	c.T.Logf("commit %s: %s", g.ID, details)
}

// QEMUCount counts the QEMU processes running under the cluster's folder.
func (c *Cluster) QEMUCount() int {
	out, _ := exec.Command("pgrep", "-f", "qemu-system.*"+c.Dir).Output()
	return len(strings.Fields(string(out)))
}
