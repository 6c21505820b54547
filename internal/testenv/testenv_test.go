package testenv

import (
	"bufio"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestRegistryAnswers(t *testing.T) {
	addr := Registry(t)
	resp, err := http.Get("http://" + addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/ = %d, want 200", resp.StatusCode)
	}
}

func TestKernelFetched(t *testing.T) {
	k := Kernel(t)
	st, err := os.Stat(k)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() < 1<<20 {
		t.Fatalf("%s is only %d bytes", k, st.Size())
	}
}

func TestMotoAnswers(t *testing.T) {
	url := Moto(t)
	resp, err := http.Get(url + "/moto-api/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestExclusiveVMsWaitsForSharedHolders: a test binary holding the VMs' lock shared (a VM test
// in another package) keeps ExclusiveVMs waiting until it lets go, and RequireQEMU in the
// process that holds it exclusively does not deadlock on itself.
func TestExclusiveVMsWaitsForSharedHolders(t *testing.T) {
	t.Setenv("MOBYKIT_TEST_CACHE", t.TempDir())
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("flock (util-linux) not installed; skipping")
	}
	lock := filepath.Join(CacheDir(), "vms.lock")
	if err := os.WriteFile(lock, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// another process holds it shared, says so, and writes done just before letting go
	done := filepath.Join(t.TempDir(), "done")
	holder := exec.Command("flock", "--shared", lock, "sh", "-c", "echo locked; sleep 1; echo > "+done)
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer holder.Wait()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "locked\n" {
		t.Fatalf("holder: %q, %v", line, err)
	}
	t.Run("exclusive", func(t *testing.T) {
		ExclusiveVMs(t)
		if _, err := os.Stat(done); err != nil {
			t.Errorf("got the lock while another process held it shared: %v", err)
		}
		if _, err := exec.LookPath("qemu-system-x86_64"); err == nil {
			RequireQEMU(t) // must not wait for its own exclusive lock
		}
		if exclusive.Load() != true {
			t.Error("not marked exclusive")
		}
	})
	if exclusive.Load() {
		t.Error("still marked exclusive after the test ended")
	}
}
