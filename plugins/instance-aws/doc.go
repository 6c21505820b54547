// Package instanceaws is mobykit's EC2 instance plugin: it implements spi.Instance (InfraKit's
// Instance/0.6.1) on top of aws-sdk-go-v2, so that a group controller can roll a fleet of EC2
// machines onto a mobykit image exactly as it rolls local VMs.
//
// A group's Instance Properties keep the shape of InfraKit's AWS plugin and of EC2's own
// RunInstancesInput (field names as in the AWS API reference), plus mobykit's additions:
//
//	{
//	  "RunInstancesInput": {
//	    "ImageId": "ami-0123456789abcdef0",
//	    "InstanceType": "t3.small",
//	    "SubnetId": "subnet-0123abcd",
//	    "SecurityGroupIds": ["sg-0123abcd"],
//	    "KeyName": "ops",
//	    "IamInstanceProfile": {"Name": "etcd-node"},
//	    "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "VolumeType": "gp3"}}],
//	    "InstanceMarketOptions": {"MarketType": "spot"}
//	  },
//	  "Image": {"Digest": "sha256:..."},
//	  "Tags": {"team": "storage"}
//	}
//
// Provision launches one instance with the spec's Init as user data, the spec's tags plus Tags
// plus a Name tag, and a quorum member's logical ID as its private IP address.
// DescribeInstances filters by tag on the server (tag:K filters), pages through every result
// and never reports terminated or shutting-down instances. Destroy terminates (idempotently),
// Label creates tags, Validate checks the Properties offline and names the faulty field.
//
// Region, profile, credentials and endpoint come from the SDK's standard chain (environment,
// shared config, IMDS) overridden by Options (the CLI's flags); throttling and transient errors
// are retried with the SDK's standard retryer and backoff. Neither credentials nor user data
// are ever logged.
//
// The image is RunInstancesInput.ImageId, an Image reference (the digest tag `mobykit aws
// import` sets, or a name), or "moby": the disk image flavor-moby built, which the plugin
// imports as an AMI once per digest, in the background, with the sub-package ami.
package instanceaws
