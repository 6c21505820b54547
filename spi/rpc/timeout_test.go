package rpc

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mobykit/mobykit/spi"
)

func TestClientTimeoutEnv(t *testing.T) {
	cases := []struct {
		env  string
		want time.Duration
	}{
		{"", 15 * time.Second},
		{"30s", 30 * time.Second},
		{"1m30s", 90 * time.Second},
		{"5", 5 * time.Second},
		{"0.5", 500 * time.Millisecond},
		{"nonsense", 15 * time.Second},
		{"-3s", 15 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.env, func(t *testing.T) {
			t.Setenv("INFRAKIT_CLIENT_TIMEOUT", c.env)
			if got := ClientTimeout(); got != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
		})
	}
}

type slowInstance struct{ *memInstance }

func (s slowInstance) Validate(ctx context.Context, _ spi.Any) error {
	select {
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
	}
	return nil
}

// TestClientTimeoutApplies: a call slower than INFRAKIT_CLIENT_TIMEOUT fails on the client, and
// the server sees the call's context cancelled.
func TestClientTimeoutApplies(t *testing.T) {
	t.Setenv("INFRAKIT_CLIENT_TIMEOUT", "200ms")
	sock := shortSocket(t, "slow")
	startServer(t, sock, Instance(slowInstance{newMem()}))
	c := NewInstanceClient(sock, "")
	if _, err := c.DescribeInstances(context.Background(), nil, false); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := c.Validate(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "Instance.Validate") || !strings.Contains(err.Error(), sock) {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("timeout took %s", d)
	}
}
