package instanceaws

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/mobykit/mobykit/spi"
)

// Destroy terminates the instance. An instance EC2 does not know (already gone) is not an
// error, so Destroy is idempotent.
func (p *Plugin) Destroy(ctx context.Context, instance spi.ID, c spi.Context) error {
	_, err := p.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{string(instance)}})
	if err != nil && apiCode(err) != "InvalidInstanceID.NotFound" && !p.terminated(ctx, instance) {
		return fmt.Errorf("instance-aws: destroy %s (%s): TerminateInstances: %w", instance, c.Reason, err)
	}
	p.recent.destroy(instance, p.now())
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
			if i.State != nil && ended(i.State.Name) {
				return true
			}
		}
	}
	return false
}
