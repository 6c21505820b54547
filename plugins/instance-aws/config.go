package instanceaws

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go/logging"
)

// Options choose the account, region and endpoint, and tune retries. Empty fields fall back to
// the SDK's standard chain: AWS_REGION / AWS_PROFILE / AWS_ENDPOINT_URL(_EC2) and the other
// environment variables, ~/.aws/config and ~/.aws/credentials, then IMDS or ECS credentials.
type Options struct {
	// Region overrides the SDK's region (AWS_REGION, the profile's region).
	Region string
	// Profile selects a named profile of the shared config files.
	Profile string
	// Endpoint overrides every service's endpoint URL, e.g. "http://127.0.0.1:5000" for a local
	// emulator (moto_server). Empty means the real AWS endpoints.
	Endpoint string
	// MaxAttempts bounds attempts per API call, first try included; default $AWS_MAX_ATTEMPTS,
	// else 8. Throttling
	// (RequestLimitExceeded, ...), 5xx and connection errors are retried with exponential
	// backoff and jitter.
	MaxAttempts int
	// MaxBackoff caps the delay between two attempts; default 5s, so that a plugin call stays
	// well inside InfraKit's 15 s client timeout for a couple of retries.
	MaxBackoff time.Duration
	// PageSize is DescribeInstances' MaxResults (5..1000); default 1000. Every page is read
	// whatever the size; small sizes are for tests.
	PageSize int32
	// VolumePoll is how often a persistent volume waiting to be attached (Properties.Volumes)
	// is checked; default 5s.
	VolumePoll time.Duration
	// Logger receives the plugin's and the SDK's (retries only) debug logs; default
	// slog.Default(). Request and response bodies are never logged: they carry user data.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 8
		// The SDK's own variable, which the custom retryer would otherwise hide.
		if n, err := strconv.Atoi(os.Getenv("AWS_MAX_ATTEMPTS")); err == nil && n > 0 {
			o.MaxAttempts = n
		}
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.VolumePoll <= 0 {
		o.VolumePoll = 5 * time.Second
	}
	if o.PageSize == 0 {
		o.PageSize = 1000
	}
	if o.PageSize < 5 {
		o.PageSize = 5
	}
	if o.PageSize > 1000 {
		o.PageSize = 1000
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// LoadConfig builds the SDK configuration from the standard chain and o. The ami package and
// the CLI use it too, so that every mobykit AWS client agrees on region, endpoint and retries.
func LoadConfig(ctx context.Context, o Options) (aws.Config, error) {
	o = o.withDefaults()
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) {
				so.MaxAttempts = o.MaxAttempts
				so.MaxBackoff = o.MaxBackoff
				so.Backoff = retry.NewExponentialJitterBackoff(o.MaxBackoff)
			})
		}),
		config.WithLogger(slogLogger{o.Logger}),
		// Retries only: request/response logging would print user data and signed headers.
		config.WithClientLogMode(aws.LogRetries),
	}
	if o.Region != "" {
		opts = append(opts, config.WithRegion(o.Region))
	}
	if o.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(o.Profile))
	}
	if o.Endpoint != "" {
		opts = append(opts, config.WithBaseEndpoint(o.Endpoint))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("instance-aws: load AWS config (profile %q): %w", o.Profile, err)
	}
	if cfg.Region == "" {
		return aws.Config{}, fmt.Errorf("instance-aws: no AWS region: set --region, AWS_REGION or a profile's region")
	}
	return cfg, nil
}

// slogLogger adapts slog to smithy's logger. Only retry notices reach it (LogRetries).
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Logf(c logging.Classification, format string, v ...any) {
	level := slog.LevelDebug
	if c == logging.Warn {
		level = slog.LevelWarn
	}
	s.l.Log(context.Background(), level, fmt.Sprintf(format, v...), "component", "aws-sdk")
}
