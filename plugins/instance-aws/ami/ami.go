package ami

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Tags put on imported AMIs and their snapshots.
const (
	// DigestTag carries the sha256 digest of the raw disk image ("sha256:<hex>"). An AMI with
	// this tag is reused instead of importing the same image again.
	DigestTag = "mobykit.image.digest"
	// NameTag carries the image name given to Import.
	NameTag = "mobykit.image.name"
)

// Method is how the disk image reaches EBS.
type Method string

const (
	// MethodEBS writes the snapshot block by block with the EBS direct API.
	MethodEBS Method = "ebs"
	// MethodS3 uploads the file to S3 and has EC2 import it (ImportSnapshot).
	MethodS3 Method = "s3"
)

// BootMode is the AMI's firmware: EC2's BootModeValues.
type BootMode string

const (
	BootUEFI          BootMode = "uefi"
	BootLegacyBIOS    BootMode = "legacy-bios"
	BootUEFIPreferred BootMode = "uefi-preferred"
)

// Input describes one import.
type Input struct {
	// Path is the raw disk image (MBR or GPT disk, not a partition). Required.
	Path string
	// Name is the AMI's name prefix; the AMI is named "<Name>-<first 12 hex of digest>" so that
	// names stay unique per account and region. Default: the file's base name without extension.
	Name string
	// Description of the AMI and snapshot.
	Description string
	// Digest is the image digest ("sha256:<hex>"); computed from the file when empty.
	Digest string
	// BootMode defaults to uefi-preferred (UEFI where the instance type supports it, else BIOS).
	BootMode BootMode
	// Architecture is "x86_64" (default) or "arm64".
	Architecture string
	// ENA marks the AMI as supporting the Elastic Network Adapter; nil means true (every
	// current instance type needs it, and Debian's cloud kernel has the driver).
	ENA *bool
	// RootDeviceName defaults to "/dev/xvda".
	RootDeviceName string
	// VolumeType of the root volume created from the snapshot; default "gp3".
	VolumeType string
	// Method defaults to MethodEBS.
	Method Method
	// Bucket and Key are the S3 location for MethodS3 (Key defaults to
	// "mobykit/<digest hex>.raw").
	Bucket string
	Key    string
	// RoleName is ImportSnapshot's service role; default "vmimport".
	RoleName string
	// Tags are extra tags for the AMI and the snapshot.
	Tags map[string]string
	// Progress, when set, is called with a phase ("digest", "upload", "snapshot", "register")
	// and the done and total units of that phase (bytes, or percent for "snapshot"). It may be
	// called from several goroutines at once.
	Progress func(phase string, done, total int64)
}

// Result is what Import did.
type Result struct {
	ImageID    string
	SnapshotID string // empty when Reused
	Digest     string
	Name       string
	// Reused is true when an AMI with the same digest already existed and nothing was imported.
	Reused bool
}

// Importer imports disk images; it is safe for concurrent use.
type Importer struct {
	ec2 *ec2.Client
	ebs *ebs.Client
	s3  *s3.Client
	log *slog.Logger

	// Parallel is how many blocks PutSnapshotBlock, or parts UploadPart, sends at once;
	// default 8.
	Parallel int
	// PartSize is the S3 multipart part size for MethodS3 (at least 5 MiB; default 64 MiB,
	// doubled as needed to stay within 10,000 parts). Smaller files take one PutObject.
	PartSize int64
	// PollInterval is the delay between two snapshot/import/image state checks; default 5s.
	PollInterval time.Duration
	// Timeout bounds the wait for the snapshot and the image; default 60 minutes.
	Timeout time.Duration
}

// New returns an Importer for cfg (see instanceaws.LoadConfig). When cfg has a BaseEndpoint
// (an emulator), S3 uses path-style addressing.
func New(cfg aws.Config, log *slog.Logger) *Importer {
	if log == nil {
		log = slog.Default()
	}
	return &Importer{
		ec2: ec2.NewFromConfig(cfg),
		ebs: ebs.NewFromConfig(cfg),
		s3: s3.NewFromConfig(cfg, func(o *s3.Options) {
			o.UsePathStyle = cfg.BaseEndpoint != nil
		}),
		log:          log.With("component", "ami"),
		Parallel:     8,
		PollInterval: 5 * time.Second,
		Timeout:      60 * time.Minute,
	}
}

