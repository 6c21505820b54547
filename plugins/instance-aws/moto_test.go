package instanceaws

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/mobykit/mobykit/internal/testenv"
	"github.com/mobykit/mobykit/plugins/instance-aws/ami"
	"github.com/mobykit/mobykit/plugins/instance-aws/internal/awstest"
	"github.com/mobykit/mobykit/spi"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// motoEnv is a plugin pointed at moto_server plus a raw EC2 client for assertions and a subnet
// to launch in.
type motoEnv struct {
	plugin *Plugin
	ec2    *ec2.Client
	subnet string

	mu    sync.Mutex
	calls map[string]int // API operation -> calls made by the plugin
	archs []string       // Architecture of each RegisterImage call (moto does not keep it)
}

func (e *motoEnv) count(op string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls[op]
}

func (e *motoEnv) resetCount(op string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls[op] = 0
}

func newMoto(t *testing.T, opts Options) *motoEnv {
	t.Helper()
	endpoint := testenv.Moto(t)
	ctx := context.Background()
	opts.Endpoint = endpoint
	opts.MaxBackoff = 10 * time.Millisecond
	cfg, err := LoadConfig(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	env := &motoEnv{calls: map[string]int{}}
	// Count the plugin's API calls by operation name.
	cfg.APIOptions = append(cfg.APIOptions, func(s *middleware.Stack) error {
		return s.Initialize.Add(middleware.InitializeMiddlewareFunc("count", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			env.mu.Lock()
			env.calls[awsmiddleware.GetOperationName(ctx)]++
			if r, ok := in.Parameters.(*ec2.RegisterImageInput); ok {
				env.archs = append(env.archs, string(r.Architecture))
			}
			env.mu.Unlock()
			return next.HandleInitialize(ctx, in)
		}), middleware.After)
	})
	env.plugin = New(cfg, opts)
	env.ec2 = ec2.NewFromConfig(awstest.Config(t, endpoint))
	vpc, err := env.ec2.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.20.0.0/16")})
	if err != nil {
		t.Fatalf("CreateVpc: %v", err)
	}
	sn, err := env.ec2.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String("10.20.1.0/24"), AvailabilityZone: aws.String("us-east-1a")})
	if err != nil {
		t.Fatalf("CreateSubnet: %v", err)
	}
	env.subnet = aws.ToString(sn.Subnet.SubnetId)
	return env
}

