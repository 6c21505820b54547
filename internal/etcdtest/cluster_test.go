package etcdtest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// A 3-member cluster keeps accepting writes with one member stopped, refuses them with two
// stopped (no quorum), accepts them again once one comes back, and a restarted member catches up.
func TestClusterQuorum(t *testing.T) {
	c := StartCluster(t, 3)
	cli := c.Client(t)
	put := func(v string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := cli.Put(ctx, "k", v)
		return err
	}
	if err := put("1"); err != nil {
		t.Fatal(err)
	}
	c.Nodes[0].Stop()
	if err := put("2"); err != nil {
		t.Fatalf("one of three stopped: %v", err)
	}
	c.Nodes[1].Stop()
	if err := put("3"); err == nil {
		t.Fatal("a write succeeded with two of three members stopped")
	}
	if err := c.Nodes[1].Restart(); err != nil {
		t.Fatal(err)
	}
	if err := put("4"); err != nil {
		t.Fatalf("after a member came back: %v", err)
	}
	if err := c.Nodes[0].Restart(); err != nil {
		t.Fatal(err)
	}
	// The member that missed writes serves the latest value (linearizable read through it).
	one, err := clientv3.New(clientv3.Config{Endpoints: []string{c.Nodes[0].Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := one.Get(ctx, "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "4" {
		t.Fatalf("restarted member: %v %v", resp, err)
	}
}
