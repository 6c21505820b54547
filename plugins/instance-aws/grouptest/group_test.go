package grouptest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/mobykit/mobykit/group/cli"
	"github.com/mobykit/mobykit/internal/testenv"
	"github.com/mobykit/mobykit/launcher/vanilla"
	instanceaws "github.com/mobykit/mobykit/plugins/instance-aws"
	"github.com/mobykit/mobykit/plugins/instance-aws/ami"
	"github.com/mobykit/mobykit/plugins/instance-aws/internal/awstest"
	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/rpc"
)

func TestMain(m *testing.M) { awstest.Main(m) }

type member struct {
	id, ip, hash, typ, image, userData string
}

// waitVolumes waits (bounded) until each member's logical ID (its IP) has exactly one "data"
// volume and it is attached to that member, and returns logical ID -> volume ID.
func waitVolumes(t *testing.T, c *ec2.Client, groupID string, members []member) map[string]string {
	t.Helper()
	var got map[string]string
	var last string
	waitFor(t, "the data volumes attached", 30*time.Second, func() bool {
		out, err := c.DescribeVolumes(context.Background(), &ec2.DescribeVolumesInput{Filters: []types.Filter{
			{Name: aws.String("tag:" + spi.GroupTag), Values: []string{groupID}},
			{Name: aws.String("tag:" + instanceaws.VolumeTag), Values: []string{"data"}}}})
		if err != nil {
			t.Fatalf("DescribeVolumes: %v", err)
		}
		got = map[string]string{}
		attached := map[string]string{} // logical ID -> instance
		for _, v := range out.Volumes {
			for _, tg := range v.Tags {
				if *tg.Key == spi.LogicalIDTag {
					if _, dup := got[*tg.Value]; dup {
						t.Fatalf("two data volumes for %s", *tg.Value)
					}
					got[*tg.Value] = *v.VolumeId
					if len(v.Attachments) == 1 {
						attached[*tg.Value] = aws.ToString(v.Attachments[0].InstanceId)
					}
				}
			}
		}
		last = fmt.Sprint(got, attached)
		for _, m := range members {
			if attached[m.ip] != m.id {
				return false
			}
		}
		return len(got) == len(members)
	})
	if t.Failed() {
		t.Logf("volumes: %s", last)
	}
	return got
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
			m := member{id: *i.InstanceId, ip: aws.ToString(i.PrivateIpAddress), typ: string(i.InstanceType), image: aws.ToString(i.ImageId)}
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

// createInstanceProfile creates an IAM instance profile in moto with one Query API call (the
// module does not pin the IAM client; moto routes by the credential scope's service name).
func createInstanceProfile(t *testing.T, endpoint, name string) {
	t.Helper()
	form := url.Values{"Action": {"CreateInstanceProfile"}, "Version": {"2010-05-08"}, "InstanceProfileName": {name}}
	req, _ := http.NewRequest("POST", endpoint+"/", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("CreateInstanceProfile: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 && resp.StatusCode != 409 {
		t.Fatalf("CreateInstanceProfile %s: HTTP %d", name, resp.StatusCode)
	}
}

// importDisk registers a random 1 MiB raw disk image as an AMI in moto.
func importDisk(t *testing.T, im *ami.Importer, name string) *ami.Result {
	t.Helper()
	data := make([]byte, 1<<20)
	rand.Read(data)
	data[510], data[511] = 0x55, 0xAA // an MBR boot signature: the importer checks for a disk
	path := filepath.Join(t.TempDir(), name+".raw")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := im.Import(context.Background(), ami.Input{Path: path, Name: "etcd", BootMode: ami.BootUEFI})
	if err != nil {
		t.Fatalf("import %s: %v", name, err)
	}
	return res
}

// TestExampleQuorumOnMoto runs examples/clusters/aws/etcd.json the phoenix way: a disk image
// is imported as an AMI, the group file (placeholders replaced by moto's subnet, security
// group and the AMI's digest) is committed through the group controller's socket, a second
// image is imported and committed, which rolls the quorum member by member onto it, and the
// group is destroyed. The controller reaches instance-aws and the vanilla flavor over their
// unix sockets; every assertion reads moto's state directly.
func TestExampleQuorumOnMoto(t *testing.T) {
	endpoint := testenv.Moto(t)
	ctx := context.Background()
	cfg := awstest.Config(t, endpoint)
	raw := ec2.NewFromConfig(cfg)
	vpcID, subnetID := createSubnet(t, raw, "10.0.0.0/16", "10.0.1.0/24")
	sg, err := raw.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{VpcId: &vpcID, GroupName: aws.String(fmt.Sprint("etcd-", time.Now().UnixNano())), Description: aws.String("etcd peers")})
	if err != nil {
		t.Fatal(err)
	}
	createInstanceProfile(t, endpoint, "mobykit-etcd")
	im := ami.New(cfg, nil)
	im.PollInterval = 10 * time.Millisecond

	example, err := cli.ReadSpec("../../../examples/clusters/aws/etcd.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	groupID := fmt.Sprintf("etcd-%d", time.Now().UnixNano())
	spec := func(digest string) spi.GroupSpec {
		p := bytes.ReplaceAll(example.Properties, []byte("subnet-0123456789abcdef0"), []byte(subnetID))
		p = bytes.ReplaceAll(p, []byte("sg-0123456789abcdef0"), []byte(*sg.GroupId))
		p = bytes.ReplaceAll(p, []byte("sha256:"+strings.Repeat("0", 64)), []byte(digest))
		return spi.GroupSpec{ID: spi.GroupID(groupID), Properties: p}
	}

	h := newHarness(t, "mkaws")
	plugin := h.openAWS(t, ctx, instanceaws.Options{Endpoint: endpoint, MaxBackoff: 10 * time.Millisecond, PageSize: 5})
	gc := h.serve(t, ctx, map[string]rpc.Plugin{"instance-aws": rpc.Instance(plugin), "vanilla": rpc.Flavor(vanilla.Flavor{})}, 50*time.Millisecond)

	ips := []string{"10.0.1.10", "10.0.1.11", "10.0.1.12"}
	const userData = `{"etcd":{"entries":{"initial-cluster":{"content":"10.0.1.10,10.0.1.11,10.0.1.12"},"data-device":{"content":"/dev/nvme1n1"}}}}`

	// 1. Import and commit: three members, one per logical ID, each at its IP, from the AMI.
	start := time.Now()
	v1 := importDisk(t, im, "v1")
	if _, err := gc.CommitGroup(ctx, spec(v1.Digest), false); err != nil {
		t.Fatalf("CommitGroup: %v", err)
	}
	waitFor(t, "3 members", 30*time.Second, func() bool { return len(live(t, raw, groupID)) == 3 })
	first := live(t, raw, groupID)
	for i, m := range first {
		if m.ip != ips[i] || m.userData != userData || m.typ != "t3.small" || m.image != v1.ImageID || m.hash == "" {
			t.Errorf("member %d = %+v, want IP %s, the example's user data, t3.small, %s, a config hash", i, m, ips[i], v1.ImageID)
		}
	}
	desc, err := gc.DescribeGroup(ctx, spi.GroupID(groupID))
	if err != nil || len(desc.Instances) != 3 {
		t.Fatalf("DescribeGroup = %+v, %v", desc, err)
	}
	for _, d := range desc.Instances {
		if d.LogicalID == nil || !strings.HasPrefix(string(*d.LogicalID), "10.0.1.") || d.Tags["role"] != "etcd" || d.Tags["cluster"] != "etcd" {
			t.Errorf("DescribeGroup member %s: logical ID %v tags %v", d.ID, d.LogicalID, d.Tags)
		}
	}
	// Each member's data volume (the example's Volumes) is created once per logical ID and
	// attached to the member holding it.
	volumes := waitVolumes(t, raw, groupID, first)
	t.Logf("import + commit: 3 members in %s", time.Since(start).Round(time.Millisecond))

	// 2. A new image: import, commit its digest, and the quorum rolls one member at a time
	// (never surging), each replacement taking its predecessor's IP.
	start = time.Now()
	v2 := importDisk(t, im, "v2")
	if _, err := gc.CommitGroup(ctx, spec(v2.Digest), false); err != nil {
		t.Fatalf("CommitGroup v2: %v", err)
	}
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
		if len(ms) != 3 || st.Phase != "idle" {
			return false
		}
		for _, m := range ms {
			if m.hash != st.TargetHash || m.image != v2.ImageID {
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
	// The replacements got their predecessors' volumes back: same volume per logical ID.
	if again := waitVolumes(t, raw, groupID, second); !maps.Equal(again, volumes) {
		t.Errorf("volumes per logical ID after the rollout %v, want the same as before %v", again, volumes)
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
	t.Logf("import + rolling update: 3 members replaced in %s", time.Since(start).Round(time.Millisecond))

	// 3. Destroy: nothing left running.
	start = time.Now()
	destroy(t, gc, raw, groupID)
	t.Logf("destroy: %s", time.Since(start).Round(time.Millisecond))
}

// TestExampleValidates checks the example's Instance Properties offline, placeholders and all.
func TestExampleValidates(t *testing.T) {
	example, err := cli.ReadSpec("../../../examples/clusters/aws/etcd.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Instance struct{ Properties spi.Any } }
	if err := json.Unmarshal(example.Properties, &doc); err != nil {
		t.Fatal(err)
	}
	if err := (&instanceaws.Plugin{}).Validate(context.Background(), doc.Instance.Properties); err != nil {
		t.Fatalf("example Instance Properties: %v", err)
	}
}
