package local_test

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mobykit/mobykit/group"
	"github.com/mobykit/mobykit/internal/clustertest"
	"github.com/mobykit/mobykit/internal/etcdtest"
	"github.com/mobykit/mobykit/internal/testenv"
	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/rpc"
)

// The failover test runs each group controller as its own process: this test binary re-executed
// with envController set to the plugin directory and envControllerName to its socket name.
const (
	envController     = "MOBYKIT_TEST_LOCAL_CONTROLLER"
	envControllerName = "MOBYKIT_TEST_LOCAL_CONTROLLER_NAME"
	envControllerEtcd = "MOBYKIT_TEST_LOCAL_CONTROLLER_ETCD"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envController); dir != "" {
		os.Exit(runController(dir))
	}
	os.Exit(m.Run())
}

// runController serves the group plugin on <dir>/<name> with the etcd store, the instance and
// flavor plugins found in dir, at the default settings (poll interval, lease).
func runController(dir string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	sock := filepath.Join(dir, os.Getenv(envControllerName))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	svc, err := group.OpenService(ctx, group.OpenOptions{
		Store:   group.StoreOptions{Store: "etcd://" + os.Getenv(envControllerEtcd)},
		Address: sock,
		Logger:  log,
		Find: func(lookup string) (string, error) {
			p := filepath.Join(dir, lookup)
			if _, err := os.Stat(p); err != nil {
				return "", err
			}
			return p, nil
		},
	})
	if err != nil {
		log.Error("open", "err", err)
		return 1
	}
	srv, err := rpc.Start(sock, rpc.Group(svc))
	if err != nil {
		log.Error("serve", "err", err)
		return 1
	}
	<-ctx.Done()
	srv.Close()
	svc.Stop()
	return 0
}

// TestLocalClusterLeaderKilledMidRoll: two controller processes on an etcd store in front of the
// local example's QEMU and flavor plugins; the group (2 VMs, to stay lean) is created through the
// follower, its spec edited and committed, and the leader is killed with SIGKILL as soon as the
// roll's first new VM exists; the other controller takes over and finishes the roll, never with
// more than Size+MaxSurge VMs running.
func TestLocalClusterLeaderKilledMidRoll(t *testing.T) {
	if testing.Short() {
		t.Skip("boots 4 VMs under TCG; skipped with -short")
	}
	testenv.RequireQEMU(t)
	buildImages(t)
	srv := etcdtest.Start(t)
	cli := srv.Client(t)

	c := &cluster{Cluster: clustertest.New(t, "lf"), t: t}
	dir := c.Dir
	type ctl struct {
		name, sock string
		cmd        *exec.Cmd
		log        *strings.Builder
		done       chan struct{}
	}
	ctls := map[string]*ctl{}
	t.Cleanup(func() {
		for _, x := range ctls {
			x.cmd.Process.Kill()
			<-x.done
			if t.Failed() {
				t.Logf("controller %s:\n%s", x.name, x.log)
			}
		}
	})
	spec := c.Example("web.yml", "group.json")
	c.OwnNetwork("web-cluster")
	doc := strings.Replace(string(c.GroupDoc), `"shutdown_timeout": "10s"`, `"shutdown_timeout": "3s"`, 1)
	c.GroupDoc = []byte(strings.Replace(doc, `"Size": 3`, `"Size": 2`, 1))
	c.StartPlugins()

	start := func(name string) *ctl {
		x := &ctl{name: name, sock: c.Socket(name), log: &strings.Builder{}, done: make(chan struct{})}
		x.cmd = exec.Command(os.Args[0], "-test.run=^$")
		x.cmd.Env = append(os.Environ(), envController+"="+filepath.Join(dir, "plugins"), envControllerName+"="+name,
			envControllerEtcd+"="+strings.TrimPrefix(srv.Endpoint, "http://"))
		x.cmd.Stdout, x.cmd.Stderr = x.log, x.log
		if err := x.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { x.cmd.Wait(); close(x.done) }()
		ctls[name] = x
		return x
	}
	start("group-a")
	start("group-b")
	leader := func(except string) *ctl {
		deadline := time.Now().Add(time.Minute)
		for {
			resp, err := cli.Get(context.Background(), group.DefaultElection+"/", clientv3.WithFirstCreate()...)
			if err == nil && len(resp.Kvs) > 0 {
				for _, x := range ctls {
					if x.sock == string(resp.Kvs[0].Value) && x.name != except && rpc.Alive(x.sock) {
						return x
					}
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("no leader within a minute")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	lead := leader("")
	follower := ctls[map[string]string{"group-a": "group-b", "group-b": "group-a"}[lead.name]]
	for !rpc.Alive(follower.sock) {
		time.Sleep(50 * time.Millisecond)
	}
	fc := rpc.NewGroupClient(follower.sock, "group")
	began := time.Now()
	if _, err := fc.CommitGroup(context.Background(), c.Group(), false); err != nil {
		t.Fatalf("commit through the follower: %v", err)
	}
	ms := c.waitConverged("1", 2, 2, 6*time.Minute)
	oldHash := ms[0].Hash

	os.WriteFile(c.SpecPath, []byte(strings.Replace(string(spec), "VERSION=1", "VERSION=2", 1)), 0o644)
	if _, err := fc.CommitGroup(context.Background(), c.Group(), false); err != nil {
		t.Fatalf("commit v2 through the follower: %v", err)
	}
	// Kill the leader once the roll's first new VM exists (Provision done, not yet healthy).
	deadline := time.Now().Add(5 * time.Minute)
	for {
		n := 0
		for _, m := range c.members() {
			if m.Hash != oldHash {
				n++
			}
		}
		if n >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the roll created no new VM within 5m")
		}
		time.Sleep(200 * time.Millisecond)
	}
	lead.cmd.Process.Signal(syscall.SIGKILL)
	<-lead.done
	killed := time.Now()
	old := 0
	for _, m := range c.members() {
		if m.Hash == oldHash {
			old++
		}
	}
	if old == 0 {
		t.Fatal("the roll had replaced every VM when the leader was killed")
	}
	t.Logf("leader %s killed with %d old VMs left", lead.name, old)
	if next := leader(lead.name); next != follower {
		t.Fatalf("%s leads, want %s", next.name, follower.name)
	}
	ms2 := c.waitConverged("2", 2, 3, 10*time.Minute)
	for _, a := range ms {
		for _, b := range ms2 {
			if a.ID == b.ID {
				t.Fatalf("%s survived the rolling update", a.ID)
			}
		}
	}
	t.Logf("FIGURE all VMs at version 2 %v after the leader was killed", time.Since(killed))
	// The new leader closes the rollout (phase idle) once the last old VM is gone.
	deadline = time.Now().Add(2 * time.Minute)
	for {
		st, err := fc.UpdateStatus(context.Background(), "web")
		if err == nil && st.Phase == spi.PhaseIdle && st.Updated == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rollout did not end within 2m: %+v %v", st, err)
		}
		time.Sleep(time.Second)
	}
	t.Logf("FIGURE rollout idle %v after the leader was killed (create + roll %v)", time.Since(killed), time.Since(began))
}
