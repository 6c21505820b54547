package instanceaws

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/mobykit/mobykit/plugins/instance-aws/ami"
	"github.com/mobykit/mobykit/spi"
)

// NameTag is EC2's display-name tag. Provision sets it to "<group>-<logical ID>" (or the group
// ID alone) unless the spec or Properties.Tags set it.
const NameTag = "Name"

// consistencyWindow is how long the plugin papers over EC2's eventual consistency: an instance
// it launched is listed even if DescribeInstances does not return it yet, and an instance it
// terminated is hidden even if DescribeInstances still shows it running (docs/infrakit/PROTOCOL.md §13.2).
const consistencyWindow = 2 * time.Minute

// Plugin is the EC2 instance plugin. It is safe for concurrent use.
type Plugin struct {
	ec2  *ec2.Client
	opts Options
	log  *slog.Logger
	now  func() time.Time

	importer   *ami.Importer
	importWait time.Duration // how long Provision waits for an import before saying "later"

	mu       sync.Mutex
	launched map[spi.ID]launched  // provisioned, not yet seen listed
	gone     map[spi.ID]time.Time // destroyed
	imports  map[string]*importJob
}

type launched struct {
	desc spi.Description
	at   time.Time
}

var _ spi.Instance = (*Plugin)(nil)

// New returns a plugin using cfg (see LoadConfig).
func New(cfg aws.Config, opts Options) *Plugin {
	opts = opts.withDefaults()
	return &Plugin{
		ec2:        ec2.NewFromConfig(cfg),
		opts:       opts,
		log:        opts.Logger.With("component", "instance-aws"),
		now:        time.Now,
		launched:   map[spi.ID]launched{},
		gone:       map[spi.ID]time.Time{},
		imports:    map[string]*importJob{},
		importer:   ami.New(cfg, opts.Logger),
		importWait: 5 * time.Second,
	}
}

// Open loads the SDK configuration from the standard chain and opts and returns a plugin.
func Open(ctx context.Context, opts Options) (*Plugin, error) {
	cfg, err := LoadConfig(ctx, opts)
	if err != nil {
		return nil, err
	}
	return New(cfg, opts), nil
}

// Validate checks a group's Instance Properties without calling AWS.
func (p *Plugin) Validate(_ context.Context, properties spi.Any) error {
	_, err := ParseProperties(properties)
	return err
}

