package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mobykit/mobykit/internal/testenv"
	"github.com/mobykit/mobykit/vm/vmtest"
)

// mainEnv makes the test binary run mobykit's main with its arguments, so that the tests
// drive the real command (flags, signal handling, exit status) without building a binary.
const mainEnv = "MOBYKIT_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) != "" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// powerButtonInit waits for the ACPI power button (button and evdev modules, the device the
// kernel names "Power Button"), then runs its "onshutdown" step and powers off, as mobykit's
// init does. With ignore set it never looks at the button. It opens the device before it says
// it is ready: evdev keeps events only for readers that have it open, so a press between
// "ready" and the open (a slow exec under TCG) would be lost.
const powerButtonInit = `
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in %s; do insmod $m; done
ev=
for n in /sys/class/input/event*/device/name; do
	[ "$(cat $n)" = "Power Button" ] && ev=$(basename $(dirname $(dirname $n))) && break
done
[ -n "$ev" ] || { echo "RUNTEST-NO-POWER-BUTTON"; poweroff -f; }
exec 3</dev/input/$ev
echo RUNTEST-READY
if [ -n "%s" ]; then sleep 3600; fi
head -c 1 <&3 >/dev/null
echo RUNTEST-ONSHUTDOWN
poweroff -f
`

// bootUntilReady starts `mobykit run qemu` on a busybox guest and returns once the guest
// watches its power button.
func bootUntilReady(t *testing.T, ignoreACPI bool, grace string) (cmd *exec.Cmd, console, stderr *syncBuf, exited chan error) {
	t.Helper()
	testenv.RequireQEMU(t)
	kernel := testenv.Kernel(t)
	dir := t.TempDir()
	prefix := filepath.Join(dir, "guest")
	ird := vmtest.NewBusybox(t, "")
	mods := ird.Modules(t, testenv.KernelDir(t), "evdev", "button")
	ignore := ""
	if ignoreACPI {
		ignore = "ignore"
	}
	ird.Add("init", 0o755, "#!/bin/busybox sh\n/bin/busybox --install -s /bin\nexport PATH=/bin\n"+
		fmt.Sprintf(powerButtonInit, strings.Join(mods, " "), ignore))
	ird.Write(t, prefix+"-initrd.img")
	if err := os.Symlink(kernel, prefix+"-kernel"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(prefix+"-cmdline", []byte("console=ttyS0 quiet panic=-1\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	console, stderr = &syncBuf{}, &syncBuf{}
	cmd = exec.Command(os.Args[0], "run", "qemu", "--accel", "tcg", "--mem", "256", "--networking", "none",
		"--shutdown-timeout", grace, prefix)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	cmd.Stdout, cmd.Stderr = console, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited = make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("console:\n%s\nstderr:\n%s", console, stderr)
		}
	})
	deadline := time.Now().Add(120 * time.Second)
	for !strings.Contains(console.String(), "RUNTEST-READY") {
		if strings.Contains(console.String(), "RUNTEST-NO-POWER-BUTTON") {
			t.Fatal("guest found no Power Button input device")
		}
		select {
		case err := <-exited:
			t.Fatalf("mobykit run exited (%v) before the guest was ready", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("guest not ready within 120s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cmd, console, stderr, exited
}

func waitExit(t *testing.T, exited chan error, d time.Duration) error {
	t.Helper()
	select {
	case err := <-exited:
		return err
	case <-time.After(d):
		t.Fatalf("mobykit run still running %v after SIGTERM", d)
	}
	return nil
}

// TestRunQEMUSIGTERMExitsZero: SIGTERM to `mobykit run qemu` presses the guest's ACPI power
// button; the guest runs its shutdown step and powers off, and the command, having done what
// was asked, exits 0 without calling the shutdown an error ("context canceled").
func TestRunQEMUSIGTERMExitsZero(t *testing.T) {
	cmd, console, stderr, exited := bootUntilReady(t, false, "60s")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := waitExit(t, exited, 90*time.Second)
	if !strings.Contains(console.String(), "RUNTEST-ONSHUTDOWN") {
		t.Errorf("the guest did not see the power button")
	}
	if err != nil {
		t.Errorf("mobykit run qemu after a clean power-off: %v, want exit status 0", err)
	}
	if strings.Contains(stderr.String(), "context canceled") {
		t.Errorf("stderr calls the requested shutdown an error:\n%s", stderr)
	}
}

// TestRunQEMUSIGTERMIgnoredExitsNonZero: a guest that ignores the power button is killed after
// --shutdown-timeout, and that is a failure the exit status and stderr say.
func TestRunQEMUSIGTERMIgnoredExitsNonZero(t *testing.T) {
	cmd, _, stderr, exited := bootUntilReady(t, true, "2s")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := waitExit(t, exited, 60*time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("mobykit run qemu after killing an unresponsive guest: %v, want a non-zero exit status", err)
	}
	if !strings.Contains(stderr.String(), "did not power off within 2s") {
		t.Errorf("stderr does not say the guest did not power off:\n%s", stderr)
	}
}
