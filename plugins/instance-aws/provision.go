package instanceaws

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/mobykit/mobykit/spi"
)

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
	var imageID, imageArch string // imageArch stays "" when only EC2 knows it (ImageId)
	switch {
	case props.RunInstancesInput.ImageId != "":
		imageID = props.RunInstancesInput.ImageId
	case props.Image != nil:
		imageID, imageArch, err = p.resolveImage(ctx, props.Image)
	case props.Moby != "":
		imageArch = props.importArch()
		imageID, err = p.importMoby(ctx, props.Moby, props.Import, imageArch)
	default:
		err = errors.New("no image: set RunInstancesInput.ImageId or Image in the Instance Properties, or use flavor-moby, which sets moby")
	}
	if err != nil {
		return nil, fmt.Errorf("instance-aws: provision %s: %w", what, err)
	}
	var volumeIDs []string
	if len(props.Volumes) > 0 && spec.LogicalID != nil {
		zone, err := p.volumeZone(ctx, &props.RunInstancesInput)
		if err == nil {
			volumeIDs, err = p.memberVolumes(ctx, props, tags[spi.GroupTag], *spec.LogicalID, zone)
		}
		if err != nil {
			return nil, fmt.Errorf("instance-aws: provision %s: %w", what, err)
		}
	}
	if err := checkArch(props.RunInstancesInput.InstanceType, imageArch, imageID); err != nil {
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
	p.recent.launch(d, p.now())
	p.attachVolumes(id, props, volumeIDs)
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
