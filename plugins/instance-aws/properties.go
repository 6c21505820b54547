package instanceaws

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strings"

	"github.com/mobykit/mobykit/spi"
)

// Properties are a group's Instance Properties for this plugin. The shape is InfraKit's AWS
// plugin's ({"RunInstancesInput": ..., "Tags": ...}); field names inside RunInstancesInput are
// EC2's (see the RunInstances page of the Amazon EC2 API reference).
type Properties struct {
	// RunInstancesInput holds the launch parameters. Required.
	RunInstancesInput RunInstancesInput

	// Image selects the AMI by the image it was built from, instead of RunInstancesInput.ImageId.
	// It is resolved at each Provision with DescribeImages.
	Image *ImageRef `json:",omitempty"`

	// Moby is the path of a disk image built by flavor-moby (its Prepare sets "moby" in the
	// instance Properties; formats that write a raw disk). The plugin imports it as an AMI, once
	// per image digest and in the background (see ami), and launches from it. At most one of
	// RunInstancesInput.ImageId, Image and moby may be set; one of them is needed to Provision.
	Moby string `json:"moby,omitempty"`

	// Arch is the moby image's architecture in Go's names ("amd64", "arm64"; EC2's "x86_64"
	// is accepted too). A moby image is imported as an AMI of this architecture unless
	// Import.Architecture says otherwise, and the instance type must run it (Graviton types
	// such as t4g, m7g and c7g run arm64).
	Arch string `json:"arch,omitempty"`

	// Import sets how a moby image is registered. Default: uefi-preferred, the architecture of
	// arch (x86_64 when unset).
	Import *ImportOptions `json:",omitempty"`

	// Volumes are EBS volumes that belong to a member's logical ID, not to its instance:
	// found by tag or created, attached after launch, re-attached to the member's
	// replacement, never deleted by the plugin. Members without a logical ID get none.
	Volumes []Volume `json:",omitempty"`

	// Tags are extra tags put on each instance (and its volumes). The spec's own tags (the group
	// controller's) win over these on a key collision. Keys must not start with "aws:".
	Tags map[string]string `json:",omitempty"`
}

// ImportOptions are the AMI attributes of an imported moby image.
type ImportOptions struct {
	// BootMode is "uefi", "legacy-bios" or "uefi-preferred" (default).
	BootMode string `json:",omitempty"`
	// Architecture is "x86_64" (default) or "arm64".
	Architecture string `json:",omitempty"`
}

// ImageRef names an AMI indirectly. Owners defaults to ["self"].
type ImageRef struct {
	// Digest is the digest of the disk image the AMI was imported from (the tag that
	// `mobykit aws import` puts on it), e.g. "sha256:4f1c...".
	Digest string `json:",omitempty"`
	// Name is the AMI's name; when several AMIs match, the newest is used.
	Name string `json:",omitempty"`
	// Owners restricts the search to these account IDs or aliases ("self", "amazon").
	Owners []string `json:",omitempty"`
}

// RunInstancesInput is the subset of EC2's RunInstancesInput that the plugin passes through.
// MinCount, MaxCount, UserData, PrivateIpAddress, TagSpecifications and ClientToken are set by
// the plugin and are rejected here.
type RunInstancesInput struct {
	// ImageId is the AMI to launch ("ami-" + hex). One of ImageId, Properties.Image and
	// Properties.moby is needed.
	ImageId string `json:",omitempty"`
	// InstanceType is the instance type, e.g. "t3.small". Required (EC2's own default,
	// m1.small, is a previous-generation type).
	InstanceType string `json:",omitempty"`
	// SubnetId is the subnet to launch in ("subnet-" + hex). Required when a group allocates
	// logical IDs that are IP addresses: they must lie in this subnet.
	SubnetId string `json:",omitempty"`
	// SecurityGroupIds are security group IDs ("sg-" + hex).
	SecurityGroupIds []string `json:",omitempty"`
	// KeyName is the EC2 key pair's name for SSH.
	KeyName string `json:",omitempty"`
	// IamInstanceProfile is the instance profile, by Arn or Name (not both).
	IamInstanceProfile *IamInstanceProfile `json:",omitempty"`
	// BlockDeviceMappings override or add volumes.
	BlockDeviceMappings []BlockDeviceMapping `json:",omitempty"`
	// InstanceMarketOptions asks for a spot instance; absent means on-demand.
	InstanceMarketOptions *InstanceMarketOptions `json:",omitempty"`
	// Placement pins the availability zone, tenancy or placement group.
	Placement *Placement `json:",omitempty"`
	// EbsOptimized requests EBS-optimized I/O. Default false (EC2 enables it anyway on types
	// where it is free).
	EbsOptimized bool `json:",omitempty"`
	// MetadataOptions configures the instance metadata service (IMDS).
	MetadataOptions *MetadataOptions `json:",omitempty"`
	// InstanceInitiatedShutdownBehavior is "stop" (EC2's default) or "terminate". Phoenix
	// fleets usually want "terminate".
	InstanceInitiatedShutdownBehavior string `json:",omitempty"`
}