// WithClients returns an Importer using the given clients (tests point each at its own server).
func WithClients(e2 *ec2.Client, eb *ebs.Client, s *s3.Client, log *slog.Logger) *Importer {
	if log == nil {
		log = slog.Default()
	}
	return &Importer{ec2: e2, ebs: eb, s3: s, log: log.With("component", "ami"),
		Parallel: 8, PollInterval: 5 * time.Second, Timeout: 60 * time.Minute}
}

var (
	reDigest    = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	reNameChars = regexp.MustCompile(`[^a-zA-Z0-9()\[\] ./'@_-]`)
)

// FileDigest returns "sha256:<hex>" of the file at path.
func FileDigest(path string, progress func(done, total int64)) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("digest %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("digest %s: %w", path, err)
	}
	h := sha256.New()
	var r io.Reader = f
	if progress != nil {
		r = &countingReader{r: f, total: st.Size(), fn: progress}
	}
	if _, err := io.Copy(h, r); err != nil {
		return "", fmt.Errorf("digest %s: %w", path, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

type countingReader struct {
	r     io.Reader
	done  int64
	total int64
	fn    func(done, total int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.done += int64(n)
	c.fn(c.done, c.total)
	return n, err
}

func (in *Input) defaults() error {
	if in.Path == "" {
		return errors.New("ami import: Path is required")
	}
	if in.Name == "" {
		in.Name = strings.TrimSuffix(filepath.Base(in.Path), filepath.Ext(in.Path))
	}
	// AMI names take letters, digits and ()[] ./-'@_, 3 to 128 characters (13 go to the digest).
	in.Name = reNameChars.ReplaceAllString(in.Name, "-")
	if len(in.Name) > 115 {
		in.Name = in.Name[:115]
	}
	if len(in.Name) < 2 {
		in.Name = "mobykit-" + in.Name
	}
	if in.BootMode == "" {
		in.BootMode = BootUEFIPreferred
	}
	switch in.BootMode {
	case BootUEFI, BootLegacyBIOS, BootUEFIPreferred:
	default:
		return fmt.Errorf("ami import %s: boot mode %q: want uefi, legacy-bios or uefi-preferred", in.Path, in.BootMode)
	}
	if in.Architecture == "" {
		in.Architecture = "x86_64"
	}
	if in.Architecture != "x86_64" && in.Architecture != "arm64" {
		return fmt.Errorf("ami import %s: architecture %q: want x86_64 or arm64", in.Path, in.Architecture)
	}
	if in.Architecture == "arm64" && in.BootMode == BootLegacyBIOS {
		return fmt.Errorf("ami import %s: arm64 AMIs boot with uefi only", in.Path)
	}
	if in.RootDeviceName == "" {
		in.RootDeviceName = "/dev/xvda"
	}
	if in.VolumeType == "" {
		in.VolumeType = "gp3"
	}
	if in.Method == "" {
		in.Method = MethodEBS
	}
	switch in.Method {
	case MethodEBS:
	case MethodS3:
		if in.Bucket == "" {
			return fmt.Errorf("ami import %s: method s3 needs a bucket", in.Path)
		}
	default:
		return fmt.Errorf("ami import %s: method %q: want ebs or s3", in.Path, in.Method)
	}
	if in.RoleName == "" {
		in.RoleName = "vmimport"
	}
	if in.Digest != "" && !reDigest.MatchString(in.Digest) {
		return fmt.Errorf("ami import %s: digest %q is not sha256:<64 hex>", in.Path, in.Digest)
	}
	return nil
}

func (in *Input) progress(phase string, done, total int64) {
	if in.Progress != nil {
		in.Progress(phase, done, total)
	}
}

// Import registers the disk image at in.Path as an AMI, or returns the AMI that already
// carries its digest.
func (im *Importer) Import(ctx context.Context, in Input) (*Result, error) {
	if err := in.defaults(); err != nil {
		return nil, err
	}
	st, err := os.Stat(in.Path)
	if err != nil {
		return nil, fmt.Errorf("ami import: %w", err)
	}
	if !st.Mode().IsRegular() || st.Size() == 0 {
		return nil, fmt.Errorf("ami import %s: not a non-empty regular file", in.Path)
	}
	if err := CheckDisk(in.Path); err != nil {
		return nil, fmt.Errorf("ami import: %w", err)
	}
	if in.Digest == "" {
		in.Digest, err = FileDigest(in.Path, func(d, t int64) { in.progress("digest", d, t) })
		if err != nil {
			return nil, fmt.Errorf("ami import: %w", err)
		}
	}
	hexd := strings.TrimPrefix(in.Digest, "sha256:")
	res := &Result{Digest: in.Digest, Name: in.Name + "-" + hexd[:12]}

	existing, err := im.FindByDigest(ctx, in.Digest)
	if err != nil {
		return nil, fmt.Errorf("ami import %s: %w", in.Path, err)
	}
	if existing != nil {
		res.ImageID = aws.ToString(existing.ImageId)
		res.Reused = true
		im.log.Info("reusing AMI with the same digest", "image", res.ImageID, "digest", in.Digest)
		return res, nil
	}

	tags := map[string]string{DigestTag: in.Digest, NameTag: in.Name}
	for k, v := range in.Tags {
		tags[k] = v
	}
	switch in.Method {
	case MethodS3:
		res.SnapshotID, err = im.importS3(ctx, &in, st.Size(), tags)
	default:
		res.SnapshotID, err = im.uploadEBS(ctx, &in, st.Size(), tags)
	}
	if err != nil {
		return nil, fmt.Errorf("ami import %s: %w", in.Path, err)
	}
	if err := im.waitSnapshot(ctx, &in, res.SnapshotID); err != nil {
		return nil, fmt.Errorf("ami import %s: %w", in.Path, err)
	}
	res.ImageID, err = im.register(ctx, &in, res, tags)
	if err != nil {
		return nil, fmt.Errorf("ami import %s: %w", in.Path, err)
	}
	im.log.Info("registered AMI", "image", res.ImageID, "snapshot", res.SnapshotID, "name", res.Name, "digest", in.Digest)
	return res, nil
}

// FindByDigest returns the newest pending or available AMI owned by this account whose
// DigestTag is digest, or nil.
func (im *Importer) FindByDigest(ctx context.Context, digest string) (*types.Image, error) {
	out, err := im.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{
		Owners: []string{"self"},
		Filters: []types.Filter{
			{Name: aws.String("tag:" + DigestTag), Values: []string{digest}},
			{Name: aws.String("state"), Values: []string{"pending", "available"}},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("DescribeImages (digest %s): %w", digest, err)
	}
	return Newest(out.Images), nil
}

// Newest returns the image with the latest CreationDate (nil for none). Ties go to the
// highest ImageId, so the choice is stable.
func Newest(images []types.Image) *types.Image {
	if len(images) == 0 {
		return nil
	}
	s := append([]types.Image(nil), images...)
	sort.Slice(s, func(i, j int) bool {
		ci, cj := aws.ToString(s[i].CreationDate), aws.ToString(s[j].CreationDate)
		if ci != cj {
			return ci > cj // ISO 8601 strings sort by time
		}
		return aws.ToString(s[i].ImageId) > aws.ToString(s[j].ImageId)
	})
	return &s[0]
}

// EC2Tags turns a tag map into EC2 tags, sorted by key so requests are stable.
func EC2Tags(tags map[string]string) []types.Tag {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]types.Tag, 0, len(keys))
	for _, k := range keys {
		out = append(out, types.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	return out
}

// waitSnapshot polls DescribeSnapshots until the snapshot completes.
func (im *Importer) waitSnapshot(ctx context.Context, in *Input, id string) error {
	ctx, cancel := context.WithTimeout(ctx, im.Timeout)
	defer cancel()
	for {
		out, err := im.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{id}})
		if err != nil {
			return fmt.Errorf("wait for snapshot %s: DescribeSnapshots: %w", id, err)
		}
		if len(out.Snapshots) == 1 {
			s := out.Snapshots[0]
			pct := parsePercent(aws.ToString(s.Progress))
			switch s.State {
			case types.SnapshotStateCompleted:
				in.progress("snapshot", 100, 100)
				return nil
			case types.SnapshotStateError:
				return fmt.Errorf("snapshot %s failed: %s", id, aws.ToString(s.StateMessage))
			}
			in.progress("snapshot", pct, 100)
		}
		if err := sleep(ctx, im.PollInterval); err != nil {
			return fmt.Errorf("wait for snapshot %s: %w", id, err)
		}
	}
}

func parsePercent(s string) int64 {
	var n int64
	fmt.Sscanf(strings.TrimSuffix(s, "%"), "%d", &n)
	return n
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// register calls RegisterImage for the snapshot, tags the image and the snapshot, and waits
// for the image to become available.
func (im *Importer) register(ctx context.Context, in *Input, res *Result, tags map[string]string) (string, error) {
	in.progress("register", 0, 1)
	ena := in.ENA == nil || *in.ENA
	out, err := im.ec2.RegisterImage(ctx, &ec2.RegisterImageInput{
		Name:               aws.String(res.Name),
		Description:        aws.String(describe(in)),
		Architecture:       types.ArchitectureValues(in.Architecture),
		BootMode:           types.BootModeValues(in.BootMode),
		EnaSupport:         aws.Bool(ena),
		RootDeviceName:     aws.String(in.RootDeviceName),
		VirtualizationType: aws.String("hvm"),
		ImdsSupport:        types.ImdsSupportValuesV20,
		BlockDeviceMappings: []types.BlockDeviceMapping{{
			DeviceName: aws.String(in.RootDeviceName),
			Ebs: &types.EbsBlockDevice{
				SnapshotId:          aws.String(res.SnapshotID),
				DeleteOnTermination: aws.Bool(true),
				VolumeType:          types.VolumeType(in.VolumeType),
			},
		}},
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeImage, Tags: EC2Tags(tags)}},
	})
	if err != nil {
		return "", fmt.Errorf("RegisterImage %s (snapshot %s): %w", res.Name, res.SnapshotID, err)
	}
	id := aws.ToString(out.ImageId)
	// Tag again with CreateTags: harmless where RegisterImage applied TagSpecifications, needed
	// where it did not (older regions' behaviour, emulators). The snapshot gets the digest too.
	if _, err := im.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id, res.SnapshotID}, Tags: EC2Tags(tags)}); err != nil {
		return "", fmt.Errorf("tag image %s: CreateTags: %w", id, err)
	}
	if err := im.waitImage(ctx, id); err != nil {
		return "", err
	}
	in.progress("register", 1, 1)
	return id, nil
}

