package grouptest

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/mobykit/mobykit/group"
	"github.com/mobykit/mobykit/group/store"
	"github.com/mobykit/mobykit/internal/testenv"
	"github.com/mobykit/mobykit/launcher/vanilla"
	instanceaws "github.com/mobykit/mobykit/plugins/instance-aws"
	"github.com/mobykit/mobykit/plugins/instance-aws/internal/awstest"
	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/discovery"
	"github.com/mobykit/mobykit/spi/rpc"
)

func TestMain(m *testing.M) { awstest.Main(m) }

type member struct {
	id, ip, hash, typ, userData string
}

// live lists the group's pending or running instances straight from EC2 (moto), not through
// the plugin.
func live(t *testing.T, c *ec2.Client, groupID string) []member {
	t.Helper()
	ctx := context.Background()
	out, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: aws.String("tag:" + spi.GroupTag), Values: []string{groupID}},
		{Name: aws.String("instance-state-name"), Values: []string{"pending", "running"}},
	}})
	if err != nil {
		t.Fatalf("DescribeInstances: %v", err)
	}
	var ms []member
	for _, r := range out.Reservations {
		for _, i := range r.Instances {
			m := member{id: *i.InstanceId, ip: aws.ToString(i.PrivateIpAddress), typ: string(i.InstanceType)}
			for _, tg := range i.Tags {
				if *tg.Key == spi.ConfigHashTag {
					m.hash = *tg.Value
				}
			}
			attr, err := c.DescribeInstanceAttribute(ctx, &ec2.DescribeInstanceAttributeInput{InstanceId: i.InstanceId, Attribute: types.InstanceAttributeNameUserData})
			if err == nil && attr.UserData != nil {
				ud, _ := base64.StdEncoding.DecodeString(aws.ToString(attr.UserData.Value))
				m.userData = string(ud)
			}
			ms = append(ms, m)
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].ip < ms[j].ip })
	return ms
}

