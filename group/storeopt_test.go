package group

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/mobykit/mobykit/group/fake"
	"github.com/mobykit/mobykit/internal/etcdtest"
	"github.com/mobykit/mobykit/launcher"
	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/discovery"
	"github.com/mobykit/mobykit/spi/rpc"
)

func parseStoreFlags(t *testing.T, args ...string) (StoreOptions, error) {
	var o StoreOptions
	fs := pflag.NewFlagSet("start", pflag.ContinueOnError)
	AddStoreFlags(fs, &o)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	_, err := o.Endpoints()
	return o, err
}

func TestStoreFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		eps  []string
		err  string
	}{
		{args: nil},
		{args: []string{"--store", "file"}},
		{args: []string{"--store", "etcd://10.0.0.1:2379,[::1]:2379"}, eps: []string{"http://10.0.0.1:2379", "http://[::1]:2379"}},
		{args: []string{"--store", "etcd://e1:2379", "--cacert", "ca.pem"}, eps: []string{"https://e1:2379"}},
		{args: []string{"--store", "etcd://e1:2379", "--cert", "c.pem"}, err: "--cert and --key go together"},
		{args: []string{"--store", "etcd://e1"}, err: `endpoint "e1": want HOST:PORT`},
		{args: []string{"--store", "etcd://e1:2379,"}, err: `endpoint "": want HOST:PORT`},
		{args: []string{"--store", "etcd://u@e1:2379"}, err: `want HOST:PORT`},
		{args: []string{"--store", "etcd://e1:2379/x"}, err: `want HOST:PORT`},
		{args: []string{"--store", "consul://c:8500"}, err: `--store "consul://c:8500": want file or etcd://`},
		{args: []string{"--user", "root"}, err: "the file store takes none"},
	} {
		o, err := parseStoreFlags(t, c.args...)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: %v, want an error with %q", c.args, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", c.args, err)
			continue
		}
		if eps, _ := o.Endpoints(); !reflect.DeepEqual(eps, c.eps) {
			t.Errorf("%v: endpoints %v, want %v", c.args, eps, c.eps)
		}
	}
	// A detached plugin gets the same options; the password goes through the environment, never
	// its command line.
	o, err := parseStoreFlags(t, "--store", "etcd://e1:2379", "--cacert", "ca.pem", "--cert", "c.pem", "--key", "k.pem",
		"--user", "root:s3cret", "--lease-ttl", "4s")
	if err != nil {
		t.Fatal(err)
	}
	args := o.Args()
	if strings.Contains(strings.Join(args, " "), "s3cret") {
		t.Fatalf("password on the command line: %v", args)
	}
	again, err := parseStoreFlags(t, args...)
	if err != nil || again.Store != o.Store || again.CACert != "ca.pem" || again.Key != "k.pem" || again.User != "root" || again.LeaseTTL != 4*time.Second {
		t.Fatalf("Args round trip: %+v %v", again, err)
	}
	if env := o.Env(); !reflect.DeepEqual(env, []string{EnvStorePassword + "=s3cret"}) {
		t.Fatalf("Env: %v", env)
	}
}

// Two controllers on an etcd store, as the launcher runs them, on sockets: a commit sent to
// either (the follower forwards it over spi/rpc) is carried out once; both are stopped and one
// is started again: it knows the group from etcd and does not create its members again.
func TestEtcdControllersKeepStateAcrossRestart(t *testing.T) {
	srv := etcdtest.Start(t)
	dir, err := os.MkdirTemp("", "grpe")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	plugins := filepath.Join(dir, "p")
	if err := os.Mkdir(plugins, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvPollInterval, "30ms")
	cloud := fake.New(nil)
	launcherTest.cloud = cloud
	launcherTest.store = StoreOptions{Store: "etcd://" + strings.TrimPrefix(srv.Endpoint, "http://"), LeaseTTL: 2 * time.Second}
	registerLauncherKinds()
	ctx := context.Background()
	start := func(kind, name string) *launcher.Running {
		r, err := launcher.Start(ctx, plugins, launcher.Spec{Kind: kind, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	defer start("test-fake-instance", "fi").Stop()
	defer start("test-fake-flavor", "ff").Stop()
	g1 := start("test-group-etcd", "group")
	g2 := start("test-group-etcd", "group2")
	client := func(name string) *rpc.GroupClient {
		addr, err := discovery.Find(plugins, name)
		if err != nil {
			t.Fatal(err)
		}
		return rpc.NewGroupClient(addr, name)
	}
	web := spi.GroupSpec{ID: "web", Properties: spi.Any(`{"Allocation":{"Size":3},"Instance":{"Plugin":"fi","Properties":{"v":"1"}},"Flavor":{"Plugin":"ff","Properties":{}}}`)}
	// Until one of them leads, a call may be refused with a clear error; retry.
	var cerr error
	waitFor(t, "a leader to take the commit", 30*time.Second, func() bool {
		_, cerr = client("group2").CommitGroup(ctx, web, false)
		return cerr == nil
	})
	waitFor(t, "3 members", 10*time.Second, func() bool { n, _ := versions(cloud, "web", ""); return n == 3 })
	for _, name := range []string{"group", "group2"} {
		d, err := client(name).DescribeGroup(ctx, "web")
		if err != nil || len(d.Instances) != 3 {
			t.Fatalf("describe through %s: %d members, %v", name, len(d.Instances), err)
		}
	}
	g2.Stop()
	g1.Stop()
	provisions := cloud.Calls()["Instance.Provision"]
	g1 = start("test-group-etcd", "group")
	defer g1.Stop()
	specs, err := client("group").InspectGroups(ctx)
	if err != nil || len(specs) != 1 || specs[0].ID != "web" {
		t.Fatalf("inspect after restart: %v %v", specs, err)
	}
	waitFor(t, "the restarted controller to lead", 30*time.Second, func() bool {
		_, err := client("group").UpdateStatus(ctx, "web")
		return err == nil
	})
	if err := client("group").SetSize(ctx, "web", 4); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "4 members", 10*time.Second, func() bool { n, _ := versions(cloud, "web", ""); return n == 4 })
	if got := cloud.Calls()["Instance.Provision"]; got != provisions+1 || provisions != 3 {
		t.Fatalf("%d provisions after the restart and a scale to 4, want %d", got-provisions, 1)
	}
}
