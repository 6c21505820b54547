package group

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/mobykit/mobykit/group/fake"
	"github.com/mobykit/mobykit/group/store"
	"github.com/mobykit/mobykit/group/store/etcdstore"
	"github.com/mobykit/mobykit/internal/etcdtest"
	"github.com/mobykit/mobykit/spi"
)

// BenchmarkThousandInstances drives a 1,000-instance group against the in-process fake plugin
// (no sockets): commit to converged, then a full rolling update. It reports wall-clock seconds,
// plugin calls per instance and supervision passes for each half. The poll interval is
// simulated (a fake clock), so the seconds are the controller's own cost.
func BenchmarkThousandInstances(b *testing.B) {
	for _, surge := range []string{`"10%"`, `1`} {
		b.Run("surge="+surge, func(b *testing.B) {
			benchThousand(b, 1000, `{"MaxSurge":`+surge+`}`, func() store.Store { return store.NewMemory() })
		})
	}
}

// BenchmarkThousandInstancesStores is BenchmarkThousandInstances (MaxSurge 10%) on the file
// store and on the etcd store (one in-process etcd on loopback, the leader's fenced writes):
// the store's share of commit→converged and of a full roll.
func BenchmarkThousandInstancesStores(b *testing.B) {
	b.Run("store=file", func(b *testing.B) {
		benchThousand(b, 1000, `{"MaxSurge":"10%"}`, func() store.Store {
			fs, err := store.NewFileStore(filepath.Join(b.TempDir(), "groups"))
			if err != nil {
				b.Fatal(err)
			}
			return fs
		})
	})
	b.Run("store=etcd", func(b *testing.B) {
		cli := etcdtest.Start(b).Client(b)
		n := 0
		benchThousand(b, 1000, `{"MaxSurge":"10%"}`, func() store.Store {
			n++
			st, err := etcdstore.New(cli, fmt.Sprintf("/bench/%d/", n))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := cli.Put(context.Background(), "/bench/leader", "me"); err != nil {
				b.Fatal(err)
			}
			resp, err := cli.Get(context.Background(), "/bench/leader")
			if err != nil {
				b.Fatal(err)
			}
			return st.WithGuard(nil, clientv3.Compare(clientv3.CreateRevision("/bench/leader"), "=", resp.Kvs[0].CreateRevision))
		})
	})
}

// BenchmarkTenGroupsStores: 10 groups of 1,000 fake instances (MaxSurge 10%) on one controller,
// on the file store and on the etcd store (a 3-member in-process etcd, the leader's fenced
// writes), in the same iteration: commit→converged of all ten and a full roll of all ten, each
// store's seconds and the etcd/file ratios (the aim: within 2×).
func BenchmarkTenGroupsStores(b *testing.B) {
	const groups, size = 10, 1000
	etcd := etcdtest.StartCluster(b, 3)
	cli := etcd.Client(b)
	var fileC, fileR, etcdC, etcdR float64
	for i := 0; i < b.N; i++ {
		fs, err := store.NewFileStore(filepath.Join(b.TempDir(), "groups"))
		if err != nil {
			b.Fatal(err)
		}
		c, r := benchGroups(b, groups, size, fs)
		fileC, fileR = fileC+c, fileR+r
		prefix := fmt.Sprintf("/bench10/%d/", i)
		st, err := etcdstore.New(cli, prefix)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := cli.Put(context.Background(), prefix+"leader", "me"); err != nil {
			b.Fatal(err)
		}
		resp, err := cli.Get(context.Background(), prefix+"leader")
		if err != nil {
			b.Fatal(err)
		}
		c, r = benchGroups(b, groups, size, st.WithGuard(nil, clientv3.Compare(clientv3.CreateRevision(prefix+"leader"), "=", resp.Kvs[0].CreateRevision)))
		etcdC, etcdR = etcdC+c, etcdR+r
	}
	n := float64(b.N)
	b.ReportMetric(fileC/n, "file-commit-s")
	b.ReportMetric(etcdC/n, "etcd-commit-s")
	b.ReportMetric(etcdC/fileC, "commit-etcd/file")
	b.ReportMetric(fileR/n, "file-roll-s")
	b.ReportMetric(etcdR/n, "etcd-roll-s")
	b.ReportMetric(etcdR/fileR, "roll-etcd/file")
}

// benchGroups commits groups groups of size members on one controller (manual passes, a fake
// clock) and reconciles them all until every one is idle and complete, then rolls all of them;
// it returns the wall-clock seconds of each half.
func benchGroups(b *testing.B, groups, size int, st store.Store) (commitSec, rollSec float64) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	cloud := fake.New(clock)
	c := New(fake.Plugins{Cloud: cloud}, st, Options{Manual: true, Now: clock, Logger: quiet()})
	run := func(version string) float64 {
		start := time.Now()
		var ids []spi.GroupID
		for g := range groups {
			s := spec(fmt.Sprintf("g%d", g), size, nil, version, false, `{"MaxSurge":"10%"}`)
			if _, err := c.CommitGroup(ctx, s, false); err != nil {
				b.Fatal(err)
			}
			ids = append(ids, s.ID)
		}
		for pass := 1; len(ids) > 0; pass++ {
			var left []spi.GroupID
			for _, id := range ids {
				d, err := c.Reconcile(ctx, id)
				if err != nil {
					b.Fatal(err)
				}
				if !(d.Phase == spi.PhaseIdle && len(d.Create) == 0 && len(d.Destroy) == 0) {
					left = append(left, id)
				}
			}
			ids = left
			now = now.Add(10 * time.Second)
			if pass > 10*size {
				b.Fatal("no convergence")
			}
		}
		return time.Since(start).Seconds()
	}
	commitSec = run("v1")
	rollSec = run("v2")
	for g := range groups {
		if n, _ := versions(cloud, spi.GroupID(fmt.Sprintf("g%d", g)), ""); n != size {
			b.Fatalf("group g%d: %d members", g, n)
		}
	}
	return commitSec, rollSec
}

