package launcher

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mobykit/mobykit/spi"
	"github.com/mobykit/mobykit/spi/discovery"
	"github.com/mobykit/mobykit/spi/rpc"
)

// TestStandaloneBinary builds cmd/plugin-flavor-vanilla, runs it on a socket as a user would,
// calls it, and stops it with SIGTERM; then loads the same binary through go-plugin.
func TestStandaloneBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	// go test puts its own GOROOT/bin first on PATH.
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not on PATH under go test: %v", err)
	}
	dir := testDir(t)
	bin := filepath.Join(filepath.Dir(dir), "plugin-flavor-vanilla")
	build := exec.Command(gobin, "build", "-o", bin, "../cmd/plugin-flavor-vanilla")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	cmd := exec.Command(bin, "--dir", dir, "--name", "van")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sock := filepath.Join(dir, "van")
	for i := 0; i < 500 && !rpc.Alive(sock); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	spec, err := rpc.NewFlavorClient(sock, "").Prepare(context.Background(), spi.Any(`{"Init":["a","b"]}`), spi.Spec{}, spi.Allocation{Size: 1}, spi.Index{})
	if err != nil || spec.Init != "a\nb" {
		t.Fatalf("prepare: %+v %v", spec, err)
	}
	if pid, err := discovery.ReadPID(dir, "van"); err != nil || pid != cmd.Process.Pid {
		t.Fatalf("pid file: %d %v", pid, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files left: %v", ents)
	}

	// The same binary as a go-plugin executable.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunExecutable(ctx, dir, "van2", []string{bin}) }()
	sock2 := filepath.Join(dir, "van2")
	for i := 0; i < 500 && !rpc.Alive(sock2); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if h, err := rpc.NewFlavorClient(sock2, "").Healthy(context.Background(), nil, spi.Description{ID: "x"}); err != nil || h != spi.Healthy {
		t.Fatalf("healthy via go-plugin: %v %v", h, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