// Provision launches one instance and returns its ID as soon as EC2 accepted the launch.
func (p *Plugin) Provision(ctx context.Context, spec spi.Spec) (*spi.ID, error) {
	what := describeSpec(spec)
	props, err := ParseProperties(spec.Properties)
	if err != nil {
		return nil, fmt.Errorf("instance-aws: provision %s: %w", what, err)
	}
	if len(spec.Init) > maxUserData {
		return nil, fmt.Errorf("instance-aws: provision %s: Init is %d bytes, EC2 user data takes at most %d", what, len(spec.Init), maxUserData)
	}
	tags, err := instanceTags(spec, props)
	if err != nil {
		return nil, fmt.Errorf("instance-aws: provision %s: %w", what, err)
	}
	if len(spec.Attachments) > 0 {
		p.log.Warn("instance-aws does not attach Spec.Attachments; ignoring them", "group", tags[spi.GroupTag], "attachments", len(spec.Attachments))
	}
	var imageID string
	switch {
	case props.RunInstancesInput.ImageId != "":
		imageID = props.RunInstancesInput.ImageId
	case props.Image != nil:
		imageID, err = p.resolveImage(ctx, props.Image)
	case props.Moby != "":
		imageID, err = p.importMoby(ctx, props.Moby, props.Import)
	default:
		err = errors.New("no image: set RunInstancesInput.ImageId or Image in the Instance Properties, or use flavor-moby, which sets moby")
	}
	if err != nil {
		return nil, fmt.Errorf("instance-aws: provision %s: %w", what, err)
	}
	in := runInput(props, imageID, tags)
	if spec.Init != "" {
		in.UserData = aws.String(base64.StdEncoding.EncodeToString([]byte(spec.Init)))
	}
	privIP := ""
	if ip, ok := privateIP(spec.LogicalID); ok {
		// The member's address goes on an explicit primary interface, deleted with the
		// instance, so that the address is free again for the member's replacement. (EC2 does
		// the same by default; emulators such as moto keep the address otherwise.)
		privIP = ip.String()
		if in.SubnetId == nil {
			return nil, fmt.Errorf("instance-aws: provision %s: the logical ID is an IP address: set RunInstancesInput.SubnetId to the subnet that holds it", what)
		}
		in.NetworkInterfaces = []types.InstanceNetworkInterfaceSpecification{{
			DeviceIndex:         aws.Int32(0),
			SubnetId:            in.SubnetId,
			Groups:              in.SecurityGroupIds,
			PrivateIpAddress:    aws.String(privIP),
			DeleteOnTermination: aws.Bool(true),
		}}
		in.SubnetId, in.SecurityGroupIds = nil, nil
	}
	// One token per Provision call: the SDK's own retries of this RunInstances are then
	// idempotent, so a lost response never launches a second machine.
	in.ClientToken = aws.String(randomToken())

	out, err := p.ec2.RunInstances(ctx, in)
	if err != nil {
		if apiCode(err) == "InvalidIPAddress.InUse" {
			// A quorum member's replacement: the old instance keeps its address until it has
			// terminated (up to a minute or two). The group controller provisions again on
			// its next pass.
			return nil, fmt.Errorf("instance-aws: provision %s: RunInstances: private IP %s is still held by the member being replaced (retry once it has terminated): %w", what, privIP, err)
		}
		return nil, fmt.Errorf("instance-aws: provision %s: RunInstances: %w", what, err)
	}
	if len(out.Instances) != 1 || out.Instances[0].InstanceId == nil {
		return nil, fmt.Errorf("instance-aws: provision %s: RunInstances returned %d instances", what, len(out.Instances))
	}
	id := spi.ID(aws.ToString(out.Instances[0].InstanceId))
	d := spi.Description{ID: id, Tags: tags, LogicalID: logicalID(tags)}
	p.mu.Lock()
	p.launched[id] = launched{desc: d, at: p.now()}
	p.mu.Unlock()
	p.log.Info("launched instance", "instance", id, "image", imageID,
		"type", props.RunInstancesInput.InstanceType, "private_ip", privIP,
		"group", tags[spi.GroupTag], "spot", props.RunInstancesInput.InstanceMarketOptions != nil)
	return &id, nil
}

// describeSpec names a spec in errors: its group and logical ID, never its user data.
func describeSpec(spec spi.Spec) string {
	s := "group " + fmt.Sprintf("%q", spec.Tags[spi.GroupTag])
	if spec.LogicalID != nil {
		s += fmt.Sprintf(" logical ID %q", *spec.LogicalID)
	}
	return s
}

// instanceTags merges the tags put on a new instance: a default Name, then Properties.Tags,
// then the spec's tags (the group controller's, which must be reported back exactly), then the
// logical ID tag.
func instanceTags(spec spi.Spec, props *Properties) (map[string]string, error) {
	tags := map[string]string{}
	if g := spec.Tags[spi.GroupTag]; g != "" {
		tags[NameTag] = g
		if spec.LogicalID != nil {
			tags[NameTag] = g + "-" + string(*spec.LogicalID)
		}
	}
	maps.Copy(tags, props.Tags)
	maps.Copy(tags, spec.Tags)
	if spec.LogicalID != nil {
		if _, ok := tags[spi.LogicalIDTag]; !ok {
			tags[spi.LogicalIDTag] = string(*spec.LogicalID)
		}
	}
	if len(tags) > maxTags {
		return nil, fmt.Errorf("%d tags: EC2 allows %d per instance", len(tags), maxTags)
	}
	for k, v := range tags {
		if err := checkTag(k, v); err != nil {
			return nil, fmt.Errorf("tag %q: %w", k, err)
		}
	}
	return tags, nil
}

func logicalID(tags map[string]string) *spi.LogicalID {
	if v, ok := tags[spi.LogicalIDTag]; ok {
		l := spi.LogicalID(v)
		return &l
	}
	return nil
}