// BenchmarkFailover: two controllers on an in-process etcd (lease 2s), a converged group of 10;
// the leader is stopped (it resigns) or killed (its etcd client closed: the lease runs out),
// and the time until the new leader's first plugin call is reported.
func BenchmarkFailover(b *testing.B) {
	for _, how := range []string{"stop", "kill"} {
		b.Run(how, func(b *testing.B) {
			var total time.Duration
			for i := 0; i < b.N; i++ {
				total += failoverOnce(b, how == "kill")
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "failover-s")
			// The aim: under 2 lease periods (the lease is 2s here).
			b.ReportMetric(total.Seconds()/float64(b.N)/2, "failover-leases")
		})
	}
}

func failoverOnce(b *testing.B, kill bool) time.Duration {
	srv := etcdtest.Start(b)
	cloud := fake.New(nil)
	cl := &calls{}
	var firstMu sync.Mutex
	first := map[string]time.Time{}
	type member struct {
		m   *Member
		cli *clientv3.Client
	}
	ms := map[string]member{}
	for _, name := range []string{"a", "b"} {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			b.Fatal(err)
		}
		st, _ := etcdstore.New(cli, "")
		name := name
		p := firstCall{Plugins: memberPlugins{name: name, cloud: cloud, calls: cl}, on: func() {
			firstMu.Lock()
			if _, ok := first[name]; !ok {
				first[name] = time.Now()
			}
			firstMu.Unlock()
		}}
		m, err := StartMember(p, Options{PollInterval: 50 * time.Millisecond, Logger: quiet()},
			ElectionOptions{Client: cli, Store: st, LeaseTTL: 2 * time.Second, Address: name})
		if err != nil {
			b.Fatal(err)
		}
		ms[name] = member{m, cli}
	}
	defer func() {
		for _, x := range ms {
			x.m.Stop()
			x.cli.Close()
		}
	}()
	var lead, other string
	deadline := time.Now().Add(30 * time.Second)
	for lead == "" {
		for n, x := range ms {
			if x.m.Leading() {
				lead = n
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("no leader")
		}
		time.Sleep(5 * time.Millisecond)
	}
	other = map[string]string{"a": "b", "b": "a"}[lead]
	if _, err := ms[lead].m.CommitGroup(context.Background(), spec("web", 10, nil, "v1", false, ""), false); err != nil {
		b.Fatal(err)
	}
	for n, _ := versions(cloud, "web", ""); n != 10; n, _ = versions(cloud, "web", "") {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	if kill {
		ms[lead].cli.Close()
	} else {
		ms[lead].m.Stop()
	}
	for {
		firstMu.Lock()
		t, ok := first[other]
		firstMu.Unlock()
		if ok {
			return t.Sub(start)
		}
		if time.Since(start) > 60*time.Second {
			b.Fatal("no failover in 60s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// firstCall calls on at every plugin lookup, the start of any plugin call of a pass.
type firstCall struct {
	Plugins
	on func()
}

func (f firstCall) Instance(n spi.PluginName) (spi.Instance, error) {
	f.on()
	return f.Plugins.Instance(n)
}

func benchThousand(b *testing.B, size int, updating string, mkStore func() store.Store) {
	ctx := context.Background()
	var commitSec, rollSec, commitCalls, rollCalls, commitPasses, rollPasses float64
	for i := 0; i < b.N; i++ {
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		clock := func() time.Time { return now }
		cloud := fake.New(clock)
		c := New(fake.Plugins{Cloud: cloud}, mkStore(), Options{Manual: true, Now: clock, Logger: quiet()})
		run := func(s spi.GroupSpec) (sec, calls, passes float64) {
			before := cloud.TotalCalls()
			start := time.Now()
			if _, err := c.CommitGroup(ctx, s, false); err != nil {
				b.Fatal(err)
			}
			for n := 1; ; n++ {
				d, err := c.Reconcile(ctx, s.ID)
				if err != nil {
					b.Fatal(err)
				}
				now = now.Add(10 * time.Second)
				if d.Phase == "idle" && len(d.Create) == 0 && len(d.Destroy) == 0 {
					return time.Since(start).Seconds(), float64(cloud.TotalCalls() - before), float64(n)
				}
				if n > 10*size {
					b.Fatal("no convergence")
				}
			}
		}
		s, calls, passes := run(spec("big", size, nil, "v1", false, updating))
		commitSec, commitCalls, commitPasses = commitSec+s, commitCalls+calls, commitPasses+passes
		s, calls, passes = run(spec("big", size, nil, "v2", false, updating))
		rollSec, rollCalls, rollPasses = rollSec+s, rollCalls+calls, rollPasses+passes
		if n, cur := versions(cloud, "big", ""); n != size || cur != 0 {
			b.Fatalf("%d members", n)
		}
	}
	n := float64(b.N)
	b.ReportMetric(commitSec/n, "commit-s")
	b.ReportMetric(commitCalls/n/float64(size), "commit-rpc/instance")
	b.ReportMetric(commitPasses/n, "commit-passes")
	b.ReportMetric(rollSec/n, "roll-s")
	b.ReportMetric(rollCalls/n/float64(size), "roll-rpc/instance")
	b.ReportMetric(rollPasses/n, "roll-passes")
}