func (e *motoEnv) props(t *testing.T, extra map[string]string) spi.Any {
	t.Helper()
	p := Properties{
		RunInstancesInput: RunInstancesInput{
			ImageId:      "ami-12c6146b",
			InstanceType: "t3.micro",
			SubnetId:     e.subnet,
			KeyName:      "ops",
			BlockDeviceMappings: []BlockDeviceMapping{
				{DeviceName: "/dev/xvda", Ebs: &EbsBlockDevice{VolumeSize: 8, VolumeType: "gp3"}},
			},
		},
		Tags: extra,
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func groupName(t *testing.T) string {
	return strings.ReplaceAll(t.Name(), "/", "_") + fmt.Sprint(time.Now().UnixNano())
}

func TestMotoProvisionDescribeLabelDestroy(t *testing.T) {
	env := newMoto(t, Options{})
	ctx := context.Background()
	group := groupName(t)
	lid := spi.LogicalID("10.20.1.11")
	init := "#!/bin/sh\necho hello from mobykit\n"
	spec := spi.Spec{
		Properties: env.props(t, map[string]string{"team": "storage", spi.GroupTag: "overridden-by-spec"}),
		Tags:       map[string]string{spi.GroupTag: group, spi.ConfigHashTag: "aaaabbbbccccddddeeeeffffgggghhhh", spi.LogicalIDTag: string(lid)},
		Init:       init,
		LogicalID:  &lid,
	}
	if err := env.plugin.Validate(ctx, spec.Properties); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	id, err := env.plugin.Provision(ctx, spec)
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if id == nil || !strings.HasPrefix(string(*id), "i-") {
		t.Fatalf("Provision returned ID %v", id)
	}

	// User data reads back exactly.
	attr, err := env.ec2.DescribeInstanceAttribute(ctx, &ec2.DescribeInstanceAttributeInput{
		InstanceId: aws.String(string(*id)), Attribute: types.InstanceAttributeNameUserData})
	if err != nil {
		t.Fatalf("DescribeInstanceAttribute: %v", err)
	}
	ud, err := base64.StdEncoding.DecodeString(aws.ToString(attr.UserData.Value))
	if err != nil || string(ud) != init {
		t.Fatalf("user data = %q (%v), want %q", ud, err, init)
	}

	wantTags := map[string]string{
		spi.GroupTag: group, spi.ConfigHashTag: "aaaabbbbccccddddeeeeffffgggghhhh", spi.LogicalIDTag: string(lid),
		"team": "storage", NameTag: group + "-10.20.1.11",
	}
	descs, err := env.plugin.DescribeInstances(ctx, map[string]string{spi.GroupTag: group}, true)
	if err != nil {
		t.Fatalf("DescribeInstances: %v", err)
	}
	if len(descs) != 1 || descs[0].ID != *id {
		t.Fatalf("DescribeInstances = %+v, want only %s", descs, *id)
	}
	d := descs[0]
	assertTags(t, d.Tags, wantTags)
	if d.LogicalID == nil || *d.LogicalID != lid {
		t.Errorf("LogicalID = %v, want %s", d.LogicalID, lid)
	}
	var info InstanceInfo
	if err := json.Unmarshal(d.Properties, &info); err != nil {
		t.Fatalf("Properties %s: %v", d.Properties, err)
	}
	if info.PrivateIpAddress != string(lid) || info.SubnetId != env.subnet || info.InstanceType != "t3.micro" || info.ImageId != "ami-12c6146b" {
		t.Errorf("Properties = %+v, want private IP %s in %s, t3.micro, ami-12c6146b", info, lid, env.subnet)
	}
	if info.Address != string(lid) || info.Started == nil || time.Since(*info.Started) > time.Hour {
		t.Errorf("address %q started %v: want the private IP and the launch time (flavor-moby's health checks read them)", info.Address, info.Started)
	}
	if info.State != "pending" && info.State != "running" {
		t.Errorf("State = %q", info.State)
	}

	// Without properties, none are sent.
	descs, err = env.plugin.DescribeInstances(ctx, map[string]string{spi.GroupTag: group, "team": "storage"}, false)
	if err != nil || len(descs) != 1 || descs[0].Properties != nil {
		t.Fatalf("DescribeInstances(no properties) = %+v, %v", descs, err)
	}
	// A tag value that does not match filters it out.
	descs, err = env.plugin.DescribeInstances(ctx, map[string]string{spi.GroupTag: group, "team": "compute"}, false)
	if err != nil || len(descs) != 0 {
		t.Fatalf("DescribeInstances(team=compute) = %+v, %v; want none", descs, err)
	}

	// Label merges.
	if err := env.plugin.Label(ctx, *id, map[string]string{spi.ConfigHashTag: "newhash", "extra": "1"}); err != nil {
		t.Fatalf("Label: %v", err)
	}
	wantTags[spi.ConfigHashTag] = "newhash"
	wantTags["extra"] = "1"
	descs, err = env.plugin.DescribeInstances(ctx, map[string]string{spi.ConfigHashTag: "newhash", spi.GroupTag: group}, false)
	if err != nil || len(descs) != 1 {
		t.Fatalf("DescribeInstances after Label = %+v, %v", descs, err)
	}
	assertTags(t, descs[0].Tags, wantTags)

	if err := env.plugin.Unlabel(ctx, *id, []string{"extra"}); err != nil {
		t.Fatalf("Unlabel: %v", err)
	}
	delete(wantTags, "extra")
	descs, _ = env.plugin.DescribeInstances(ctx, map[string]string{spi.GroupTag: group}, false)
	if len(descs) != 1 {
		t.Fatalf("DescribeInstances after Unlabel = %+v", descs)
	}
	assertTags(t, descs[0].Tags, wantTags)

	// Destroy, twice (idempotent), then the instance is gone from the listing.
	for i := 0; i < 2; i++ {
		if err := env.plugin.Destroy(ctx, *id, spi.Context{Reason: spi.ReasonTerminate}); err != nil {
			t.Fatalf("Destroy #%d: %v", i+1, err)
		}
	}
	descs, err = env.plugin.DescribeInstances(ctx, map[string]string{spi.GroupTag: group}, false)
	if err != nil || len(descs) != 0 {
		t.Fatalf("DescribeInstances after Destroy = %+v, %v; want none", descs, err)
	}
	// The listing skips it because EC2 says so, not only because this plugin remembers.
	fresh := New(awstest.Config(t, testenv.Moto(t)), Options{})
	descs, err = fresh.DescribeInstances(ctx, map[string]string{spi.GroupTag: group}, false)
	if err != nil || len(descs) != 0 {
		t.Fatalf("fresh plugin: DescribeInstances after Destroy = %+v, %v; want none", descs, err)
	}
	// An instance EC2 never knew is gone already.
	if err := env.plugin.Destroy(ctx, "i-0123456789abcdef0", spi.Context{Reason: spi.ReasonTerminate}); err != nil {
		t.Fatalf("Destroy(unknown instance): %v", err)
	}
}

func assertTags(t *testing.T, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("tags = %v, want %v", got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("tag %q = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
}

// TestMotoDescribePages lists more instances than fit on one page: every page must be read,
// other groups' and terminated instances must not appear.
func TestMotoDescribePages(t *testing.T) {
	env := newMoto(t, Options{PageSize: 5})
	ctx := context.Background()
	group, other := groupName(t), groupName(t)+"-other"
	const n = 13
	var ids []spi.ID
	for i := 0; i < n+3; i++ {
		g := group
		if i >= n {
			g = other
		}
		id, err := env.plugin.Provision(ctx, spi.Spec{Properties: env.props(t, nil), Tags: map[string]string{spi.GroupTag: g}})
		if err != nil {
			t.Fatalf("Provision #%d: %v", i, err)
		}
		if i < n {
			ids = append(ids, *id)
		}
	}
	// Terminate one behind the plugin's back: EC2's state must be honoured.
	if _, err := env.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{string(ids[0])}}); err != nil {
		t.Fatal(err)
	}
	env.resetCount("DescribeInstances")
	descs, err := env.plugin.DescribeInstances(ctx, map[string]string{spi.GroupTag: group}, false)
	if err != nil {
		t.Fatalf("DescribeInstances: %v", err)
	}
	// The terminated instance was never listed before; the plugin's memory of its launch must
	// yield to EC2's word that it is terminated.
	got := map[spi.ID]bool{}
	for _, d := range descs {
		got[d.ID] = true
		if d.Tags[spi.GroupTag] != group {
			t.Errorf("%s has group %q", d.ID, d.Tags[spi.GroupTag])
		}
	}
	if got[ids[0]] {
		t.Errorf("terminated instance %s listed", ids[0])
	}
	for _, id := range ids[1:] {
		if !got[id] {
			t.Errorf("instance %s missing", id)
		}
	}
	if len(descs) != n-1 {
		t.Errorf("listed %d instances, want %d", len(descs), n-1)
	}
	// 3 pages for 12 instances, plus one by ID for the launched-but-unlisted terminated one.
	if c := env.count("DescribeInstances"); c != 4 {
		t.Errorf("DescribeInstances made %d calls for %d instances at 5 per page, want 3 pages + 1 by ID", c, n-1)
	}
	env.resetCount("DescribeInstances")
	if descs, err := env.plugin.DescribeInstances(ctx, map[string]string{spi.GroupTag: group}, false); err != nil || len(descs) != n-1 {
		t.Fatalf("DescribeInstances again = %d, %v", len(descs), err)
	}
	if c := env.count("DescribeInstances"); c != 3 {
		t.Errorf("second listing made %d DescribeInstances calls, want 3 pages", c)
	}
	// nil tags lists everything, ours included.
	all, err := env.plugin.DescribeInstances(ctx, nil, false)
	if err != nil || len(all) < n-1+3 {
		t.Errorf("DescribeInstances(nil) = %d instances, %v; want at least %d", len(all), err, n+2)
	}
}

// TestMotoProvisionByImageDigest picks the AMI by the digest tag `mobykit aws import` sets.
func TestMotoProvisionByImageDigest(t *testing.T) {
	env := newMoto(t, Options{})
	ctx := context.Background()
	digest := "sha256:" + strings.Repeat("ab", 32)
	var imageID string
	for i := 0; i < 2; i++ { // two AMIs: the newest must win
		out, err := env.ec2.RegisterImage(ctx, &ec2.RegisterImageInput{Name: aws.String(fmt.Sprintf("%s-%d", groupName(t), i))})
		if err != nil {
			t.Fatalf("RegisterImage: %v", err)
		}
		if _, err := env.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{*out.ImageId},
			Tags: []types.Tag{{Key: aws.String(ami.DigestTag), Value: aws.String(digest)}}}); err != nil {
			t.Fatal(err)
		}
		imageID = *out.ImageId
		time.Sleep(1100 * time.Millisecond) // CreationDate has one-second resolution
	}
	group := groupName(t)
	props := fmt.Sprintf(`{"RunInstancesInput":{"InstanceType":"t3.micro","SubnetId":%q},"Image":{"Digest":%q}}`, env.subnet, digest)
	id, err := env.plugin.Provision(ctx, spi.Spec{Properties: spi.Any(props), Tags: map[string]string{spi.GroupTag: group}})
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	descs, err := env.plugin.DescribeInstances(ctx, map[string]string{spi.GroupTag: group}, true)
	if err != nil || len(descs) != 1 || descs[0].ID != *id {
		t.Fatalf("DescribeInstances = %+v, %v", descs, err)
	}
	var info InstanceInfo
	json.Unmarshal(descs[0].Properties, &info)
	if info.ImageId != imageID {
		t.Errorf("launched from %s, want the newest AMI with the digest, %s", info.ImageId, imageID)
	}

	missing := fmt.Sprintf(`{"RunInstancesInput":{"InstanceType":"t3.micro"},"Image":{"Digest":"sha256:%s"}}`, strings.Repeat("cd", 32))
	_, err = env.plugin.Provision(ctx, spi.Spec{Properties: spi.Any(missing), Tags: map[string]string{spi.GroupTag: group}})
	if err == nil || !strings.Contains(err.Error(), "mobykit aws import") || !strings.Contains(err.Error(), group) {
		t.Errorf("Provision with an unknown digest: %v; want an error naming the group and suggesting mobykit aws import", err)
	}
}

