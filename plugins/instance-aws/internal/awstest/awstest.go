// Package awstest holds test helpers shared by instance-aws's packages: one moto_server per
// test binary (instead of one per test), and SDK configurations pointed at test servers with
// retries fast enough for tests.
package awstest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// MotoEnv is the variable testenv.Moto reads for an already running moto_server.
const MotoEnv = "MOBYKIT_MOTO_ENDPOINT"

// Main runs the package's tests with one moto_server shared by all of them: when MotoEnv is
// unset and moto_server is installed, it starts one on a free loopback port and exports its
// URL in MotoEnv, so that every testenv.Moto(t) call returns it. Without moto_server the
// tests that need it skip (testenv.Moto says why).
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv(MotoEnv) != "" {
		return m.Run()
	}
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		if _, err := os.Stat("/root/.pyenv/shims/moto_server"); err == nil {
			bin = "/root/.pyenv/shims/moto_server"
		}
	}
	if bin == "" {
		return m.Run()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "awstest:", err)
		return 1
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "awstest: start moto_server:", err)
		return 1
	}
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "awstest: moto_server did not answer:", err)
			return 1
		}
		time.Sleep(100 * time.Millisecond)
	}
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
