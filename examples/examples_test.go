package examples

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mobykit/mobykit/assembler"
	"github.com/mobykit/mobykit/internal/testenv"
	"github.com/mobykit/mobykit/vm/qemu"
)

// buildExample builds examples/NAME.yml with the images of buildImages.
func buildExample(t *testing.T, name string) string {
	t.Helper()
	cacheDir := buildImages(t)
	out := t.TempDir()
	if _, err := assembler.BuildFiles(context.Background(), []string{name + ".yml"}, assembler.Options{
		Name: name, OutputDir: out, CacheDir: cacheDir,
	}); err != nil {
		t.Fatal(err)
	}
	checkUnpackable(t, filepath.Join(out, name+"-initrd.img"))
	return filepath.Join(out, name)
}

// shutdown powers the VM off through ACPI and checks that it went cleanly.
func (v *vm) shutdown(t *testing.T, from int) {
	t.Helper()
	v.cancel()
	if _, _, err := v.con.expect(from, regexp.MustCompile(`mobykit init: power off now`), 60*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-v.exited:
		if v.err != nil && !strings.Contains(v.err.Error(), "context canceled") {
			t.Errorf("qemu: %v", v.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("QEMU still running 30s after the guest said it powers off")
	}
}

// TestMinimalBoots boots examples/minimal.yml: DHCP configures eth0 and the console shell
// answers a command.
func TestMinimalBoots(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	testenv.RequireQEMU(t)
	v := boot(t, buildExample(t, "minimal"))
	defer func() {
		if t.Failed() {
			t.Logf("console:\n%s", v.con)
		}
	}()
	at := 0
	for _, re := range []string{
		`mobykit init: init started`,
		`dhcpcd: eth0 bound to 10\.0\.2\.15/24 via 10\.0\.2\.2`,
		`mobykit init: onboot 001-dhcpcd done`,
		`mobykit init: service getty started`,
	} {
		i, _, err := v.con.expect(at, regexp.MustCompile(re), 90*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		at = i + 1
	}
	v.shutdown(t, at)
}

// TestSSHDLogin boots examples/sshd.yml with a freshly made key as ~/.ssh/id_ed25519.pub and
// logs in over a published port with OpenSSH's client.
func TestSSHDLogin(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	testenv.RequireQEMU(t)
	ssh := testenv.RequireTool(t, "ssh", "openssh-client")
	keygen := testenv.RequireTool(t, "ssh-keygen", "openssh-client")
	home := t.TempDir()
	key := filepath.Join(home, ".ssh", "id_ed25519")
	os.MkdirAll(filepath.Dir(key), 0o700)
	if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	t.Setenv("HOME", home) // sshd.yml takes ~/.ssh/id_ed25519.pub
	prefix := buildExample(t, "sshd")
	port := testenv.FreePort(t)
	fwd, err := qemu.ParseForward(fmt.Sprintf("127.0.0.1:%d:22", port))
	if err != nil {
		t.Fatal(err)
	}
	v := boot(t, prefix, fwd)
	defer func() {
		if t.Failed() {
			t.Logf("console:\n%s", v.con)
		}
	}()
	i, _, err := v.con.expect(0, regexp.MustCompile(`mobykit init: service sshd started`), 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err = exec.Command(ssh, "-i", key, "-p", fmt.Sprint(port),
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
			"-o", "ConnectTimeout=10", "root@127.0.0.1", "echo SSH-OK; cat /proc/1/comm").CombinedOutput()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	if err != nil || !strings.Contains(string(out), "SSH-OK") {
		t.Fatalf("ssh: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "init") {
		t.Errorf("the ssh session does not see the host's PID 1 (pid: host): %s", out)
	}
	v.shutdown(t, i+1)
}