// runInput translates Properties into the SDK's RunInstancesInput.
func runInput(props *Properties, imageID string, tags map[string]string) *ec2.RunInstancesInput {
	r := props.RunInstancesInput
	in := &ec2.RunInstancesInput{
		ImageId:      aws.String(imageID),
		InstanceType: types.InstanceType(r.InstanceType),
		MinCount:     aws.Int32(1),
		MaxCount:     aws.Int32(1),
		TagSpecifications: []types.TagSpecification{
			{ResourceType: types.ResourceTypeInstance, Tags: ami.EC2Tags(tags)},
			{ResourceType: types.ResourceTypeVolume, Tags: ami.EC2Tags(tags)},
		},
		SecurityGroupIds:                  r.SecurityGroupIds,
		InstanceInitiatedShutdownBehavior: types.ShutdownBehavior(r.InstanceInitiatedShutdownBehavior),
	}
	if r.SubnetId != "" {
		in.SubnetId = aws.String(r.SubnetId)
	}
	if r.KeyName != "" {
		in.KeyName = aws.String(r.KeyName)
	}
	if r.EbsOptimized {
		in.EbsOptimized = aws.Bool(true)
	}
	if ip := r.IamInstanceProfile; ip != nil {
		in.IamInstanceProfile = &types.IamInstanceProfileSpecification{}
		if ip.Arn != "" {
			in.IamInstanceProfile.Arn = aws.String(ip.Arn)
		}
		if ip.Name != "" {
			in.IamInstanceProfile.Name = aws.String(ip.Name)
		}
	}
	for _, b := range r.BlockDeviceMappings {
		m := types.BlockDeviceMapping{DeviceName: aws.String(b.DeviceName)}
		if b.VirtualName != "" {
			m.VirtualName = aws.String(b.VirtualName)
		}
		if b.NoDevice {
			m.NoDevice = aws.String("")
		}
		if e := b.Ebs; e != nil {
			eb := &types.EbsBlockDevice{DeleteOnTermination: aws.Bool(e.DeleteOnTermination == nil || *e.DeleteOnTermination)}
			if e.VolumeSize != 0 {
				eb.VolumeSize = aws.Int32(e.VolumeSize)
			}
			eb.VolumeType = types.VolumeType(e.VolumeType)
			if e.Iops != 0 {
				eb.Iops = aws.Int32(e.Iops)
			}
			if e.Throughput != 0 {
				eb.Throughput = aws.Int32(e.Throughput)
			}
			if e.Encrypted {
				eb.Encrypted = aws.Bool(true)
			}
			if e.KmsKeyId != "" {
				eb.KmsKeyId = aws.String(e.KmsKeyId)
			}
			if e.SnapshotId != "" {
				eb.SnapshotId = aws.String(e.SnapshotId)
			}
			m.Ebs = eb
		}
		in.BlockDeviceMappings = append(in.BlockDeviceMappings, m)
	}
	if m := r.InstanceMarketOptions; m != nil {
		in.InstanceMarketOptions = &types.InstanceMarketOptionsRequest{MarketType: types.MarketType(m.MarketType)}
		if s := m.SpotOptions; s != nil {
			so := &types.SpotMarketOptions{
				SpotInstanceType:             types.SpotInstanceType(s.SpotInstanceType),
				InstanceInterruptionBehavior: types.InstanceInterruptionBehavior(s.InstanceInterruptionBehavior),
			}
			if s.MaxPrice != "" {
				so.MaxPrice = aws.String(s.MaxPrice)
			}
			in.InstanceMarketOptions.SpotOptions = so
		}
	}
	if pl := r.Placement; pl != nil {
		in.Placement = &types.Placement{Tenancy: types.Tenancy(pl.Tenancy)}
		if pl.AvailabilityZone != "" {
			in.Placement.AvailabilityZone = aws.String(pl.AvailabilityZone)
		}
		if pl.GroupName != "" {
			in.Placement.GroupName = aws.String(pl.GroupName)
		}
	}
	if m := r.MetadataOptions; m != nil {
		in.MetadataOptions = &types.InstanceMetadataOptionsRequest{
			HttpTokens:   types.HttpTokensState(m.HttpTokens),
			HttpEndpoint: types.InstanceMetadataEndpointState(m.HttpEndpoint),
		}
		if m.HttpPutResponseHopLimit != 0 {
			in.MetadataOptions.HttpPutResponseHopLimit = aws.Int32(m.HttpPutResponseHopLimit)
		}
	}
	return in
}

