package group

import (
	"context"
	"testing"
	"time"

	"github.com/mobykit/mobykit/group/fake"
	"github.com/mobykit/mobykit/group/store"
	"github.com/mobykit/mobykit/spi"
)

// BenchmarkThousandInstances drives a 1,000-instance group against the in-process fake plugin
// (no sockets): commit to converged, then a full rolling update. It reports wall-clock seconds,
// plugin calls per instance and supervision passes for each half. The poll interval is
// simulated (a fake clock), so the seconds are the controller's own cost.
func BenchmarkThousandInstances(b *testing.B) {
	for _, surge := range []string{`"10%"`, `1`} {
		b.Run("surge="+surge, func(b *testing.B) {
			benchThousand(b, 1000, `{"MaxSurge":`+surge+`}`)
		})
	}
}

func benchThousand(b *testing.B, size int, updating string) {
	ctx := context.Background()
	var commitSec, rollSec, commitCalls, rollCalls, commitPasses, rollPasses float64
	for i := 0; i < b.N; i++ {
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		clock := func() time.Time { return now }
		cloud := fake.New(clock)
		c := New(fake.Plugins{Cloud: cloud}, store.NewMemory(), Options{Manual: true, Now: clock, Logger: quiet()})
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
