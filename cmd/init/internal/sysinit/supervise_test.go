package sysinit

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMain lets the test binary stand in for runc (FAKE_RUNC_LOG set): `run`/`create` start
// the bundle's cmd.sh (the container's process, left to the caller's reaper: the fake never
// waits for it) and write its pid; `kill` signals the pid the service recorded; every call is
// logged.
func TestMain(m *testing.M) {
	if os.Getenv("FAKE_RUNC_AS_RUNC") != "" {
		os.Exit(fakeRunc(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func fakeRunc(args []string) int {
	f, err := os.OpenFile(os.Getenv("FAKE_RUNC_LOG"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return 9
	}
	fmt.Fprintln(f, strings.Join(args, " "))
	f.Close()
	if len(args) == 0 {
		return 1
	}
	switch args[0] {
	case "run", "create":
		// one live container per ID, as runc's state root enforces
		state := filepath.Join(os.Getenv("FAKE_RUNC_DIR"), "state", args[len(args)-1])
		os.MkdirAll(filepath.Dir(state), 0o755)
		if f, err := os.OpenFile(state, os.O_CREATE|os.O_EXCL, 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "container with id %s exists\n", args[len(args)-1])
			return 1
		} else {
			f.Close()
		}
		var pidFile, bundle string
		for i := 1; i < len(args)-1; i++ {
			switch args[i] {
			case "--pid-file":
				pidFile = args[i+1]
			case "--bundle":
				bundle = args[i+1]
			}
		}
		p, err := os.StartProcess("/bin/sh", []string{"sh", filepath.Join(bundle, "cmd.sh")}, &os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}})
		if err != nil {
			return 1
		}
		os.WriteFile(pidFile, []byte(strconv.Itoa(p.Pid)), 0o644)
	case "delete":
		os.Remove(filepath.Join(os.Getenv("FAKE_RUNC_DIR"), "state", args[len(args)-1]))
	case "kill":
		data, err := os.ReadFile(filepath.Join(os.Getenv("FAKE_RUNC_DIR"), args[1]+".pid"))
		if err != nil {
			return 1
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		sig := unix.SIGTERM
		if args[2] == "KILL" {
			sig = unix.SIGKILL
		}
		unix.Kill(pid, sig)
	}
	return 0
}

// TestSupervisor runs onboot containers, services (one exits and must be restarted, with the
// reason printed) and onshutdown containers through a fake runc. It runs in a re-executed test
// binary, which makes itself a child subreaper so that it reaps like PID 1.
func TestSupervisor(t *testing.T) {
	if os.Getenv("SYSINIT_SUPERVISOR_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSupervisor$", "-test.v")
		cmd.Env = append(os.Environ(), "SYSINIT_SUPERVISOR_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("subreaper: %v", err)
	}
	root := t.TempDir()
	runcDir := t.TempDir()
	logFile := filepath.Join(runcDir, "log")
	t.Setenv("FAKE_RUNC_LOG", logFile)
	t.Setenv("FAKE_RUNC_DIR", runcDir)
	t.Setenv("FAKE_RUNC_AS_RUNC", "1")
	runc, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bundle := func(dir, name, script string) {
		b := filepath.Join(root, dir, name)
		os.MkdirAll(filepath.Join(b, "rootfs"), 0o755)
		// the service records its pid where the fake runc's kill finds it
		os.WriteFile(filepath.Join(b, "cmd.sh"), []byte("echo $$ > "+filepath.Join(runcDir, name+".pid")+"\n"+script), 0o644)
	}
	bundle(OnbootDir, "000-first", "echo first-ran\nexit 0\n")
	bundle(OnbootDir, "001-fails", "exit 4\n")
	bundle(ServicesDir, "steady", "echo steady-up\nexec sleep 600\n")
	bundle(ServicesDir, "flaky", "echo flaky-up\nexit 3\n")
	// a service named like an onboot folder: onboot's state lives until the services start
	bundle(ServicesDir, "000-first", "echo svc-first-up\nexec sleep 600\n")
	bundle(OnshutdownDir, "000-bye", "echo bye-ran\n")

	con := &lockedWriter{b: &bytes.Buffer{}}
	sys := &System{Root: root, Runc: runc, Console: NewConsole(con), Reaper: NewReaper(),
		Prepare: func(string, *Runtime) error { return nil }, Env: os.Environ(),
		StartSlots: 1} // one start at a time: a running service must not keep the others from starting
	sys.Backoff.Min, sys.Backoff.Max = 50*time.Millisecond, 5*time.Second

	err = sys.RunOnce(OnbootDir)
	if err == nil || !strings.Contains(err.Error(), "001-fails: exit status 4") {
		t.Errorf("RunOnce error = %v, want 001-fails' exit status", err)
	}
	if err := sys.StartServices(); err != nil {
		t.Fatal(err)
	}
	// wait for three quick exits (the backoff doubling each time), then stop
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if strings.Contains(con.String(), "restarting in 200ms") {
			break
		}
	}
	sys.StopServices(2 * time.Second)
	if err := sys.RunOnce(OnshutdownDir); err != nil {
		t.Error(err)
	}
	sys.WaitCleanups()

	out := con.String()
	for _, want := range []string{
		"mobykit init: onboot 000-first done",
		"mobykit init: onboot 001-fails failed: exit status 4",
		"mobykit init: service steady started",
		"mobykit init: service 000-first started",
		"mobykit init: service flaky exited: exit status 3; restarting in 50ms",
		"mobykit init: service flaky exited: exit status 3; restarting in 100ms",
		"mobykit init: service flaky exited: exit status 3; restarting in 200ms",
		"mobykit init: service steady stopped",
		"mobykit init: onshutdown 000-bye done",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "restarting in 10s") {
		t.Errorf("backoff exceeded its maximum:\n%s", out)
	}
	logs, _ := os.ReadFile(filepath.Join(root, "var/log/steady.log"))
	if !strings.Contains(string(logs), "steady-up") {
		t.Errorf("/var/log/steady.log = %q", logs)
	}
	calls, _ := os.ReadFile(logFile)
	for _, want := range []string{"run --detach --bundle " + filepath.Join(root, OnbootDir, "000-first"), "kill steady TERM", "delete --force onboot.000-first", "kill 000-first TERM"} {
		if !strings.Contains(string(calls), want) {
			t.Errorf("runc calls lack %q:\n%s", want, calls)
		}
	}
	fmt.Fprint(os.Stderr, out)
}

type lockedWriter struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestAcquireSlot: a service waiting for its turn to start gives up when the shutdown comes,
// holding no slot.
func TestAcquireSlot(t *testing.T) {
	s := &System{slots: make(chan struct{}, 1)}
	stop := make(chan struct{})
	if !s.acquireSlot(stop) {
		t.Fatal("free slot not acquired")
	}
	got := make(chan bool)
	go func() { got <- s.acquireSlot(stop) }()
	select {
	case <-got:
		t.Fatal("acquired a slot that is held")
	case <-time.After(50 * time.Millisecond):
	}
	close(stop)
	if <-got {
		t.Error("acquired a slot after stop")
	}
	<-s.slots // the first holder's release
	if len(s.slots) != 0 {
		t.Errorf("%d slots held after stop, want 0", len(s.slots))
	}
	if s.acquireSlot(stop) {
		t.Error("acquired a slot with stop closed")
	}
	if len(s.slots) != 0 {
		t.Errorf("%d slots held after a refused acquire, want 0", len(s.slots))
	}
}
