package instanceaws

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/mobykit/mobykit/plugins/instance-aws/ami"
	"github.com/mobykit/mobykit/spi"
)

// VolumeTag names a member's persistent volume among its others (Volume.Name). With the
// group tag and the logical ID tag it identifies the volume across replacements.
const VolumeTag = "mobykit.volume"

// Volume is an EBS volume that belongs to a logical ID rather than to an instance: the
// plugin finds it by tag (group, logical ID, Name) or creates it, and attaches it to each
// instance that holds the logical ID. Destroy never deletes it; delete it by hand when the
// member is retired for good.
type Volume struct {
	// Name tells a member's volumes apart ("data"). Required: lower-case letters, digits, '-'.
	Name string
	// DeviceName is where it is attached, e.g. "/dev/sdf" (NVMe instances show it as
	// /dev/nvme1n1 and so on, in attachment order). Required.
	DeviceName string
	// Size in GiB of a new volume. Required.
	Size int32
	// VolumeType of a new volume: gp3 (default), gp2, io1, io2, st1, sc1, standard.
	VolumeType string `json:",omitempty"`
	// Encrypted, with KmsKeyId or the account's default key.
	Encrypted bool   `json:",omitempty"`
	KmsKeyId  string `json:",omitempty"`
}

var reVolumeName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

const maxVolumes = 16

// volumeAttachTimeout bounds how long the plugin waits for a volume to be free (its previous
// instance terminating) and attaches it.
const volumeAttachTimeout = 15 * time.Minute

func validateVolumes(p *Properties, bad func(string, string, ...any)) {
	if len(p.Volumes) == 0 {
		return
	}
	r := &p.RunInstancesInput
	if r.SubnetId == "" && (r.Placement == nil || r.Placement.AvailabilityZone == "") {
		bad("Volumes", "set RunInstancesInput.SubnetId or Placement.AvailabilityZone: a volume lives in one availability zone")
	}
	if len(p.Volumes) > maxVolumes {
		bad("Volumes", "%d volumes: at most %d", len(p.Volumes), maxVolumes)
	}
	names, devices := map[string]bool{}, map[string]bool{}
	for _, b := range r.BlockDeviceMappings {
		devices[b.DeviceName] = true
	}
	for i, v := range p.Volumes {
		f := fmt.Sprintf("Volumes[%d]", i)
		if !reVolumeName.MatchString(v.Name) {
			bad(f+".Name", "%q: want 1-63 lower-case letters, digits and '-'", v.Name)
		} else if names[v.Name] {
			bad(f+".Name", "%q used twice", v.Name)
		}
		names[v.Name] = true
		if !reDevice.MatchString(v.DeviceName) {
			bad(f+".DeviceName", "%q is not a device name (e.g. /dev/sdf)", v.DeviceName)
		} else if devices[v.DeviceName] {
			bad(f+".DeviceName", "%q is used by another volume or block device mapping", v.DeviceName)
		}
		devices[v.DeviceName] = true
		if v.Size < 1 || v.Size > 64*1024 {
			bad(f+".Size", "%d GiB: want 1 to 65536", v.Size)
		}
		switch v.VolumeType {
		case "", "gp2", "gp3", "io1", "io2", "st1", "sc1", "standard":
		default:
			bad(f+".VolumeType", "%q is not an EBS volume type", v.VolumeType)
		}
	}
}

// volumeZone returns the availability zone the member's volumes live in: Placement's, else
// the subnet's.
func (p *Plugin) volumeZone(ctx context.Context, r *RunInstancesInput) (string, error) {
	if r.Placement != nil && r.Placement.AvailabilityZone != "" {
		return r.Placement.AvailabilityZone, nil
	}
	out, err := p.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: []string{r.SubnetId}})
	if err != nil {
		return "", fmt.Errorf("DescribeSubnets %s (the zone of the volumes): %w", r.SubnetId, err)
	}
	if len(out.Subnets) != 1 || aws.ToString(out.Subnets[0].AvailabilityZone) == "" {
		return "", fmt.Errorf("DescribeSubnets %s: %d subnets, want 1 with an availability zone", r.SubnetId, len(out.Subnets))
	}
	return aws.ToString(out.Subnets[0].AvailabilityZone), nil
}

