package instanceaws

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/mobykit/mobykit/spi"
)

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
				if inst.State != nil && ended(inst.State.Name) {
					continue
				}
				id := spi.ID(aws.ToString(inst.InstanceId))
				if seen[id] {
					continue
				}
				seen[id] = true
				// The server filtered by tag already; describe guards against emulators that do not.
				if d, ok := describe(inst, tags, properties); ok {
					result = append(result, d)
				}
			}
		}
	}
	if unseen := p.recent.unseen(seen, tags, p.now()); len(unseen) > 0 {
		// Launched by this plugin but not listed: ask EC2 about them by ID. Those it reports
		// terminated are forgotten; those it does not know yet stay listed as pending.
		out, err := p.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: unseen})
		if err != nil && apiCode(err) != "InvalidInstanceID.NotFound" {
			return nil, fmt.Errorf("instance-aws: DescribeInstances (instances %v): %w", unseen, err)
		}
		if out != nil {
			for _, r := range out.Reservations {
				for _, inst := range r.Instances {
					seen[spi.ID(aws.ToString(inst.InstanceId))] = true
					if inst.State == nil || ended(inst.State.Name) {
						continue
					}
					if d, ok := describe(inst, tags, properties); ok {
						result = append(result, d)
					}
				}
			}
		}
	}
	return p.recent.reconcile(result, seen, tags, properties, p.now()), nil
}

// ended reports whether an instance in state s is gone as far as a group is concerned.
func ended(s types.InstanceStateName) bool {
	return s == types.InstanceStateNameTerminated || s == types.InstanceStateNameShuttingDown
}

// describe converts a live EC2 instance into a Description. It reports false for an instance
// that does not carry all of want.
func describe(inst types.Instance, want map[string]string, properties bool) (spi.Description, bool) {
	d := spi.Description{ID: spi.ID(aws.ToString(inst.InstanceId)), Tags: map[string]string{}}
	for _, t := range inst.Tags {
		d.Tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	if !hasTags(d.Tags, want) {
		return spi.Description{}, false
	}
	d.LogicalID = logicalID(d.Tags)
	if properties {
		d.Properties = describeProperties(inst)
	}
	return d, true
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
