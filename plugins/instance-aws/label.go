package instanceaws

import (
	"context"
	"fmt"
	"maps"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/mobykit/mobykit/plugins/instance-aws/ami"
	"github.com/mobykit/mobykit/spi"
)

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
	p.recent.retag(instance, func(tags map[string]string) { maps.Copy(tags, labels) })
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
	p.recent.retag(instance, func(tags map[string]string) {
		for _, k := range keys {
			delete(tags, k)
		}
	})
	return nil
}
