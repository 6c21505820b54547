package testenv

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// CacheDir is where fetched test inputs (the kernel) are kept between runs:
// $MOBYKIT_TEST_CACHE, else $XDG_CACHE_HOME/mobykit-test, else ~/.cache/mobykit-test.
func CacheDir() string {
	if d := os.Getenv("MOBYKIT_TEST_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "mobykit-test")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "mobykit-test")
	}
	return filepath.Join(home, ".cache", "mobykit-test")
}

// RequireTool skips the test when the named executable is not on PATH.
func RequireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (apt-get install %s); skipping", name, pkg)
	}
	return p
}

// RequireFile skips the test when the file at path, installed by Debian package pkg, is absent.
func RequireFile(t testing.TB, path, pkg string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Skipf("%s missing (apt-get install %s); skipping", path, pkg)
	}
}

// RequireQEMU skips the test when qemu-system-x86_64 is absent and returns its path. It also
// holds a shared lock on the machine's VMs until the test ends (see ExclusiveVMs), so that a
// test that needs the machine to itself waits for the VM tests of other packages running in
// parallel, and they wait for it.
func RequireQEMU(t testing.TB) string {
	t.Helper()
	p := RequireTool(t, "qemu-system-x86_64", "qemu-system-x86")
	if !exclusive.Load() {
		t.Cleanup(flockVMs(t, syscall.LOCK_SH))
	}
	return p
}

// exclusive is set while this process holds the VMs' lock exclusively.
var exclusive atomic.Bool

// ExclusiveVMs gives the test the machine's VMs to itself until it ends: it waits until no
// other test binary boots VMs (they hold the lock shared through RequireQEMU) and keeps them
// from starting. For tests whose checks depend on the guests getting the CPU they ask for: a
// 3-member etcd quorum under TCG loses its leader when other packages' VMs take the 2 cores.
// Call it before RequireQEMU.
func ExclusiveVMs(t testing.TB) {
	t.Helper()
	unlock := flockVMs(t, syscall.LOCK_EX)
	exclusive.Store(true)
	t.Cleanup(func() { exclusive.Store(false); unlock() })
}

// flockVMs takes the VMs' lock (CacheDir()/vms.lock) in mode how.
func flockVMs(t testing.TB, how int) func() {
	t.Helper()
	path := filepath.Join(CacheDir(), "vms.lock")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("testenv: open lock %s: %v", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		t.Fatalf("testenv: lock %s: %v", path, err)
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }
}

// lock takes an exclusive flock on path, so that test binaries of several packages running
// in parallel fetch a shared input once.
func lock(t testing.TB, path string) func() {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("testenv: open lock %s: %v", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("testenv: lock %s: %v", path, err)
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }
}

// KernelPackage resolves Debian's cloud kernel meta-package to the versioned image package.
func KernelPackage() (string, error) {
	out, err := exec.Command("apt-cache", "depends", "linux-image-cloud-amd64").Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends linux-image-cloud-amd64: %w (run apt-get update first)", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if p, ok := strings.CutPrefix(line, "Depends: "); ok && strings.HasPrefix(p, "linux-image-") {
			return p, nil
		}
	}
	return "", fmt.Errorf("apt-cache: linux-image-cloud-amd64 names no linux-image package (run apt-get update first)")
}

// KernelDir returns a folder holding Debian's cloud kernel unpacked (boot/vmlinuz-*,
// lib/modules/*), fetching it with apt-get download on first use. $MOBYKIT_TEST_KERNEL_DIR
// overrides the location (it must already hold an unpacked kernel package).
func KernelDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("MOBYKIT_TEST_KERNEL_DIR"); d != "" {
		return d
	}
	dir := filepath.Join(CacheDir(), "kernel")
	unlock := lock(t, dir+".lock")
	defer unlock()
	if m, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*")); len(m) > 0 {
		return dir
	}
	RequireTool(t, "apt-get", "apt")
	pkg, err := KernelPackage()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "kernel-fetch-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command("apt-get", "download", pkg)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: apt-get download %s: %v\n%s", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("testenv: apt-get download %s left %d .deb files", pkg, len(debs))
	}
	root := filepath.Join(tmp, "root")
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		t.Fatalf("testenv: dpkg-deb -x %s: %v\n%s", debs[0], err, out)
	}
	os.RemoveAll(dir)
	if err := os.Rename(root, dir); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return dir
}

