// Package awstest holds test helpers shared by instance-aws's packages: one moto_server per
// test binary (instead of one per test), and SDK configurations pointed at test servers with
// retries fast enough for tests.
package awstest

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/mobykit/mobykit/internal/testenv"
)

// MotoEnv is the variable testenv.Moto reads for an already running moto_server.
const MotoEnv = testenv.MotoEnv

// Main runs the package's tests with one moto_server shared by all of them: when MotoEnv is
// unset and moto_server is installed, it starts one on a free loopback port and exports its
// URL in MotoEnv, so that every testenv.Moto(t) call returns it. Without moto_server the
// tests that need it skip (testenv.Moto says why).
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv(MotoEnv) != "" || testenv.MotoBinary() == "" {
		return m.Run()
	}
	url, stop, err := testenv.StartMoto()
	if err != nil {
		fmt.Fprintln(os.Stderr, "awstest:", err)
		return 1
	}
	defer stop()
	os.Setenv(MotoEnv, url)
	return m.Run()
}

// Config returns an SDK configuration for endpoint with static test credentials, region
// us-east-1 and retries with millisecond backoff.
func Config(t testing.TB, endpoint string) aws.Config {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(context.Background(),
		config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("testing", "testing", "")),
		config.WithBaseEndpoint(endpoint),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 5
				o.MaxBackoff = 10 * time.Millisecond
				o.Backoff = retry.NewExponentialJitterBackoff(10 * time.Millisecond)
			})
		}),
	)
	if err != nil {
		t.Fatalf("awstest: %v", err)
	}
	return cfg
}