// TestMotoGraviton: an arm64 AMI (found by digest) launches on a Graviton instance type and is
// refused, naming both architectures, on an x86 one.
func TestMotoGraviton(t *testing.T) {
	env := newMoto(t, Options{})
	ctx := context.Background()
	digest := "sha256:" + strings.Repeat("a6", 32)
	// moto does not keep the Architecture of a registered image; it ships arm64 AMIs of its own.
	imgs, err := env.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{Filters: []types.Filter{
		{Name: aws.String("architecture"), Values: []string{"arm64"}}}})
	if err != nil || len(imgs.Images) == 0 {
		t.Fatalf("DescribeImages (arm64): %d images, %v", len(imgs.Images), err)
	}
	arm := imgs.Images[0]
	if arm.Architecture != types.ArchitectureValuesArm64 {
		t.Fatalf("moto's AMI %s is %q, want arm64", *arm.ImageId, arm.Architecture)
	}
	if _, err := env.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{*arm.ImageId},
		Tags: []types.Tag{{Key: aws.String(ami.DigestTag), Value: aws.String(digest)}}}); err != nil {
		t.Fatal(err)
	}
	out := struct{ ImageId *string }{arm.ImageId}
	owner := aws.ToString(arm.OwnerId)
	group := groupName(t)
	provision := func(instanceType string) (*spi.ID, error) {
		props := fmt.Sprintf(`{"RunInstancesInput":{"InstanceType":%q,"SubnetId":%q},"Image":{"Digest":%q,"Owners":[%q]}}`, instanceType, env.subnet, digest, owner)
		return env.plugin.Provision(ctx, spi.Spec{Properties: spi.Any(props), Tags: map[string]string{spi.GroupTag: group}})
	}
	_, err = provision("t3.micro")
	if err == nil || !strings.Contains(err.Error(), `"t3.micro" runs x86_64`) || !strings.Contains(err.Error(), *out.ImageId+" is arm64") {
		t.Fatalf("Provision of an arm64 AMI on t3.micro: %v; want an error naming both architectures", err)
	}
	if n := env.count("RunInstances"); n != 0 {
		t.Errorf("%d RunInstances calls for a refused architecture", n)
	}
	id, err := provision("t4g.micro")
	if err != nil {
		t.Fatalf("Provision on t4g.micro: %v", err)
	}
	descs, err := env.plugin.DescribeInstances(ctx, map[string]string{spi.GroupTag: group}, true)
	if err != nil || len(descs) != 1 || descs[0].ID != *id {
		t.Fatalf("DescribeInstances = %+v, %v", descs, err)
	}
	var info InstanceInfo
	json.Unmarshal(descs[0].Properties, &info)
	if info.ImageId != *out.ImageId || info.InstanceType != "t4g.micro" {
		t.Errorf("launched %s on %s, want %s on t4g.micro", info.ImageId, info.InstanceType, *out.ImageId)
	}
}