// memberVolumes finds or creates the volumes of a logical ID, in zone, before its instance
// is launched: a volume in another zone, or two volumes with the same tags, is an error (the
// plugin never guesses which copy of a member's data is the right one).
func (p *Plugin) memberVolumes(ctx context.Context, props *Properties, group string, id spi.LogicalID, zone string) ([]string, error) {
	ids := make([]string, 0, len(props.Volumes))
	for _, v := range props.Volumes {
		tags := map[string]string{spi.GroupTag: group, spi.LogicalIDTag: string(id), VolumeTag: v.Name}
		filters := []types.Filter{{Name: aws.String("status"), Values: []string{"creating", "available", "in-use"}}}
		for _, k := range []string{spi.GroupTag, spi.LogicalIDTag, VolumeTag} {
			filters = append(filters, types.Filter{Name: aws.String("tag:" + k), Values: []string{tags[k]}})
		}
		out, err := p.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: filters})
		if err != nil {
			return nil, fmt.Errorf("volume %q: DescribeVolumes: %w", v.Name, err)
		}
		var found []types.Volume
		for _, vol := range out.Volumes {
			if hasTags(tagMap(vol.Tags), tags) { // guard against emulators that do not filter
				found = append(found, vol)
			}
		}
		switch len(found) {
		case 0:
			tags[NameTag] = group + "-" + string(id) + "-" + v.Name
			in := &ec2.CreateVolumeInput{
				AvailabilityZone:  aws.String(zone),
				Size:              aws.Int32(v.Size),
				VolumeType:        types.VolumeType(v.VolumeType),
				TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeVolume, Tags: ami.EC2Tags(tags)}},
				ClientToken:       aws.String(randomToken()),
			}
			if in.VolumeType == "" {
				in.VolumeType = types.VolumeTypeGp3
			}
			if v.Encrypted {
				in.Encrypted = aws.Bool(true)
			}
			if v.KmsKeyId != "" {
				in.KmsKeyId = aws.String(v.KmsKeyId)
			}
			created, err := p.ec2.CreateVolume(ctx, in)
			if err != nil {
				return nil, fmt.Errorf("volume %q: CreateVolume in %s: %w", v.Name, zone, err)
			}
			p.log.Info("created volume", "volume", aws.ToString(created.VolumeId), "name", v.Name, "group", group, "logical_id", id, "zone", zone)
			ids = append(ids, aws.ToString(created.VolumeId))
		case 1:
			vol := found[0]
			if z := aws.ToString(vol.AvailabilityZone); z != zone {
				return nil, fmt.Errorf("volume %q (%s) is in %s but the member launches in %s: move the volume (snapshot and restore) or launch in its zone", v.Name, aws.ToString(vol.VolumeId), z, zone)
			}
			ids = append(ids, aws.ToString(vol.VolumeId))
		default:
			var dup []string
			for _, vol := range found {
				dup = append(dup, aws.ToString(vol.VolumeId))
			}
			return nil, fmt.Errorf("volume %q: %d volumes %v carry the tags of logical ID %q: keep one", v.Name, len(found), dup, id)
		}
	}
	return ids, nil
}

// attachVolumes attaches the member's volumes to instance in the background: each waits until
// it is free (its previous instance is still terminating during a replacement) and the
// instance can take it. Failures are logged; the member then runs without its data, which
// its health check sees.
func (p *Plugin) attachVolumes(instance spi.ID, props *Properties, volumeIDs []string) {
	for i, vid := range volumeIDs {
		v := props.Volumes[i]
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), volumeAttachTimeout)
			defer cancel()
			if err := p.attachVolume(ctx, instance, vid, v.DeviceName); err != nil {
				p.log.Error("attaching volume", "instance", instance, "volume", vid, "name", v.Name, "device", v.DeviceName, "err", err)
				return
			}
			p.log.Info("attached volume", "instance", instance, "volume", vid, "name", v.Name, "device", v.DeviceName)
		}()
	}
}

func (p *Plugin) attachVolume(ctx context.Context, instance spi.ID, vid, device string) error {
	for {
		out, err := p.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vid}})
		if err != nil {
			return fmt.Errorf("DescribeVolumes %s: %w", vid, err)
		}
		if len(out.Volumes) != 1 {
			return fmt.Errorf("volume %s is gone", vid)
		}
		vol := out.Volumes[0]
		for _, a := range vol.Attachments {
			if aws.ToString(a.InstanceId) == string(instance) {
				return nil
			}
		}
		if vol.State == types.VolumeStateAvailable {
			_, err := p.ec2.AttachVolume(ctx, &ec2.AttachVolumeInput{InstanceId: aws.String(string(instance)), VolumeId: aws.String(vid), Device: aws.String(device)})
			if err == nil {
				return nil
			}
			switch apiCode(err) {
			case "IncorrectState", "IncorrectInstanceState", "VolumeInUse", "InvalidInstanceID.NotFound":
				// The instance is not running yet or the volume was taken meanwhile: retry.
			default:
				return fmt.Errorf("AttachVolume %s to %s at %s: %w", vid, instance, device, err)
			}
		}
		if err := sleepCtx(ctx, p.opts.VolumePoll); err != nil {
			return fmt.Errorf("volume %s not free to attach to %s (state %s): %w", vid, instance, vol.State, err)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func tagMap(tags []types.Tag) map[string]string {
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}