func (im *Importer) waitImage(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, im.Timeout)
	defer cancel()
	for {
		out, err := im.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{id}})
		if err != nil {
			return fmt.Errorf("wait for image %s: DescribeImages: %w", id, err)
		}
		if len(out.Images) == 1 {
			switch out.Images[0].State {
			case types.ImageStateAvailable:
				return nil
			case types.ImageStateFailed, types.ImageStateError, types.ImageStateInvalid:
				reason := ""
				if out.Images[0].StateReason != nil {
					reason = aws.ToString(out.Images[0].StateReason.Message)
				}
				return fmt.Errorf("image %s is %s: %s", id, out.Images[0].State, reason)
			}
		}
		if err := sleep(ctx, im.PollInterval); err != nil {
			return fmt.Errorf("wait for image %s: %w", id, err)
		}
	}
}

// CheckDisk verifies that path starts like a bootable raw disk: an MBR boot signature (0x55
// 0xAA at byte 510), which GPT disks carry too in their protective MBR. An initramfs, a tar,
// a qcow2 or a bare filesystem fails, before anything is uploaded.
func CheckDisk(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var sector [512]byte
	if _, err := io.ReadFull(f, sector[:]); err != nil {
		return fmt.Errorf("%s: not a raw disk image (shorter than one sector)", path)
	}
	if sector[510] != 0x55 || sector[511] != 0xAA {
		if string(sector[:4]) == "QFI\xfb" {
			return fmt.Errorf("%s is a qcow2 image: convert it to raw (qemu-img convert -O raw)", path)
		}
		return fmt.Errorf("%s: not a raw disk image (no MBR or GPT boot signature at byte 510)", path)
	}
	return nil
}