// TestMotoProvisionArm64MobyImage: a moby image flavor-moby built for arm64 ("arch") is
// registered as an arm64 AMI and launched on a Graviton type.
func TestMotoProvisionArm64MobyImage(t *testing.T) {
	env := newMoto(t, Options{})
	env.plugin.importer.PollInterval = 10 * time.Millisecond
	ctx := context.Background()
	disk := filepath.Join(t.TempDir(), "image.raw")
	data := make([]byte, 1<<20)
	rand.Read(data)
	data[510], data[511] = 0x55, 0xAA
	if err := os.WriteFile(disk, data, 0o644); err != nil {
		t.Fatal(err)
	}
	props := spi.Any(fmt.Sprintf(`{"RunInstancesInput":{"InstanceType":"m7g.medium","SubnetId":%q},"moby":%q,"arch":"arm64"}`, env.subnet, disk))
	spec := spi.Spec{Properties: props, Tags: map[string]string{spi.GroupTag: groupName(t)}}
	env.plugin.importWait = time.Minute
	if _, err := env.plugin.Provision(ctx, spec); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	env.mu.Lock()
	archs := env.archs
	env.mu.Unlock()
	if len(archs) != 1 || archs[0] != "arm64" {
		t.Errorf("RegisterImage architectures %q, want [arm64]", archs)
	}
}

