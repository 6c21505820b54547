package group

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mobykit/mobykit/group/fake"
	"github.com/mobykit/mobykit/group/store"
	"github.com/mobykit/mobykit/spi"
)

// A roll is bound by how fast members boot, not by the poll interval: with a one-minute poll
// and members that turn Healthy 2 s after they are created, a new group is all healthy and a
// 3-member rolling update (MaxSurge 1) is finished well inside one poll interval, because the
// loop re-checks the members it waits on (from 250 ms, backing off). Once nothing is waited on,
// the loop costs one DescribeInstances per poll interval and no Flavor.Healthy at all. The
// clock is synctest's: no real time passes and nothing depends on scheduling.
func TestRollBoundByBootNotPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const poll, boot = time.Minute, 2 * time.Second
		cloud := fake.New(nil)
		cloud.Health = func(_ fake.Instance, age time.Duration) spi.Health {
			if age < boot {
				return spi.Unknown
			}
			return spi.Healthy
		}
		c := New(fake.Plugins{Cloud: cloud}, store.NewMemory(), Options{PollInterval: poll, Logger: quiet()})
		if err := c.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer c.Stop()
		ctx := context.Background()
		status := func() spi.RolloutStatus {
			t.Helper()
			st, err := c.UpdateStatus(ctx, "web")
			if err != nil {
				t.Fatal(err)
			}
			return st
		}

		// A new group: members created by the first pass, seen Healthy by readiness checks.
		if _, err := c.CommitGroup(ctx, spec("web", 3, nil, "v1", false, `{"MaxSurge":1}`), false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(poll / 4)
		synctest.Wait()
		if st := status(); st.Phase != spi.PhaseIdle || st.Updated != 3 || st.Healthy != 3 {
			t.Fatalf("a quarter poll interval after the commit: %+v, want 3 members, all seen healthy", st)
		}

		// A rolling update: each new member is found available about when it boots.
		v2 := spec("web", 3, nil, "v2", false, `{"MaxSurge":1}`)
		h2 := hashOf(t, v2)
		if _, err := c.CommitGroup(ctx, v2, false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(poll / 2)
		synctest.Wait()
		n, cur := versions(cloud, "web", h2)
		if st := status(); st.Phase != spi.PhaseIdle || n != 3 || cur != 3 || st.Healthy != 3 {
			t.Fatalf("half a poll interval after the commit: %+v, %d members, %d at v2; want the roll finished", st, n, cur)
		}

		// Steady state: nothing waited on, one DescribeInstances per poll and no health check.
		before := cloud.Calls()
		time.Sleep(10 * poll)
		synctest.Wait()
		after := cloud.Calls()
		if d := after["Flavor.Healthy"] - before["Flavor.Healthy"]; d != 0 {
			t.Errorf("steady state: %d Flavor.Healthy calls in 10 poll intervals, want 0", d)
		}
		if d := after["Instance.DescribeInstances"] - before["Instance.DescribeInstances"]; d > 11 {
			t.Errorf("steady state: %d DescribeInstances calls in 10 poll intervals, want about 10", d)
		}
	})
}

// A member that never becomes healthy is checked ever less often: the delay doubles from
// ReadinessMin up to the poll interval, so a broken member costs at most one health check per
// poll interval once the backoff has grown (not four per second).
func TestReadinessBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const poll = 8 * time.Second
		cloud := fake.New(nil)
		cloud.Health = func(fake.Instance, time.Duration) spi.Health { return spi.Unknown }
		c := New(fake.Plugins{Cloud: cloud}, store.NewMemory(), Options{PollInterval: poll, Logger: quiet()})
		if err := c.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer c.Stop()
		if _, err := c.CommitGroup(context.Background(), spec("web", 1, nil, "v1", false, ""), false); err != nil {
			t.Fatal(err)
		}
		// 250ms, 500ms, 1s, 2s, 4s, 8s, 8s, ... after creation: within 100 s about 15 checks,
		// where a fixed 250 ms would make 400.
		time.Sleep(100 * time.Second)
		synctest.Wait()
		if n := cloud.Calls()["Flavor.Healthy"]; n == 0 || n > 20 {
			t.Fatalf("%d health checks of a never-healthy member in 100 s (poll %s), want a few backing off to one per poll", n, poll)
		}
	})
}

// Readiness checks do not shorten Updating.Count: it counts consecutive passes (InfraKit's
// polls), so a new member with Count 3 is available only at the third pass that finds it
// Healthy, however often it is checked in between.
func TestReadinessKeepsCountInPolls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const poll = time.Minute
		cloud := fake.New(nil)
		c := New(fake.Plugins{Cloud: cloud}, store.NewMemory(), Options{PollInterval: poll, Logger: quiet()})
		if err := c.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer c.Stop()
		ctx := context.Background()
		if _, err := c.CommitGroup(ctx, spec("web", 1, nil, "v1", false, `{"Count":3}`), false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(poll / 2)
		v2 := spec("web", 1, nil, "v2", false, `{"Count":3}`)
		h2 := hashOf(t, v2)
		if _, err := c.CommitGroup(ctx, v2, false); err != nil {
			t.Fatal(err)
		}
		// The new member is Healthy from the start; passes see it at +250ms, +1 poll, +2 polls.
		time.Sleep(poll + poll/2)
		synctest.Wait()
		if n, cur := versions(cloud, "web", h2); n != 2 || cur != 1 {
			t.Fatalf("1.5 poll intervals into a Count 3 roll: %d members, %d at v2; want the old one kept", n, cur)
		}
		time.Sleep(poll)
		synctest.Wait()
		if n, cur := versions(cloud, "web", h2); n != 1 || cur != 1 {
			t.Fatalf("2.5 poll intervals into a Count 3 roll: %d members, %d at v2; want the roll done", n, cur)
		}
	})
}