// resolveImage finds the newest available AMI matching ref.
func (p *Plugin) resolveImage(ctx context.Context, ref *ImageRef) (string, error) {
	owners := ref.Owners
	if len(owners) == 0 {
		owners = []string{"self"}
	}
	filters := []types.Filter{{Name: aws.String("state"), Values: []string{"available"}}}
	if ref.Digest != "" {
		filters = append(filters, types.Filter{Name: aws.String("tag:" + ami.DigestTag), Values: []string{ref.Digest}})
	}
	if ref.Name != "" {
		filters = append(filters, types.Filter{Name: aws.String("name"), Values: []string{ref.Name}})
	}
	out, err := p.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: owners, Filters: filters})
	if err != nil {
		return "", fmt.Errorf("DescribeImages (image %s): %w", ref, err)
	}
	img := ami.Newest(out.Images)
	if img == nil {
		return "", fmt.Errorf("no available AMI owned by %v matches image %s (run `mobykit aws import` first)", owners, ref)
	}
	return aws.ToString(img.ImageId), nil
}

func (r *ImageRef) String() string {
	switch {
	case r.Digest != "" && r.Name != "":
		return fmt.Sprintf("name %q digest %s", r.Name, r.Digest)
	case r.Digest != "":
		return "digest " + r.Digest
	default:
		return fmt.Sprintf("name %q", r.Name)
	}
}

// liveStates are the instance states DescribeInstances reports; shutting-down and terminated
// instances are gone as far as a group is concerned.
var liveStates = []string{"pending", "running", "stopping", "stopped"}

// DescribeInstances lists the live instances carrying all of tags, reading every page.
func (p *Plugin) DescribeInstances(ctx context.Context, tags map[string]string, properties bool) ([]spi.Description, error) {
	filters := []types.Filter{{Name: aws.String("instance-state-name"), Values: liveStates}}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		filters = append(filters, types.Filter{Name: aws.String("tag:" + k), Values: []string{tags[k]}})
	}
	pages := ec2.NewDescribeInstancesPaginator(p.ec2, &ec2.DescribeInstancesInput{
		Filters:    filters,
		MaxResults: aws.Int32(p.opts.PageSize),
	})
	result := []spi.Description{}
	seen := map[spi.ID]bool{}
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("instance-aws: DescribeInstances (tags %v): %w", tags, err)
		}
		for _, r := range page.Reservations {
			for _, inst := range r.Instances {
				if inst.State != nil && (inst.State.Name == types.InstanceStateNameTerminated || inst.State.Name == types.InstanceStateNameShuttingDown) {
					continue
				}
				id := spi.ID(aws.ToString(inst.InstanceId))
				if seen[id] {
					continue
				}
				seen[id] = true
				d := spi.Description{ID: id, Tags: map[string]string{}}
				for _, t := range inst.Tags {
					d.Tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
				}
				if !hasTags(d.Tags, tags) { // the server filtered already; guard against emulators that do not
					continue
				}
				d.LogicalID = logicalID(d.Tags)
				if properties {
					d.Properties = describeProperties(inst)
				}
				result = append(result, d)
			}
		}
	}
	if unseen := p.unseen(seen, tags); len(unseen) > 0 {
		// Launched by this plugin but not listed: ask EC2 about them by ID. Those it reports
		// terminated are forgotten; those it does not know yet stay listed as pending.
		out, err := p.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: unseen})
		if err != nil && apiCode(err) != "InvalidInstanceID.NotFound" {
			return nil, fmt.Errorf("instance-aws: DescribeInstances (instances %v): %w", unseen, err)
		}
		if out != nil {
			for _, r := range out.Reservations {
				for _, inst := range r.Instances {
					id := spi.ID(aws.ToString(inst.InstanceId))
					seen[id] = true
					if inst.State == nil || inst.State.Name == types.InstanceStateNameTerminated || inst.State.Name == types.InstanceStateNameShuttingDown {
						continue
					}
					d := spi.Description{ID: id, Tags: map[string]string{}}
					for _, t := range inst.Tags {
						d.Tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
					}
					if hasTags(d.Tags, tags) {
						d.LogicalID = logicalID(d.Tags)
						if properties {
							d.Properties = describeProperties(inst)
						}
						result = append(result, d)
					}
				}
			}
		}
	}
	return p.reconcile(result, seen, tags, properties), nil
}