// TestMotoVolumePerLogicalID: a member with a logical ID gets an EBS volume created in its
// subnet's zone, tagged with group, logical ID and name, and attached at the device; Destroy
// keeps it; the member's replacement gets the same volume re-attached; another logical ID
// gets its own.
func TestMotoVolumePerLogicalID(t *testing.T) {
	env := newMoto(t, Options{VolumePoll: 20 * time.Millisecond})
	ctx := context.Background()
	group := groupName(t)
	props := spi.Any(fmt.Sprintf(`{"RunInstancesInput":{"ImageId":"ami-12c6146b","InstanceType":"t3.micro","SubnetId":%q},
		"Volumes":[{"Name":"data","DeviceName":"/dev/sdf","Size":3,"VolumeType":"gp3"}]}`, env.subnet))
	provision := func(lid string) spi.ID {
		t.Helper()
		l := spi.LogicalID(lid)
		id, err := env.plugin.Provision(ctx, spi.Spec{Properties: props, LogicalID: &l, Tags: map[string]string{spi.GroupTag: group}})
		if err != nil {
			t.Fatalf("Provision %s: %v", lid, err)
		}
		return *id
	}
	volumes := func(lid string) []types.Volume {
		t.Helper()
		out, err := env.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []types.Filter{
			{Name: aws.String("tag:" + spi.GroupTag), Values: []string{group}},
			{Name: aws.String("tag:" + spi.LogicalIDTag), Values: []string{lid}},
			{Name: aws.String("tag:" + VolumeTag), Values: []string{"data"}}}})
		if err != nil {
			t.Fatal(err)
		}
		return out.Volumes
	}
	// attachedTo waits (bounded) for the volume of lid to be attached to instance.
	attachedTo := func(lid string, instance spi.ID) types.Volume {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			vols := volumes(lid)
			if len(vols) != 1 {
				t.Fatalf("%d volumes for %s, want 1: %+v", len(vols), lid, vols)
			}
			for _, a := range vols[0].Attachments {
				if aws.ToString(a.InstanceId) == string(instance) {
					if d := aws.ToString(a.Device); d != "/dev/sdf" {
						t.Errorf("attached at %s, want /dev/sdf", d)
					}
					return vols[0]
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("volume %s of %s not attached to %s: %+v", *vols[0].VolumeId, lid, instance, vols[0].Attachments)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	first := provision("a")
	vol := attachedTo("a", first)
	if *vol.Size != 3 || vol.VolumeType != types.VolumeTypeGp3 || *vol.AvailabilityZone != "us-east-1a" {
		t.Errorf("volume %s: %d GiB %s in %s, want 3 GiB gp3 in the subnet's zone us-east-1a", *vol.VolumeId, *vol.Size, vol.VolumeType, *vol.AvailabilityZone)
	}
	if err := env.plugin.Destroy(ctx, first, spi.Context{Reason: "rolling"}); err != nil {
		t.Fatal(err)
	}
	if vols := volumes("a"); len(vols) != 1 || *vols[0].VolumeId != *vol.VolumeId {
		t.Fatalf("after Destroy: volumes %+v, want %s kept", vols, *vol.VolumeId)
	}
	second := provision("a")
	if again := attachedTo("a", second); *again.VolumeId != *vol.VolumeId {
		t.Errorf("replacement got volume %s, want the member's %s", *again.VolumeId, *vol.VolumeId)
	}
	b1 := provision("b")
	other := attachedTo("b", b1)
	if *other.VolumeId == *vol.VolumeId {
		t.Errorf("logical ID b got a's volume %s", *vol.VolumeId)
	}
	// A replacement launched while the old instance still holds the volume gets it once the
	// old one is gone.
	b2 := provision("b")
	if vols := volumes("b"); len(vols) != 1 || len(vols[0].Attachments) != 1 || aws.ToString(vols[0].Attachments[0].InstanceId) != string(b1) {
		t.Fatalf("volume of b while b1 runs: %+v, want attached to %s only", vols, b1)
	}
	if err := env.plugin.Destroy(ctx, b1, spi.Context{Reason: "rolling"}); err != nil {
		t.Fatal(err)
	}
	attachedTo("b", b2)
}

// TestMotoNoSecretsInLogs captures every log line (debug level) while the plugin provisions,
// labels and destroys, and checks that neither the user data nor the secret key appear.
func TestMotoNoSecretsInLogs(t *testing.T) {
	endpoint := testenv.Moto(t)
	const secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYSECRETKEY"
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAMOBYKITTESTKEY01")
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	prev := slog.Default()
	slog.SetDefault(logger)
	t.Cleanup(func() { slog.SetDefault(prev) })

	ctx := context.Background()
	p, err := Open(ctx, Options{Endpoint: endpoint, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	const userData = "#cloud-config\npassword: TOPSECRET-USERDATA-42\n"
	group := groupName(t)
	id, err := p.Provision(ctx, spi.Spec{
		Properties: spi.Any(`{"RunInstancesInput":{"ImageId":"ami-12c6146b","InstanceType":"t3.micro"}}`),
		Tags:       map[string]string{spi.GroupTag: group},
		Init:       userData,
	})
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if err := p.Label(ctx, *id, map[string]string{"x": "y"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.DescribeInstances(ctx, map[string]string{spi.GroupTag: group}, true); err != nil {
		t.Fatal(err)
	}
	if err := p.Destroy(ctx, *id, spi.Context{Reason: spi.ReasonTerminate}); err != nil {
		t.Fatal(err)
	}
	logs := buf.String()
	if !strings.Contains(logs, string(*id)) {
		t.Fatalf("the capture saw no log line about %s; is logging wired? logs:\n%s", *id, logs)
	}
	for _, s := range []string{secret, "TOPSECRET-USERDATA-42", base64.StdEncoding.EncodeToString([]byte(userData)), "AKIAMOBYKITTESTKEY01"} {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain %q:\n%s", s, logs)
		}
	}
}

// TestMotoProvisionMobyImage: flavor-moby hands the plugin a built disk image ("moby"); the
// plugin imports it once in the background, answers "importing" meanwhile, then launches from
// the AMI; another group's Provision of the same file reuses the AMI.
func TestMotoProvisionMobyImage(t *testing.T) {
	env := newMoto(t, Options{})
	env.plugin.importer.PollInterval = 10 * time.Millisecond
	env.plugin.importWait = 0
	ctx := context.Background()
	disk := filepath.Join(t.TempDir(), "image.raw")
	data := make([]byte, 1<<20+7)
	rand.Read(data)
	data[510], data[511] = 0x55, 0xAA // an MBR boot signature: the importer checks for a disk
	if err := os.WriteFile(disk, data, 0o644); err != nil {
		t.Fatal(err)
	}
	group := groupName(t)
	props := spi.Any(fmt.Sprintf(`{"RunInstancesInput":{"InstanceType":"t3.micro","SubnetId":%q},"moby":%q,"Import":{"BootMode":"uefi"}}`, env.subnet, disk))
	spec := spi.Spec{Properties: props, Tags: map[string]string{spi.GroupTag: group}}
	_, err := env.plugin.Provision(ctx, spec)
	if err == nil || !strings.Contains(err.Error(), "importing moby image "+disk) {
		t.Fatalf("first Provision: %v; want an import-in-progress error", err)
	}
	var id *spi.ID
	deadline := time.Now().Add(20 * time.Second)
	for id == nil {
		if time.Now().After(deadline) {
			t.Fatalf("Provision still failing: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
		if id, err = env.plugin.Provision(ctx, spec); err != nil && !strings.Contains(err.Error(), "importing moby image") {
			t.Fatalf("Provision: %v", err)
		}
	}
	descs, err := env.plugin.DescribeInstances(ctx, map[string]string{spi.GroupTag: group}, true)
	if err != nil || len(descs) != 1 {
		t.Fatalf("DescribeInstances = %+v, %v", descs, err)
	}
	var info InstanceInfo
	json.Unmarshal(descs[0].Properties, &info)
	sum := sha256.Sum256(data)
	found, err := env.plugin.importer.FindByDigest(ctx, fmt.Sprintf("sha256:%x", sum))
	if err != nil || found == nil || aws.ToString(found.ImageId) != info.ImageId {
		t.Fatalf("instance runs %s; the AMI with the disk's digest is %+v (%v)", info.ImageId, found, err)
	}
	// A fresh plugin (a restarted process) finds the AMI by digest instead of importing again.
	fresh := New(awstest.Config(t, testenv.Moto(t)), Options{})
	if _, err := fresh.Provision(ctx, spec); err != nil {
		t.Fatalf("fresh plugin Provision: %v", err)
	}
	imgs, err := env.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: []types.Filter{{Name: aws.String("tag:" + ami.DigestTag), Values: []string{fmt.Sprintf("sha256:%x", sum)}}}})
	if err != nil || len(imgs.Images) != 1 {
		t.Errorf("AMIs with the digest: %d (%v), want 1", len(imgs.Images), err)
	}

	// A missing file fails at once, naming it.
	missing := spi.Any(`{"RunInstancesInput":{"InstanceType":"t3.micro"},"moby":"/nonexistent/image.raw"}`)
	if _, err := env.plugin.Provision(ctx, spi.Spec{Properties: missing, Tags: map[string]string{spi.GroupTag: group}}); err == nil || !strings.Contains(err.Error(), "/nonexistent/image.raw") {
		t.Errorf("Provision of a missing moby image: %v", err)
	}
}

// TestMotoSpotAndVolumes launches a spot instance with a security group and block devices and
// reads back what EC2 recorded.
func TestMotoSpotAndVolumes(t *testing.T) {
	env := newMoto(t, Options{})
	ctx := context.Background()
	sns, err := env.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: []string{env.subnet}})
	if err != nil {
		t.Fatal(err)
	}
	sg, err := env.ec2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{VpcId: sns.Subnets[0].VpcId,
		GroupName: aws.String(groupName(t)), Description: aws.String("spot test")})
	if err != nil {
		t.Fatal(err)
	}
	group := groupName(t)
	props := fmt.Sprintf(`{"RunInstancesInput":{"ImageId":"ami-12c6146b","InstanceType":"m5.large","SubnetId":%q,"SecurityGroupIds":[%q],
		"InstanceMarketOptions":{"MarketType":"spot","SpotOptions":{"MaxPrice":"0.05"}},
		"BlockDeviceMappings":[{"DeviceName":"/dev/sdf","Ebs":{"VolumeSize":20,"VolumeType":"gp3"}}]}}`, env.subnet, *sg.GroupId)
	id, err := env.plugin.Provision(ctx, spi.Spec{Properties: spi.Any(props), Tags: map[string]string{spi.GroupTag: group}})
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	out, err := env.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{string(*id)}})
	if err != nil || len(out.Reservations) != 1 {
		t.Fatalf("DescribeInstances: %v", err)
	}
	inst := out.Reservations[0].Instances[0]
	if inst.InstanceLifecycle != types.InstanceLifecycleTypeSpot {
		t.Errorf("lifecycle %q, want spot", inst.InstanceLifecycle)
	}
	if len(inst.SecurityGroups) != 1 || aws.ToString(inst.SecurityGroups[0].GroupId) != *sg.GroupId {
		t.Errorf("security groups %+v, want %s", inst.SecurityGroups, *sg.GroupId)
	}
	var vol string
	for _, b := range inst.BlockDeviceMappings {
		if aws.ToString(b.DeviceName) == "/dev/sdf" && b.Ebs != nil {
			vol = aws.ToString(b.Ebs.VolumeId)
			if !aws.ToBool(b.Ebs.DeleteOnTermination) {
				t.Errorf("/dev/sdf is kept after termination; the default is to delete it")
			}
		}
	}
	if vol == "" {
		t.Fatalf("no /dev/sdf volume in %+v", inst.BlockDeviceMappings)
	}
	vols, err := env.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vol}})
	if err != nil || len(vols.Volumes) != 1 || aws.ToInt32(vols.Volumes[0].Size) != 20 {
		t.Errorf("volume %s: %+v, %v; want 20 GiB", vol, vols, err)
	}
	descs, err := env.plugin.DescribeInstances(ctx, map[string]string{spi.GroupTag: group}, true)
	if err != nil || len(descs) != 1 || !strings.Contains(string(descs[0].Properties), `"InstanceLifecycle":"spot"`) {
		t.Errorf("DescribeInstances = %+v, %v; want InstanceLifecycle spot in Properties", descs, err)
	}
}