// Kernel returns the path of Debian's cloud kernel image (vmlinuz), fetched on first use.
func Kernel(t testing.TB) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(KernelDir(t), "boot", "vmlinuz-*"))
	if len(m) == 0 {
		t.Fatalf("testenv: no boot/vmlinuz-* in %s", KernelDir(t))
	}
	return m[0]
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitHTTP polls url until it answers (any status) or the deadline passes.
func waitHTTP(url string, d time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(d)
	c := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("process exited before %s answered", url)
		default:
		}
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer within %s", url, d)
}

// startServer runs cmd until the test ends, waiting for url to answer.
func startServer(t testing.TB, name string, cmd *exec.Cmd, url string) {
	t.Helper()
	var logbuf bytes.Buffer
	cmd.Stdout = &logbuf
	cmd.Stderr = &logbuf
	cmd.SysProcAttr = serverProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	if err := waitHTTP(url, 30*time.Second, exited); err != nil {
		t.Fatalf("testenv: %s: %v\n%s", name, err, logbuf.String())
	}
}

// Registry returns $MOBYKIT_TEST_REGISTRY when set, else starts Debian's docker-registry on a free loopback port with its storage in a
// temporary folder, and returns its host:port. Plain HTTP: clients must treat it as insecure
// (go-containerregistry does so by itself for loopback addresses with name.Insecure).
func Registry(t testing.TB) string {
	t.Helper()
	if addr := os.Getenv("MOBYKIT_TEST_REGISTRY"); addr != "" {
		return addr // started by .ci/run; tests push to repositories named after themselves
	}
	bin := RequireTool(t, "docker-registry", "docker-registry")
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	startServer(t, "docker-registry", exec.Command(bin, "serve", cfgPath), "http://"+addr+"/v2/")
	return addr
}

// MotoEnv names the variable holding the URL of an already running moto_server.
const MotoEnv = "MOBYKIT_MOTO_ENDPOINT"

// MotoBinary returns the path of moto_server, or "" when it is not installed.
func MotoBinary() string {
	if bin, err := exec.LookPath("moto_server"); err == nil {
		return bin
	}
	if _, err := os.Stat("/root/.pyenv/shims/moto_server"); err == nil {
		return "/root/.pyenv/shims/moto_server" // pyenv's shims are not always on PATH
	}
	return ""
}

// StartMoto starts moto_server on a free loopback port and waits until it answers; stop ends
// it. For a TestMain that shares one emulator between all of a package's tests.
func StartMoto() (url string, stop func(), err error) {
	bin := MotoBinary()
	if bin == "" {
		return "", nil, fmt.Errorf("moto_server not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	var logbuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logbuf, &logbuf
	cmd.SysProcAttr = serverProcAttr()
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start moto_server: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop = func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}
	url = fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := waitHTTP(url+"/moto-api/", 30*time.Second, exited); err != nil {
		stop()
		return "", nil, fmt.Errorf("moto_server: %w\n%s", err, logbuf.String())
	}
	return url, stop, nil
}

// Moto returns the endpoint URL of an AWS API emulator: $MOBYKIT_MOTO_ENDPOINT when set (a
// moto_server that .ci/run or a TestMain started), else a moto_server started for this test.
// It also sets fake credentials and a region in the test's environment.
func Moto(t *testing.T) string {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	if ep := os.Getenv(MotoEnv); ep != "" {
		return ep
	}
	if MotoBinary() == "" {
		t.Skip("moto_server (AWS API emulator, Python package moto[server]) not installed; skipping")
	}
	url, stop, err := StartMoto()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(stop)
	return url
}
