package e2e

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mobykit/mobykit/assembler"
	"github.com/mobykit/mobykit/assembler/image"
	"github.com/mobykit/mobykit/internal/testenv"
	"github.com/mobykit/mobykit/metadata/fwcfg"
	"github.com/mobykit/mobykit/metadata/imds"
	"github.com/mobykit/mobykit/metadata/iso"
	"github.com/mobykit/mobykit/pkgbuild"
)

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestPipeline is the same check through the real product: the system images (../../images)
// and the agent's image are built with pkgbuild, testdata/metadata-e2e.yml is assembled into a
// kernel and initramfs, and that one image boots three times under QEMU, its onboot metadata
// container reading the userdata from a CD, from fw_cfg and from the local metadata server.
func TestPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("builds images and boots three VMs; skipped with -short")
	}
	testenv.RequireQEMU(t)
	testenv.RequireTool(t, "apt-get", "apt")
	testenv.RequireTool(t, "gcc", "gcc libc6-dev")

	cacheDir := filepath.Join(testenv.CacheDir(), "oci")
	cache, err := image.OpenCache(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	b := &pkgbuild.Builder{Cache: cache, WorkDir: filepath.Join(testenv.CacheDir(), "pkgbuild"), Log: slog.New(slog.NewTextHandler(logWriter{t}, nil))}
	recipes := []string{"../../images/kernel", "../../images/init", "../../images/runc", "../../images/dhcpcd", "testdata/metadata-image"}
	for _, dir := range recipes {
		r, err := pkgbuild.LoadRecipe(dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Build(context.Background(), r); err != nil {
			t.Fatalf("build %s: %v", dir, err)
		}
	}
	out := t.TempDir()
	if _, err := assembler.BuildFiles(context.Background(), []string{"testdata/metadata-e2e.yml"}, assembler.Options{
		Name: "metadata-e2e", OutputDir: out, CacheDir: cacheDir,
	}); err != nil {
		t.Fatal(err)
	}
	prefix := filepath.Join(out, "metadata-e2e")
	cmdline, _ := os.ReadFile(prefix + "-cmdline")

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Every boot has the same NIC: a restricted user network whose 169.254.169.254:80 is relayed
	// to relayTo. Without a record to serve, the relay target is a closed port.
	netArgs := func(t *testing.T) []string {
		netdev, err := imds.QEMUUserNetdev("n0", []string{self}, "restrict=on")
		if err != nil {
			t.Fatal(err)
		}
		return []string{"-netdev", netdev, "-device", "virtio-net-pci,netdev=n0"}
	}
	run := func(t *testing.T, extra []string, relayTo string) string {
		args := []string{
			"-nodefaults", "-no-user-config", "-machine", "pc,accel=tcg", "-m", "1024", "-smp", "1",
			"-display", "none", "-serial", "stdio", "-no-reboot",
			"-kernel", prefix + "-kernel", "-initrd", prefix + "-initrd.img", "-append", strings.TrimSpace(string(cmdline)),
		}
		args = append(append(args, netArgs(t)...), extra...)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
		var con syncBuf
		cmd.Stdout, cmd.Stderr = &con, &con
		cmd.Env = append(os.Environ(), relayEnv+"="+relayTo)
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		deadline := time.After(4 * time.Minute)
		for !strings.Contains(con.String(), "E2E-DONE") {
			select {
			case err := <-exited:
				t.Fatalf("qemu exited (%v) before E2E-DONE; console:\n%s", err, con.String())
			case <-deadline:
				t.Fatalf("no E2E-DONE within 4 minutes; console:\n%s", con.String())
			case <-time.After(200 * time.Millisecond):
			}
		}
		t.Logf("boot to E2E-DONE: %v", time.Since(start).Round(time.Millisecond))
		cancel()
		<-exited
		return con.String()
	}
	// Port 1 on loopback has no listener: the relay's connection is refused, and the agent's
	// AWS probe fails at once.
	closedPort := func() string { return "127.0.0.1:1" }

	t.Run("cdrom", func(t *testing.T) {
		cd := filepath.Join(t.TempDir(), "meta.iso")
		if err := iso.WriteFile(cd, iso.Metadata(userdata("pipe-cd", "pipeline cd"), "i-cd", ""), iso.Options{}); err != nil {
			t.Fatal(err)
		}
		c := run(t, []string{"-drive", "file=" + cd + ",format=raw,media=cdrom,readonly=on,if=ide,index=1"}, closedPort())
		check(t, c, map[string]string{"E2E-PROVIDER": "CDROM /dev/sr0", "E2E-MESSAGE": "pipeline cd", "E2E-HOSTNAME": "pipe-cd"})
	})
	t.Run("fw_cfg", func(t *testing.T) {
		_, args, err := fwcfg.WritePayload(t.TempDir(), userdata("pipe-fwcfg", "pipeline fw_cfg"))
		if err != nil {
			t.Fatal(err)
		}
		c := run(t, args, closedPort())
		check(t, c, map[string]string{"E2E-PROVIDER": "fw_cfg", "E2E-MESSAGE": "pipeline fw_cfg", "E2E-HOSTNAME": "pipe-fwcfg"})
	})
	t.Run("local metadata server", func(t *testing.T) {
		s := imds.New(imds.WithTokenRequired())
		defer s.Close()
		if err := s.Register(imds.Record{InstanceID: "i-pipeline", Hostname: "pipe-imds", UserData: userdata("", "pipeline imds")}); err != nil {
			t.Fatal(err)
		}
		addr, err := s.ListenVM("i-pipeline", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c := run(t, nil, addr.String())
		check(t, c, map[string]string{"E2E-PROVIDER": "AWS", "E2E-MESSAGE": "pipeline imds", "E2E-HOSTNAME": "pipe-imds"})
	})
}
