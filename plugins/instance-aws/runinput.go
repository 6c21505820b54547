package instanceaws

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/mobykit/mobykit/plugins/instance-aws/ami"
)

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