// IamInstanceProfile is EC2's IamInstanceProfileSpecification.
type IamInstanceProfile struct {
	Arn  string `json:",omitempty"`
	Name string `json:",omitempty"`
}

// BlockDeviceMapping is EC2's BlockDeviceMapping (EBS volumes or instance store).
type BlockDeviceMapping struct {
	// DeviceName is the device, e.g. "/dev/xvda" or "/dev/sdf". Required.
	DeviceName string
	// Ebs describes an EBS volume. Exactly one of Ebs, VirtualName and NoDevice.
	Ebs *EbsBlockDevice `json:",omitempty"`
	// VirtualName is an instance store volume, "ephemeral0".."ephemeral23".
	VirtualName string `json:",omitempty"`
	// NoDevice suppresses the AMI's mapping for DeviceName.
	NoDevice bool `json:",omitempty"`
}

// EbsBlockDevice is EC2's EbsBlockDevice.
type EbsBlockDevice struct {
	// VolumeSize in GiB; default the snapshot's size.
	VolumeSize int32 `json:",omitempty"`
	// VolumeType: gp2, gp3 (default, set by EC2 for most AMIs), io1, io2, st1, sc1, standard.
	VolumeType string `json:",omitempty"`
	// Iops for io1/io2/gp3.
	Iops int32 `json:",omitempty"`
	// Throughput in MiB/s, gp3 only.
	Throughput int32 `json:",omitempty"`
	// DeleteOnTermination; nil means true (the volume dies with the instance, phoenix style).
	DeleteOnTermination *bool `json:",omitempty"`
	// Encrypted, with KmsKeyId or the account's default key.
	Encrypted bool   `json:",omitempty"`
	KmsKeyId  string `json:",omitempty"`
	// SnapshotId to create the volume from.
	SnapshotId string `json:",omitempty"`
}

// InstanceMarketOptions is EC2's InstanceMarketOptionsRequest.
type InstanceMarketOptions struct {
	// MarketType is "spot" (the only market RunInstances accepts here).
	MarketType  string
	SpotOptions *SpotOptions `json:",omitempty"`
}

// SpotOptions is EC2's SpotMarketOptions.
type SpotOptions struct {
	// MaxPrice in USD per hour; empty means the on-demand price.
	MaxPrice string `json:",omitempty"`
	// SpotInstanceType is "one-time" (default) or "persistent".
	SpotInstanceType string `json:",omitempty"`
	// InstanceInterruptionBehavior is "terminate" (default), "stop" or "hibernate".
	InstanceInterruptionBehavior string `json:",omitempty"`
}

// Placement is EC2's Placement (the subset a fleet needs).
type Placement struct {
	AvailabilityZone string `json:",omitempty"`
	GroupName        string `json:",omitempty"`
	Tenancy          string `json:",omitempty"`
}

// MetadataOptions is EC2's InstanceMetadataOptionsRequest.
type MetadataOptions struct {
	// HttpTokens is "required" (IMDSv2 only) or "optional".
	HttpTokens string `json:",omitempty"`
	// HttpPutResponseHopLimit is 1..64.
	HttpPutResponseHopLimit int32 `json:",omitempty"`
	// HttpEndpoint is "enabled" or "disabled".
	HttpEndpoint string `json:",omitempty"`
}

