package instanceaws

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"

	"github.com/mobykit/mobykit/plugins/instance-aws/ami"
	"github.com/mobykit/mobykit/spi"
)

// NameTag is EC2's display-name tag. Provision sets it to "<group>-<logical ID>" (or the group
// ID alone) unless the spec or Properties.Tags set it.
const NameTag = "Name"

// Plugin is the EC2 instance plugin. It is safe for concurrent use.
type Plugin struct {
	ec2  *ec2.Client
	opts Options
	log  *slog.Logger
	now  func() time.Time

	importer   *ami.Importer
	importWait time.Duration // how long Provision waits for an import before saying "later"

	mu      sync.Mutex
	recent  *window
	imports map[string]*importJob
}

var _ spi.Instance = (*Plugin)(nil)

// New returns a plugin using cfg (see LoadConfig).
func New(cfg aws.Config, opts Options) *Plugin {
	opts = opts.withDefaults()
	return &Plugin{
		ec2:        ec2.NewFromConfig(cfg),
		opts:       opts,
		log:        opts.Logger.With("component", "instance-aws"),
		now:        time.Now,
		recent:     newWindow(),
		imports:    map[string]*importJob{},
		importer:   ami.New(cfg, opts.Logger),
		importWait: 5 * time.Second,
	}
}

// Open loads the SDK configuration from the standard chain and opts and returns a plugin.
func Open(ctx context.Context, opts Options) (*Plugin, error) {
	cfg, err := LoadConfig(ctx, opts)
	if err != nil {
		return nil, err
	}
	return New(cfg, opts), nil
}

// Validate checks a group's Instance Properties without calling AWS.
func (p *Plugin) Validate(_ context.Context, properties spi.Any) error {
	_, err := ParseProperties(properties)
	return err
}

// apiCode returns the AWS error code of err ("" when err is not an API error).
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func randomToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