// unseen returns the instances this plugin launched recently that match tags but were not
// listed.
func (p *Plugin) unseen(seen map[spi.ID]bool, tags map[string]string) []string {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []string
	for id, l := range p.launched {
		if !seen[id] && now.Sub(l.at) <= consistencyWindow && hasTags(l.desc.Tags, tags) {
			ids = append(ids, string(id))
		}
	}
	sort.Strings(ids)
	return ids
}

// reconcile applies the consistency window: drop what this plugin destroyed, add what it
// launched but EC2 does not list yet, and forget entries that are listed or old.
func (p *Plugin) reconcile(result []spi.Description, seen map[spi.ID]bool, tags map[string]string, properties bool) []spi.Description {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, at := range p.gone {
		if now.Sub(at) > consistencyWindow {
			delete(p.gone, id)
		}
	}
	if len(p.gone) > 0 {
		kept := result[:0]
		for _, d := range result {
			if _, dead := p.gone[d.ID]; !dead {
				kept = append(kept, d)
			}
		}
		result = kept
	}
	for id, l := range p.launched {
		switch {
		case seen[id] || now.Sub(l.at) > consistencyWindow:
			delete(p.launched, id)
		case hasTags(l.desc.Tags, tags):
			d := l.desc
			d.Tags = maps.Clone(l.desc.Tags)
			if properties {
				d.Properties, _ = json.Marshal(InstanceInfo{InstanceId: string(id), State: "pending"})
			}
			result = append(result, d)
		}
	}
	sort.Slice(result, func(i, j int) bool { return result[i].ID < result[j].ID })
	return result
}