// Limits EC2 imposes (Amazon EC2 API reference, RunInstances and CreateTags).
const (
	maxUserData   = 16 * 1024 // raw bytes, before base64
	maxTags       = 50        // per resource
	maxTagKeyLen  = 128
	maxTagValLen  = 256
	reservedNTags = 4 // infrakit.group, infrakit.config.hash, infrakit.logical_id, Name
)

var (
	reAMI          = regexp.MustCompile(`^ami-[0-9a-f]{8,17}$`)
	reSubnet       = regexp.MustCompile(`^subnet-[0-9a-f]{8,17}$`)
	reSG           = regexp.MustCompile(`^sg-[0-9a-f]{8,17}$`)
	reSnap         = regexp.MustCompile(`^snap-[0-9a-f]{8,17}$`)
	reInstanceType = regexp.MustCompile(`^[a-z][a-z0-9-]*\.[a-z0-9-]+$`)
	reDevice       = regexp.MustCompile(`^/dev/(sd|xvd)[a-z]{1,2}[0-9]*$|^/dev/nvme[0-9]+n[0-9]+$|^(sd|xvd)[a-z]{1,2}$`)
	reEphemeral    = regexp.MustCompile(`^ephemeral([0-9]|1[0-9]|2[0-3])$`)
	reDigest       = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	rePrice        = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)
	reIAMArn       = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:instance-profile/.+$`)
)

// FieldError is a Properties validation error naming the field, e.g.
// "RunInstancesInput.SubnetId".
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// ParseProperties decodes and validates a group's Instance Properties. Unknown fields are
// rejected (a misspelt field would otherwise be silently ignored). All problems found are
// returned, joined.
func ParseProperties(raw spi.Any) (*Properties, error) {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil, &FieldError{Field: "Properties", Msg: "missing (RunInstancesInput with InstanceType is required)"}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var p Properties
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("instance-aws Properties: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("instance-aws Properties: trailing data after the JSON object")
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Validate checks p without calling AWS. The returned error joins one *FieldError per problem.
func (p *Properties) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	r := &p.RunInstancesInput
	const ri = "RunInstancesInput."
	// No image source is fine here: a group whose flavor is flavor-moby gets "moby" from the
	// flavor's Prepare, after Validate. Provision says so when none arrived.
	sources := 0
	for _, set := range []bool{r.ImageId != "", p.Image != nil, p.Moby != ""} {
		if set {
			sources++
		}
	}
	if sources > 1 {
		bad("Image", "set only one of RunInstancesInput.ImageId, Image and moby")
	}
	if r.ImageId != "" && !reAMI.MatchString(r.ImageId) {
		bad(ri+"ImageId", "%q is not an AMI ID (ami- followed by 8 or 17 hex digits)", r.ImageId)
	}
	if im := p.Import; im != nil {
		switch im.BootMode {
		case "", "uefi", "legacy-bios", "uefi-preferred":
		default:
			bad("Import.BootMode", "%q: want \"uefi\", \"legacy-bios\" or \"uefi-preferred\"", im.BootMode)
		}
		switch im.Architecture {
		case "", "x86_64", "arm64":
		default:
			bad("Import.Architecture", "%q: want \"x86_64\" or \"arm64\"", im.Architecture)
		}
	}
	if p.Arch != "" {
		if a, ok := ec2Arch(p.Arch); !ok {
			bad("arch", "%q: want \"amd64\" or \"arm64\"", p.Arch)
		} else if p.Import != nil && p.Import.Architecture != "" && p.Import.Architecture != a {
			bad("Import.Architecture", "%q contradicts the image's arch %q", p.Import.Architecture, p.Arch)
		}
	}
	if p.Moby != "" && reInstanceType.MatchString(r.InstanceType) {
		if err := checkArch(r.InstanceType, p.importArch(), p.Moby); err != nil {
			bad(ri+"InstanceType", "%v", err)
		}
	}
	validateVolumes(p, bad)
	if im := p.Image; im != nil {
		if im.Digest == "" && im.Name == "" {
			bad("Image", "set Digest or Name")
		}
		if im.Digest != "" && !reDigest.MatchString(im.Digest) {
			bad("Image.Digest", "%q is not a sha256 digest (sha256: followed by 64 hex digits)", im.Digest)
		}
	}
	if r.InstanceType == "" {
		bad(ri+"InstanceType", "required, e.g. \"t3.small\"")
	} else if !reInstanceType.MatchString(r.InstanceType) {
		bad(ri+"InstanceType", "%q is not an instance type (family.size, e.g. \"t3.small\")", r.InstanceType)
	}
	if r.SubnetId != "" && !reSubnet.MatchString(r.SubnetId) {
		bad(ri+"SubnetId", "%q is not a subnet ID (subnet- followed by hex digits)", r.SubnetId)
	}
	for i, sg := range r.SecurityGroupIds {
		if !reSG.MatchString(sg) {
			bad(fmt.Sprintf("%sSecurityGroupIds[%d]", ri, i), "%q is not a security group ID (sg- followed by hex digits; names are not accepted)", sg)
		}
	}
	if ip := r.IamInstanceProfile; ip != nil {
		switch {
		case ip.Arn == "" && ip.Name == "":
			bad(ri+"IamInstanceProfile", "set Arn or Name")
		case ip.Arn != "" && ip.Name != "":
			bad(ri+"IamInstanceProfile", "set Arn or Name, not both")
		case ip.Arn != "" && !reIAMArn.MatchString(ip.Arn):
			bad(ri+"IamInstanceProfile.Arn", "%q is not an instance profile ARN", ip.Arn)
		}
	}
	devices := map[string]bool{}
	for i, b := range r.BlockDeviceMappings {
		f := fmt.Sprintf("%sBlockDeviceMappings[%d]", ri, i)
		if b.DeviceName == "" {
			bad(f+".DeviceName", "required, e.g. \"/dev/xvda\"")
		} else if !reDevice.MatchString(b.DeviceName) {
			bad(f+".DeviceName", "%q is not a device name (/dev/sdX or /dev/xvdX)", b.DeviceName)
		} else if devices[b.DeviceName] {
			bad(f+".DeviceName", "%q is mapped twice", b.DeviceName)
		}
		devices[b.DeviceName] = true
		n := 0
		if b.Ebs != nil {
			n++
		}
		if b.VirtualName != "" {
			n++
			if !reEphemeral.MatchString(b.VirtualName) {
				bad(f+".VirtualName", "%q is not an instance store name (ephemeral0..ephemeral23)", b.VirtualName)
			}
		}
		if b.NoDevice {
			n++
		}
		if n != 1 {
			bad(f, "set exactly one of Ebs, VirtualName and NoDevice")
		}
		if e := b.Ebs; e != nil {
			validateEbs(f+".Ebs", e, bad)
		}
	}
	if m := r.InstanceMarketOptions; m != nil {
		if m.MarketType != "spot" {
			bad(ri+"InstanceMarketOptions.MarketType", "%q: only \"spot\" is accepted (leave InstanceMarketOptions out for on-demand)", m.MarketType)
		}
		if s := m.SpotOptions; s != nil {
			if s.SpotInstanceType != "" && s.SpotInstanceType != "one-time" && s.SpotInstanceType != "persistent" {
				bad(ri+"InstanceMarketOptions.SpotOptions.SpotInstanceType", "%q: want \"one-time\" or \"persistent\"", s.SpotInstanceType)
			}
			switch s.InstanceInterruptionBehavior {
			case "", "terminate":
			case "stop", "hibernate":
				if s.SpotInstanceType != "persistent" {
					bad(ri+"InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior", "%q needs SpotInstanceType \"persistent\"", s.InstanceInterruptionBehavior)
				}
			default:
				bad(ri+"InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior", "%q: want \"terminate\", \"stop\" or \"hibernate\"", s.InstanceInterruptionBehavior)
			}
			if s.MaxPrice != "" && !rePrice.MatchString(s.MaxPrice) {
				bad(ri+"InstanceMarketOptions.SpotOptions.MaxPrice", "%q is not a price in USD per hour, e.g. \"0.02\"", s.MaxPrice)
			}
		}
	}
	if pl := r.Placement; pl != nil {
		switch pl.Tenancy {
		case "", "default", "dedicated", "host":
		default:
			bad(ri+"Placement.Tenancy", "%q: want \"default\", \"dedicated\" or \"host\"", pl.Tenancy)
		}
	}
	if m := r.MetadataOptions; m != nil {
		if m.HttpTokens != "" && m.HttpTokens != "required" && m.HttpTokens != "optional" {
			bad(ri+"MetadataOptions.HttpTokens", "%q: want \"required\" or \"optional\"", m.HttpTokens)
		}
		if m.HttpEndpoint != "" && m.HttpEndpoint != "enabled" && m.HttpEndpoint != "disabled" {
			bad(ri+"MetadataOptions.HttpEndpoint", "%q: want \"enabled\" or \"disabled\"", m.HttpEndpoint)
		}
		if m.HttpPutResponseHopLimit != 0 && (m.HttpPutResponseHopLimit < 1 || m.HttpPutResponseHopLimit > 64) {
			bad(ri+"MetadataOptions.HttpPutResponseHopLimit", "%d: want 1..64", m.HttpPutResponseHopLimit)
		}
	}
	switch r.InstanceInitiatedShutdownBehavior {
	case "", "stop", "terminate":
	default:
		bad(ri+"InstanceInitiatedShutdownBehavior", "%q: want \"stop\" or \"terminate\"", r.InstanceInitiatedShutdownBehavior)
	}
	if len(p.Tags) > maxTags-reservedNTags {
		bad("Tags", "%d tags: at most %d (EC2 allows %d per resource and the plugin needs %d)", len(p.Tags), maxTags-reservedNTags, maxTags, reservedNTags)
	}
	for k, v := range p.Tags {
		if err := checkTag(k, v); err != nil {
			bad(fmt.Sprintf("Tags[%q]", k), "%v", err)
		}
	}
	return errors.Join(errs...)
}

func validateEbs(f string, e *EbsBlockDevice, bad func(string, string, ...any)) {
	switch e.VolumeType {
	case "", "gp2", "gp3", "io1", "io2", "st1", "sc1", "standard":
	default:
		bad(f+".VolumeType", "%q: want gp2, gp3, io1, io2, st1, sc1 or standard", e.VolumeType)
	}
	if e.VolumeSize < 0 || e.VolumeSize > 65536 {
		bad(f+".VolumeSize", "%d GiB: want 1..65536", e.VolumeSize)
	}
	if e.Iops != 0 && e.VolumeType != "io1" && e.VolumeType != "io2" && e.VolumeType != "gp3" {
		bad(f+".Iops", "only io1, io2 and gp3 volumes take Iops")
	}
	if (e.VolumeType == "io1" || e.VolumeType == "io2") && e.Iops == 0 {
		bad(f+".Iops", "required for %s volumes", e.VolumeType)
	}
	if e.Throughput != 0 && e.VolumeType != "gp3" {
		bad(f+".Throughput", "only gp3 volumes take Throughput")
	}
	if e.KmsKeyId != "" && !e.Encrypted {
		bad(f+".KmsKeyId", "set Encrypted too")
	}
	if e.SnapshotId != "" && !reSnap.MatchString(e.SnapshotId) {
		bad(f+".SnapshotId", "%q is not a snapshot ID (snap- followed by hex digits)", e.SnapshotId)
	}
}

// checkTag applies EC2's tag rules (CreateTags).
func checkTag(k, v string) error {
	switch {
	case k == "":
		return errors.New("empty tag key")
	case strings.HasPrefix(strings.ToLower(k), "aws:"):
		return errors.New("tag keys starting with \"aws:\" are reserved by AWS")
	case len([]rune(k)) > maxTagKeyLen:
		return fmt.Errorf("tag key longer than %d characters", maxTagKeyLen)
	case len([]rune(v)) > maxTagValLen:
		return fmt.Errorf("tag value longer than %d characters", maxTagValLen)
	}
	return nil
}

// privateIP returns the logical ID as an IP address when it is one.
func privateIP(id *spi.LogicalID) (netip.Addr, bool) {
	if id == nil {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(string(*id))
	if err != nil || !a.Is4() {
		return netip.Addr{}, false
	}
	return a, true
}
