package instanceaws

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/mobykit/mobykit/plugins/instance-aws/ami"
)

// resolveImage finds the newest available AMI matching ref and returns its ID and architecture.
func (p *Plugin) resolveImage(ctx context.Context, ref *ImageRef) (id, arch string, err error) {
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
		return "", "", fmt.Errorf("DescribeImages (image %s): %w", ref, err)
	}
	img := ami.Newest(out.Images)
	if img == nil {
		return "", "", fmt.Errorf("no available AMI owned by %v matches image %s (run `mobykit aws import` first)", owners, ref)
	}
	return aws.ToString(img.ImageId), string(img.Architecture), nil
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