func hasTags(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

// InstanceInfo is what DescribeInstances reports as an instance's Properties: its state and
// addresses, with EC2's field names.
type InstanceInfo struct {
	InstanceId        string
	State             string
	ImageId           string   `json:",omitempty"`
	InstanceType      string   `json:",omitempty"`
	InstanceLifecycle string   `json:",omitempty"` // "spot" for spot instances
	PrivateIpAddress  string   `json:",omitempty"`
	PublicIpAddress   string   `json:",omitempty"`
	PrivateDnsName    string   `json:",omitempty"`
	PublicDnsName     string   `json:",omitempty"`
	Ipv6Addresses     []string `json:",omitempty"`
	SubnetId          string   `json:",omitempty"`
	VpcId             string   `json:",omitempty"`
	AvailabilityZone  string   `json:",omitempty"`
	LaunchTime        string   `json:",omitempty"` // RFC 3339

	// Address and Started are the names flavor-moby's health checks read (shared with the
	// local VM plugins): the private address (public when there is none) and the launch time.
	Address string     `json:"address,omitempty"`
	Started *time.Time `json:"started,omitempty"`
}

func describeProperties(inst types.Instance) spi.Any {
	info := InstanceInfo{
		InstanceId:        aws.ToString(inst.InstanceId),
		ImageId:           aws.ToString(inst.ImageId),
		InstanceType:      string(inst.InstanceType),
		InstanceLifecycle: string(inst.InstanceLifecycle),
		PrivateIpAddress:  aws.ToString(inst.PrivateIpAddress),
		PublicIpAddress:   aws.ToString(inst.PublicIpAddress),
		PrivateDnsName:    aws.ToString(inst.PrivateDnsName),
		PublicDnsName:     aws.ToString(inst.PublicDnsName),
		SubnetId:          aws.ToString(inst.SubnetId),
		VpcId:             aws.ToString(inst.VpcId),
	}
	if inst.State != nil {
		info.State = string(inst.State.Name)
	}
	if inst.Placement != nil {
		info.AvailabilityZone = aws.ToString(inst.Placement.AvailabilityZone)
	}
	if inst.LaunchTime != nil {
		t := inst.LaunchTime.UTC()
		info.LaunchTime = t.Format(time.RFC3339)
		info.Started = &t
	}
	info.Address = info.PrivateIpAddress
	if info.Address == "" {
		info.Address = info.PublicIpAddress
	}
	for _, ni := range inst.NetworkInterfaces {
		for _, a := range ni.Ipv6Addresses {
			if a.Ipv6Address != nil {
				info.Ipv6Addresses = append(info.Ipv6Addresses, *a.Ipv6Address)
			}
		}
	}
	b, _ := json.Marshal(info)
	return b
}

// notFoundRetry makes a freshly launched instance's "does not exist" answer retryable: EC2 is
// eventually consistent and may not know an instance for a few seconds after RunInstances.
func notFoundRetry(o *ec2.Options) {
	o.Retryer = retry.AddWithErrorCodes(o.Retryer, "InvalidInstanceID.NotFound")
}

// Label merges labels into the instance's tags (CreateTags overwrites keys it names and keeps
// the others).
func (p *Plugin) Label(ctx context.Context, instance spi.ID, labels map[string]string) error {
	if len(labels) == 0 {
		return nil
	}
	for k, v := range labels {
		if err := checkTag(k, v); err != nil {
			return fmt.Errorf("instance-aws: label %s: tag %q: %w", instance, k, err)
		}
	}
	_, err := p.ec2.CreateTags(ctx, &ec2.CreateTagsInput{
		Resources: []string{string(instance)},
		Tags:      ami.EC2Tags(labels),
	}, notFoundRetry)
	if err != nil {
		return fmt.Errorf("instance-aws: label %s: CreateTags: %w", instance, err)
	}
	p.mu.Lock()
	if l, ok := p.launched[instance]; ok {
		l.desc.Tags = maps.Clone(l.desc.Tags)
		maps.Copy(l.desc.Tags, labels)
		l.desc.LogicalID = logicalID(l.desc.Tags)
		p.launched[instance] = l
	}
	p.mu.Unlock()
	p.log.Debug("labelled instance", "instance", instance, "keys", len(labels))
	return nil
}

// Unlabel deletes tags by key. It is mobykit's extension: InfraKit's Label only merges.
func (p *Plugin) Unlabel(ctx context.Context, instance spi.ID, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	tags := make([]types.Tag, 0, len(keys))
	for _, k := range keys {
		tags = append(tags, types.Tag{Key: aws.String(k)})
	}
	if _, err := p.ec2.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{string(instance)}, Tags: tags}, notFoundRetry); err != nil {
		return fmt.Errorf("instance-aws: unlabel %s: DeleteTags: %w", instance, err)
	}
	p.mu.Lock()
	if l, ok := p.launched[instance]; ok {
		l.desc.Tags = maps.Clone(l.desc.Tags)
		for _, k := range keys {
			delete(l.desc.Tags, k)
		}
		l.desc.LogicalID = logicalID(l.desc.Tags)
		p.launched[instance] = l
	}
	p.mu.Unlock()
	return nil
}

// Destroy terminates the instance. An instance EC2 does not know (already gone) is not an
// error, so Destroy is idempotent.
func (p *Plugin) Destroy(ctx context.Context, instance spi.ID, c spi.Context) error {
	_, err := p.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{string(instance)}})
	if err != nil && apiCode(err) != "InvalidInstanceID.NotFound" && !p.terminated(ctx, instance) {
		return fmt.Errorf("instance-aws: destroy %s (%s): TerminateInstances: %w", instance, c.Reason, err)
	}
	p.mu.Lock()
	delete(p.launched, instance)
	p.gone[instance] = p.now()
	p.mu.Unlock()
	p.log.Info("terminated instance", "instance", instance, "reason", c.Reason, "already_gone", err != nil)
	return nil
}

// terminated reports whether EC2 says the instance is terminated or shutting down: a failed
// TerminateInstances on such an instance (moto, for one, fails the second time) is a success.
func (p *Plugin) terminated(ctx context.Context, instance spi.ID) bool {
	out, err := p.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{string(instance)}})
	if err != nil {
		return false
	}
	for _, r := range out.Reservations {
		for _, i := range r.Instances {
			if i.State != nil && (i.State.Name == types.InstanceStateNameTerminated || i.State.Name == types.InstanceStateNameShuttingDown) {
				return true
			}
		}
	}
	return false
}

// apiCode returns the AWS error code of err ("" when err is not an API error).
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func randomToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
