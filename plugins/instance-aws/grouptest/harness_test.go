package grouptest

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/mobykit/mobykit/group"
	"github.com/mobykit/mobykit/group/store"
	instanceaws "github.com/mobykit/mobykit/plugins/instance-aws"
	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/discovery"
	"github.com/mobykit/mobykit/spi/rpc"
)

// harness is what the group tests drive: plugins and a group controller, each served on a unix
// socket in one directory, the controller finding its plugins there by name as the CLI does.
type harness struct {
	dir string       // the socket directory
	log *slog.Logger // warnings only, for the plugins and the controller
}

// newHarness makes the socket directory. Unix socket paths must stay short: not t.TempDir(),
// whose path holds the test name.
func newHarness(t *testing.T, prefix string) *harness {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return &harness{dir: dir, log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
}

// openAWS opens instance-aws with opts, logging through the harness.
func (h *harness) openAWS(t *testing.T, ctx context.Context, opts instanceaws.Options) *instanceaws.Plugin {
	t.Helper()
	opts.Logger = h.log
	p, err := instanceaws.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// serve serves plugins (socket name -> plugin) and a group controller polling every poll, and
// returns a client of the controller's socket. All stop when the test ends.
func (h *harness) serve(t *testing.T, ctx context.Context, plugins map[string]rpc.Plugin, poll time.Duration) *rpc.GroupClient {
	t.Helper()
	for name, p := range plugins {
		srv, err := rpc.Start(filepath.Join(h.dir, name), p)
		if err != nil {
			t.Fatalf("serve %s: %v", name, err)
		}
		t.Cleanup(func() { srv.Close() })
	}
	ctl := group.New(group.RPCPlugins{Find: func(l string) (string, error) { return discovery.Find(h.dir, l) }},
		store.NewMemory(), group.Options{PollInterval: poll, Logger: h.log})
	if err := ctl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ctl.Stop)
	gsrv, err := rpc.Start(filepath.Join(h.dir, "group"), rpc.Group(ctl))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gsrv.Close() })
	return rpc.NewGroupClient(filepath.Join(h.dir, "group"), "group")
}

// createSubnet creates a VPC of vpcCIDR in moto and a subnet of subnetCIDR in it, and returns
// their IDs.
func createSubnet(t *testing.T, c *ec2.Client, vpcCIDR, subnetCIDR string) (vpcID, subnetID string) {
	t.Helper()
	ctx := context.Background()
	vpc, err := c.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String(vpcCIDR)})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := c.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String(subnetCIDR)})
	if err != nil {
		t.Fatal(err)
	}
	return *vpc.Vpc.VpcId, *sn.Subnet.SubnetId
}

// destroy destroys the group through the controller and waits until EC2 has none of its
// members left pending or running.
func destroy(t *testing.T, gc *rpc.GroupClient, c *ec2.Client, groupID string) {
	t.Helper()
	if err := gc.DestroyGroup(context.Background(), spi.GroupID(groupID)); err != nil {
		t.Fatalf("DestroyGroup: %v", err)
	}
	waitFor(t, "no members", 30*time.Second, func() bool { return len(live(t, c, groupID)) == 0 })
}