func waitFor(t *testing.T, what string, d time.Duration, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestGroupQuorumOnMoto commits a 3-member quorum (logical IDs = private IPs) through the
// group controller's socket, rolls it to a new spec, and destroys it; the controller reaches
// instance-aws and the vanilla flavor over their unix sockets, and every assertion reads
// moto's state directly.
func TestGroupQuorumOnMoto(t *testing.T) {
	endpoint := testenv.Moto(t)
	ctx := context.Background()
	raw := ec2.NewFromConfig(awstest.Config(t, endpoint))
	vpc, err := raw.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.30.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := raw.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String("10.30.1.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	subnet := *sn.Subnet.SubnetId

	// Unix socket paths must stay short: not t.TempDir(), whose path holds the test name.
	dir, err := os.MkdirTemp("", "mkaws")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	plugin, err := instanceaws.Open(ctx, instanceaws.Options{Endpoint: endpoint, MaxBackoff: 10 * time.Millisecond, PageSize: 5, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]rpc.Plugin{"instance-aws": rpc.Instance(plugin), "vanilla": rpc.Flavor(vanilla.Flavor{})} {
		srv, err := rpc.Start(filepath.Join(dir, name), p)
		if err != nil {
			t.Fatalf("serve %s: %v", name, err)
		}
		t.Cleanup(func() { srv.Close() })
	}
	ctl := group.New(group.RPCPlugins{Find: func(l string) (string, error) { return discovery.Find(dir, l) }},
		store.NewMemory(), group.Options{PollInterval: 50 * time.Millisecond, Logger: quiet})
	if err := ctl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ctl.Stop)
	gsrv, err := rpc.Start(filepath.Join(dir, "group"), rpc.Group(ctl))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gsrv.Close() })
	gc := rpc.NewGroupClient(filepath.Join(dir, "group"), "group")

	groupID := fmt.Sprintf("etcd-%d", time.Now().UnixNano())
	ips := []string{"10.30.1.10", "10.30.1.11", "10.30.1.12"}
	spec := func(typ, version string) spi.GroupSpec {
		return spi.GroupSpec{ID: spi.GroupID(groupID), Properties: spi.Any(fmt.Sprintf(`{
  "Allocation": {"LogicalIDs": ["%s", "%s", "%s"]},
  "Instance": {"Plugin": "instance-aws", "Properties": {
    "RunInstancesInput": {"ImageId": "ami-12c6146b", "InstanceType": %q, "SubnetId": %q,
      "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 4, "VolumeType": "gp3"}}]},
    "Tags": {"cluster": "etcd"}}},
  "Flavor": {"Plugin": "vanilla", "Properties": {"Init": ["#!/bin/sh", "echo etcd %s"]}}
}`, ips[0], ips[1], ips[2], typ, subnet, version))}
	}
	start := time.Now()

	// 1. Commit: three members, one per logical ID, each at its IP.
	if _, err := gc.CommitGroup(ctx, spec("t3.small", "v1"), false); err != nil {
		t.Fatalf("CommitGroup: %v", err)
	}
	waitFor(t, "3 members", 30*time.Second, func() bool { return len(live(t, raw, groupID)) == 3 })
	first := live(t, raw, groupID)
	for i, m := range first {
		if m.ip != ips[i] || m.userData != "#!/bin/sh\necho etcd v1" || m.typ != "t3.small" || m.hash == "" {
			t.Errorf("member %d = %+v, want IP %s, user data v1, t3.small, a config hash", i, m, ips[i])
		}
	}
	desc, err := gc.DescribeGroup(ctx, spi.GroupID(groupID))
	if err != nil || len(desc.Instances) != 3 {
		t.Fatalf("DescribeGroup = %+v, %v", desc, err)
	}
	for _, d := range desc.Instances {
		if d.LogicalID == nil || !strings.HasPrefix(string(*d.LogicalID), "10.30.1.") {
			t.Errorf("DescribeGroup member %s has logical ID %v", d.ID, d.LogicalID)
		}
	}
	t.Logf("commit: 3 members in %s", time.Since(start).Round(time.Millisecond))

	// 2. Rolling update: one member at a time (a quorum never surges), same IPs, new spec.
	start = time.Now()
	if _, err := gc.CommitGroup(ctx, spec("t3.medium", "v2"), false); err != nil {
		t.Fatalf("CommitGroup v2: %v", err)
	}
	var target string
	maxLive := 0
	waitFor(t, "the rollout", 60*time.Second, func() bool {
		ms := live(t, raw, groupID)
		maxLive = max(maxLive, len(ms))
		byIP := map[string]int{}
		for _, m := range ms {
			byIP[m.ip]++
			if byIP[m.ip] > 1 {
				t.Fatalf("two live members hold %s: %+v", m.ip, ms)
			}
		}
		st, err := gc.UpdateStatus(ctx, spi.GroupID(groupID))
		if err != nil {
			t.Fatalf("UpdateStatus: %v", err)
		}
		target = st.TargetHash
		if len(ms) != 3 || st.Phase != "idle" {
			return false
		}
		for _, m := range ms {
			if m.hash != target || m.userData != "#!/bin/sh\necho etcd v2" || m.typ != "t3.medium" {
				return false
			}
		}
		return true
	})
	if maxLive > 3 {
		t.Errorf("%d live members during a quorum rollout, want at most 3", maxLive)
	}
	second := live(t, raw, groupID)
	for i, m := range second {
		if m.ip != ips[i] {
			t.Errorf("after the rollout member %d has IP %s, want %s", i, m.ip, ips[i])
		}
		for _, o := range first {
			if m.id == o.id {
				t.Errorf("member %s survived the rolling update", m.id)
			}
		}
	}
	var oldIDs []string
	for _, m := range first {
		oldIDs = append(oldIDs, m.id)
	}
	out, err := raw.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: oldIDs})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range out.Reservations {
		for _, i := range r.Instances {
			if i.State.Name != types.InstanceStateNameTerminated && i.State.Name != types.InstanceStateNameShuttingDown {
				t.Errorf("replaced member %s is %s", *i.InstanceId, i.State.Name)
			}
		}
	}
	t.Logf("rolling update: 3 members replaced in %s", time.Since(start).Round(time.Millisecond))

	// 3. Destroy: nothing left running.
	start = time.Now()
	if err := gc.DestroyGroup(ctx, spi.GroupID(groupID)); err != nil {
		t.Fatalf("DestroyGroup: %v", err)
	}
	waitFor(t, "no members", 30*time.Second, func() bool { return len(live(t, raw, groupID)) == 0 })
	t.Logf("destroy: %s", time.Since(start).Round(time.Millisecond))
}
